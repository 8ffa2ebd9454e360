"""The page ``dvc plots show`` fills, with Vega, Vega-Lite and vega-embed inline: the charts render
without a network (DVC's own page loads them from a CDN). The scripts come from the installed
``vl-convert-python`` package (``vl_convert.javascript_bundle()``), nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from cromss.atomic import atomic_path
from cromss.errors import CromssError

PLACEHOLDER = "{plot_divs}"  # where DVC puts one <div> per plot, each calling vegaEmbed
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>cromss: DVC plots</title>
<script type="text/javascript">
/* BUNDLE */
</script>
<style>body { font-family: sans-serif; } .vega-embed { margin: 1em; }</style>
</head>
<body>
""" + PLACEHOLDER + """
</body>
</html>
"""


def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script that sets ``window.vegaEmbed``."""
    try:
        import vl_convert
    except ImportError as err:
        raise CromssError("the offline plots page needs the package vl-convert-python "
                          "(pip install vl-convert-python)") from err
    bundle: str = vl_convert.javascript_bundle(None)  # type: ignore[arg-type]  # optional at run time
    if "</script" in bundle.lower() or "{" + "plot_divs}" in bundle:
        raise CromssError("vl_convert's bundle cannot be inlined in a page (it holds </script> or "
                          "DVC's placeholder)")
    return bundle


def write_plots_page(out: Path) -> Path:
    """Write the HTML template for ``dvc plots show --html-template`` (``plots.html_template``)."""
    page = PAGE.replace("/* BUNDLE */", javascript_bundle(), 1)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf8")
    return out
