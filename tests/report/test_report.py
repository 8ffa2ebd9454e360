"""The Snakemake report as a reader sees it: rendered by a real headless browser (Debian's
``chromium``), the tables are HTML tables and the text has no broken links.

The report of the tiny config's whole run (the session's ``tiny_run``) is opened at 1920x1080 and
1366x768: its top is on screen, our mIoU of CromSS-midF is visible in every table without
scrolling sideways, and every header is readable (contrast). A toy workflow checks the report
texts on a table written by ``cromss tables``, as the table rules mark theirs for the report.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from docutils.core import publish_parts
from helpers import ROOT
from helpers.tables import PRETRAIN, REFERENCE_DFC, make_run

from cromss.cli import main
from cromss.config import load_settings, settings_param, variant_settings

REPORT_TEXTS = ROOT / "workflow" / "report"
SNAKEFILE = f"""
from cromss.config import settings_param

configfile: "config.yaml"
report: "{REPORT_TEXTS}/workflow.rst"

rule all:
    input: "results/tables/table1.csv"

rule transfer_table:
    input: csv="made/table{{number}}.csv", html="made/table{{number}}.html"
    output:
        csv=report("results/tables/table{{number}}.csv", category="Tables",
                   caption="{REPORT_TEXTS}/table.rst", labels={{"table": "{{number}}"}}),
        html=report("results/tables/table{{number}}.html", category="Tables",
                    caption="{REPORT_TEXTS}/table.rst", labels={{"table": "{{number}}"}}),
    params:
        settings=settings_param({{"lr": 0.0005, "crop": {{"dw": 64}}}}),
    shell: "cp {{input.csv}} {{output.csv}} && cp {{input.html}} {{output.html}}"
"""
CONFIG = """
data: {source: synthetic, synthetic: {seed: 0, pretrain_locations: 8, pretrain_size: 48,
       tiles: {dfc2020_train: 4, dfc2020_test: 2}}}
pretrain: {encoder: resnet18, epochs: 2, variants: {midF: {fusion: middle}}}
finetune: {tasks: [dfc2020], epochs: 1, seeds: [0, 1], settings: [frozen], weights: [midF]}
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("Debian's chromium is needed (apt-get install chromium)")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(report.html, the DOM chromium renders from it)."""
    browser = chromium()
    work = tmp_path_factory.mktemp("report")
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "config.yaml").write_text(CONFIG)
    metrics = [make_run(work / f"m{seed}.json", seed=seed, miou=40.0 + seed) for seed in (0, 1)]
    assert main(["report", "tables", "--task", "dfc2020", "--metrics", *map(str, metrics), "--reference",
                 str(REFERENCE_DFC), "--variants", json.dumps(PRETRAIN), "--provenance",
                 settings_param(yaml.safe_load(CONFIG)), "--out",
                 str(work / "made" / "table1.csv")]) == 0
    for args in (["--cores", "1"], ["--report", "report.html"]):
        result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=work,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    page = work / "report.html"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr
    return page, dom.stdout


def test_the_rendered_report_shows_the_table_as_an_html_table(report: tuple[Path, str]) -> None:
    page, dom = report
    tables = re.findall(r"<table[^>]*cromss-table.*?</table>", dom, re.S)
    assert tables, "no table in the rendered report"
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", tables[0], re.S)]
    header = (page.parent / "results/tables/table1.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "label" and cells[:3] == ["Row", "Input", "Setting"]
    assert "Ours (synthetic world, ResNet18, 2 + 1 epochs, seeds 0 1)" in cells
    assert "40.50 ± 0.71" in " ".join(cells)  # mean and std of the two seeds, in one cell
    # where our rows come from: in the CSV, the landing page and the caption
    assert set(pd.read_csv(page.parent / "results/tables/table1.csv")["ours_from"].dropna()) == {
        "synthetic world, ResNet18, 2 + 1 epochs, seeds 0 1"}
    assert "train/test tiles dfc2020 4/2" in dom and "a failed reproduction" in dom


def test_the_description_has_no_mail_links(report: tuple[Path, str]) -> None:
    _, dom = report
    assert "SSL4EO-S12@DW" in dom and "mailto:" not in dom


@pytest.mark.parametrize("text", sorted(REPORT_TEXTS.glob("*.rst")), ids=lambda p: p.name)
def test_no_report_text_turns_a_dataset_name_into_a_mail_link(text: Path) -> None:
    body = re.sub(r"{%.*?%}|{{.*?}}", "x", text.read_text(), flags=re.S)
    body = re.sub(r"^\.\. (csv-table|raw)::.*?(?=^\S|\Z)", "", body, flags=re.S | re.M)
    assert "mailto:" not in publish_parts(body, writer="html")["body"]


def test_job_params_read_as_flow_yaml_in_the_report(report: tuple[Path, str]) -> None:
    page, _ = report
    assert "settings={crop: {dw: 64}, lr: 0.0005}" in page.read_text()


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml", "config/real.yaml",
                                    "tests/configs/tiny.yaml"])
def test_settings_params_round_trip_without_quotes(config: str) -> None:
    whole = yaml.safe_load((ROOT / config).read_text())
    sections = [whole["data"], whole["finetune"], whole["pretrain"],
                *(variant_settings(whole["pretrain"], v) for v in whole["pretrain"]["variants"])]
    for section in sections:
        text = settings_param(section)
        assert '"' not in text and "\n" not in text
        assert load_settings(text) == section


VIEWPORTS = ((1920, 1080), (1366, 768))
PROBE = Path(__file__).with_name("report_probe.js")


def luminance(css: str) -> float:
    """Relative luminance (WCAG) of a CSS ``rgb()``/``rgba()`` colour, blended over white."""
    parts = [float(v) for v in re.findall(r"[\d.]+", css)]
    alpha = parts[3] if len(parts) == 4 else 1.0
    channels = [(c * alpha + 255 * (1 - alpha)) / 255 for c in parts[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def look(page: Path, width: int, height: int, shots: Path) -> dict:
    """What chromium shows of ``page`` at ``width`` x ``height`` (report_probe.js), and a
    screenshot of it in ``shots``."""
    browser = chromium()
    probed = shots / f"probed-{width}x{height}.html"
    probed.write_text(page.read_text() + f"<script>{PROBE.read_text()}</script>")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--hide-scrollbars",
              f"--window-size={width},{height}", "--virtual-time-budget=20000"]
    subprocess.run([*common, f"--screenshot={shots / f'report-{width}x{height}.png'}",
                    page.as_uri()], capture_output=True, timeout=180, check=True)
    dom = subprocess.run([*common, "--dump-dom", probed.as_uri()], capture_output=True,
                         text=True, timeout=180, check=True).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run in the rendered report"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.xdist_group("tiny_run")
@pytest.mark.parametrize("width,height", VIEWPORTS, ids=lambda v: str(v))
def test_the_tiny_runs_report_reads_in_a_browser(tiny_report: Path, tmp_path: Path,
                                                 width: int, height: int) -> None:
    seen = look(tiny_report, width, height, tmp_path)
    assert (tmp_path / f"report-{width}x{height}.png").stat().st_size > 10_000
    assert seen["viewport"][0] == width
    # the page starts at its top (the report's frame used to centre it above the viewport)
    assert 0 <= seen["title"]["top"] < 100 and "CromSS" in seen["title"]["text"]
    # the claims check opens the report, then tables 1-4
    assert [t["id"] for t in seen["tables"]] == ["claims", "table1", "table2", "table3", "table4"]
    for table in seen["tables"]:
        for header in table["headers"]:
            assert contrast(header["color"], header["background"]) >= 4.5, header
    for table in seen["tables"][1:]:
        cell = table["midF_mIoU"]
        assert cell and re.match(r"\d+\.\d\d", cell["text"]), table["id"]
        # our mIoU of CromSS-midF is on screen without scrolling sideways
        assert cell["left"] > 0 and cell["right"] <= width, (table["id"], cell)
    verdict = seen["first_verdict"]  # the first claim's verdict on the first screen
    assert verdict["bottom"] <= height and verdict["right"] <= width, verdict
    assert verdict["text"] in ("holds", "does not hold", "inconclusive")
    assert seen["ablation_link"]
    # table 1's info panel: its caption says where our rows come from and holds no table (a
    # CSV table there had near-white headers on near-white); the panel's own headers are white
    # on the dark panel (slate-900, its colour fades in, so read from the class)
    panel = seen["info_panel"]
    assert "Our rows" in panel["caption"] and panel["caption_tables"] == 0
    assert "bg-slate-900" in panel["nav_classes"] and panel["headers"]
    assert all(contrast(colour, "rgb(15, 23, 42)") >= 4.5 for colour in panel["headers"])
