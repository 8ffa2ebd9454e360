"""The Snakemake report as a reader sees it: rendered by a real headless browser (Debian's
``chromium``), the tables are HTML tables from the CSV files and the text has no broken links.

A toy workflow uses the project's own report texts (``workflow/report``) on a table written by
``cromss tables``, exactly as the table rules mark theirs for the report.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docutils.core import publish_parts
from test_tables import PRETRAIN, REFERENCE_DFC, make_run

from cromss.cli import main
from cromss.config import load_settings, settings_param, variant_settings

ROOT = Path(__file__).resolve().parents[1]
REPORT_TEXTS = ROOT / "workflow" / "report"
SNAKEFILE = f"""
from cromss.config import settings_param

configfile: "config.yaml"
report: "{REPORT_TEXTS}/workflow.rst"

rule all:
    input: "results/tables/table1.csv"

rule transfer_table:
    input: "made/table{{number}}.csv"
    output:
        csv=report("results/tables/table{{number}}.csv", category="Tables",
                   caption="{REPORT_TEXTS}/table.rst", labels={{"table": "{{number}}"}}),
    params:
        settings=settings_param({{"lr": 0.0005, "crop": {{"dw": 64}}}}),
    shell: "cp {{input}} {{output.csv}}"
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
    (work / "config.yaml").write_text("data: {source: synthetic}\n")
    metrics = [make_run(work / f"m{seed}.json", seed=seed, miou=40.0 + seed) for seed in (0, 1)]
    assert main(["tables", "--task", "dfc2020", "--metrics", *map(str, metrics), "--reference",
                 str(REFERENCE_DFC), "--variants", json.dumps(PRETRAIN), "--out",
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
    assert header[:3] == cells[:3] and "mIoU" in cells
    assert "40.5" in " ".join(cells)  # mean mIoU of the two seeds, from the CSV
    # the landing page's tables scroll inside their own box instead of covering the rule graph
    assert re.search(r"table\.cromss-table \{ display: block; max-width: 100%;[^}]*overflow: auto",
                     dom)


def test_the_description_has_no_mail_links(report: tuple[Path, str]) -> None:
    _, dom = report
    assert "SSL4EO-S12@DW" in dom and "mailto:" not in dom


@pytest.mark.parametrize("text", sorted(REPORT_TEXTS.glob("*.rst")), ids=lambda p: p.name)
def test_no_report_text_turns_a_dataset_name_into_a_mail_link(text: Path) -> None:
    body = re.sub(r"{%.*?%}|{{.*?}}", "x", text.read_text(), flags=re.S)
    body = re.sub(r"^\.\. csv-table::.*?(?=^\S|\Z)", "", body, flags=re.S | re.M)
    assert "mailto:" not in publish_parts(body, writer="html")["body"]


def test_job_params_read_as_flow_yaml_in_the_report(report: tuple[Path, str]) -> None:
    page, _ = report
    assert "settings={crop: {dw: 64}, lr: 0.0005}" in page.read_text()


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml", "config/real.yaml",
                                    "tests/configs/tiny.yaml"])
def test_settings_params_round_trip_without_quotes(config: str) -> None:
    import yaml

    whole = yaml.safe_load((ROOT / config).read_text())
    sections = [whole["data"], whole["finetune"], whole["pretrain"],
                *(variant_settings(whole["pretrain"], v) for v in whole["pretrain"]["variants"])]
    for section in sections:
        text = settings_param(section)
        assert '"' not in text and "\n" not in text
        assert load_settings(text) == section
