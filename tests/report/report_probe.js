// Appended to a copy of the Snakemake report by tests/test_report.py: after the page has
// rendered, it writes what a reader sees (positions, colours) as JSON into a "probe" element,
// which chromium --dump-dom then returns.
function box(element) {
  if (!element) return null;
  const r = element.getBoundingClientRect();
  return {top: r.top, left: r.left, right: r.right, bottom: r.bottom, text: element.textContent};
}
function background(element) {
  // the first painted background from the element up, blended over white where translucent
  for (let e = element; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (c && c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c;
  }
  return "rgb(255, 255, 255)";
}
function colours(elements) {
  return [...elements].filter(e => e.textContent.trim()).map(
    e => ({text: e.textContent.trim(), color: getComputedStyle(e).color, background: background(e)}));
}
function probe() {
  const out = {viewport: [innerWidth, innerHeight]};
  const landing = document.querySelector("#cromss-results");
  out.title = landing ? box(landing.closest(".prose").querySelector("h1")) : null;
  out.tables = [...document.querySelectorAll("figure.cromss-figure")].map(figure => {
    const row = [...figure.querySelectorAll("tbody tr")].find(
      r => /^(CromSS-midF|midF)\b/.test((r.querySelector(".label") || {}).textContent || "")
           && (r.querySelector('td[data-col="mIoU"]') || {textContent: ""}).textContent.trim());
    return {id: figure.id, midF_mIoU: row ? box(row.querySelector('td[data-col="mIoU"]')) : null,
            headers: colours(figure.querySelectorAll("thead th"))};
  });
  out.first_verdict = box(document.querySelector('#claims td[data-col="verdict"]'));
  out.ablation_link = !!document.querySelector('a[href*="ablation.png"]');
  // the info panel of table 1, as a click on it in the Tables category opens it
  const key = Object.keys(results).find(k => k.endsWith("table1.html"));
  app.showResultInfo(key);
  setTimeout(() => {
    const nav = document.querySelector("nav");
    out.info_panel = {
      nav_classes: nav.className,
      headers: [...nav.querySelectorAll("th")].map(th => getComputedStyle(th).color),
      caption: [...nav.querySelectorAll(".prose")].map(e => e.textContent).join(" "),
      caption_tables: nav.querySelectorAll(".prose table").length,
    };
    const pre = document.createElement("pre");
    pre.id = "probe";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 3000);  // past the panel's transition
}
window.addEventListener("load", () => setTimeout(probe, 2000));
