"""Tables 1-4, their Markdown and the DVC summary, on hand-made metrics files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from cromss.cli import main
from cromss.report import markdown, tables
from helpers import ROOT
from helpers.tables import PRETRAIN, REFERENCE_DFC, epoch, make_run, write_log



def load(*paths: Path) -> list[dict]:
    return [tables.load_run(p) for p in paths]


def variants() -> dict:
    return tables.resolve_variants(PRETRAIN)


def test_backbone_names() -> None:
    assert tables.backbone_name("resnet18") == "ResNet18"
    assert tables.backbone_name("ResNet50") == "ResNet50"
    assert tables.backbone_name("mit_b0") == "mit_b0"


def test_paper_names_only_for_full_cromss_variants() -> None:
    known = variants()
    assert tables.paper_weights_name("midF", known) == "CromSS-midF"
    assert tables.paper_weights_name("lateF", known) == "CromSS-lateF"
    assert tables.paper_weights_name("midF-nosel", known) == "CromSS-midF-nosel"
    assert tables.paper_weights_name("random", known) == "random"
    with pytest.raises(ValueError, match="'moco'"):
        tables.paper_weights_name("moco", known)


def test_variants_resolve_from_whole_config_section_or_mapping() -> None:
    whole = tables.resolve_variants({"data": {}, "pretrain": PRETRAIN})
    assert whole == tables.resolve_variants(PRETRAIN)
    assert whole["midF-nosel"]["selection"]["enabled"] is False
    assert whole["midF"]["smoothing"]["enabled"] is True
    bare = tables.resolve_variants(PRETRAIN["variants"])
    assert tables.paper_weights_name("midF-nosel", bare) == "CromSS-midF-nosel"
    assert tables.paper_weights_name("midF", bare) == "CromSS-midF"


def test_mean_and_sample_std() -> None:
    assert tables.mean_std([1.0, 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    mean, std = tables.mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)


def ours(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a transfer table that hold our values."""
    return table[table["seeds"].notna()].reset_index(drop=True)


def test_transfer_table_aggregates_seeds_and_matches_paper_rows(tmp_path: Path) -> None:
    runs = load(
        make_run(tmp_path / "1.json", seed=0, miou=40.0, oa=70.0),
        make_run(tmp_path / "2.json", seed=1, miou=44.0, oa=72.0),
        make_run(tmp_path / "3.json", modality="s1", weights="random", seed=0, miou=20.0),
        make_run(tmp_path / "4.json", weights="midF-nosel", setting="finetuned", miou=30.0),
    )
    reference = tables.load_reference(REFERENCE_DFC)
    table = tables.transfer_table(runs, reference, "dfc2020", variants())
    # every published row in the paper's order, then ours without a published row
    assert len(table) == len(reference) + 1
    assert list(table["model"][:len(reference)]) == list(reference["model"])
    assert table["paper_mIoU"].notna().sum() == len(reference)
    s1, mid, nosel = (ours(table).iloc[i] for i in range(3))
    assert (s1["weights"], s1["s2_bands"], s1["backbone"]) == ("random", "", "ResNet18")
    assert (s1["paper_mIoU"], s1["paper_backbone"]) == (pytest.approx(28.96), "ResNet50")
    assert (mid["label"], mid["s2_bands"], mid["seeds"]) == ("CromSS-midF 13B", "13", 2)
    assert mid["pretraining"] == "this workflow"
    assert mid["mIoU"] == pytest.approx(42.0)
    assert mid["mIoU_std"] == pytest.approx(math.sqrt(8))
    assert mid["OA"] == pytest.approx(71.0)
    assert mid["AA"] == pytest.approx(61.0)
    assert mid["mIoU_ref"] == pytest.approx(47.0)
    assert (mid["paper_mIoU"], mid["paper_mIoU_std"]) == pytest.approx((42.52, 0.11))
    assert mid["paper_bold"] == "OA;mIoU;mF1"
    assert nosel["setting"] == "fine-tuned" and nosel["label"] == "CromSS-midF-nosel 13B"
    assert math.isnan(nosel["paper_mIoU"]) and nosel.name == len(ours(table)) - 1
    assert table.index[table["label"] == "CromSS-midF-nosel 13B"].tolist() == [len(reference)]
    unrun = table[(table["weights"] == "DOFA") & (table["input"] == "S1")]
    assert len(unrun) == 2 and unrun["mIoU"].isna().all() and unrun["backbone"].isna().all()


def test_released_weights_are_the_papers_rows(tmp_path: Path) -> None:
    runs = [make_run(tmp_path / f"{w}-{m}.json", modality=m, weights=w, miou=41.0)
            for w in ("release-13B-midF", "release-9B-lateF") for m in ("s1", "s2")]
    for path in runs[2:]:  # the 9-band release's S2 encoder takes 9 bands
        run = json.loads(path.read_text())
        path.write_text(json.dumps({**run, "s2_bands": 9}))
    table = ours(tables.transfer_table(load(*runs), tables.load_reference(REFERENCE_DFC),
                                       "dfc2020", variants()))
    labels = dict(zip(zip(table["input"], table["label"]), table["paper_mIoU"]))
    assert labels[("S1", "CromSS-midF 13B")] == pytest.approx(34.12)
    assert labels[("S2", "CromSS-midF 13B")] == pytest.approx(42.52)
    assert labels[("S2", "CromSS-lateF 9B")] == pytest.approx(41.69)
    assert math.isnan(labels[("S1", "CromSS-lateF 9B")])  # the paper has S1 rows of 13B pairs only
    assert set(table["pretraining"]) == {"released"}


def test_every_published_row_of_every_table_appears(tmp_path: Path) -> None:
    for path in sorted((ROOT / "reference").glob("paper_table*.csv")):
        reference = tables.load_reference(path)
        task = {"1": "dfc2020", "2": "dw", "3": "osm"}[path.name[11]]
        run = load(make_run(tmp_path / f"{task}.json", task=task))
        table = tables.transfer_table(run, reference, task, variants())
        assert len(table) == len(reference) == 40
        assert list(table["paper_bold"].fillna("")) == list(reference["bold_in_paper"].fillna(""))


def test_transfer_table_rejects_bad_input(tmp_path: Path) -> None:
    reference = tables.load_reference(REFERENCE_DFC)
    other_task = load(make_run(tmp_path / "dw.json", task="dw"))
    with pytest.raises(ValueError, match="dw.json"):
        tables.transfer_table(other_task, reference, "dfc2020", variants())
    twice = load(make_run(tmp_path / "a.json"), make_run(tmp_path / "b.json"))
    with pytest.raises(ValueError, match="appear twice"):
        tables.transfer_table(twice, reference, "dfc2020", variants())
    no_encoder = load(make_run(tmp_path / "c.json", encoder=None))
    with pytest.raises(ValueError, match="no 'encoder'"):
        tables.transfer_table(no_encoder, reference, "dfc2020", variants())
    table = tables.transfer_table(no_encoder, reference, "dfc2020", variants(), "resnet50")
    assert ours(table).loc[0, "backbone"] == "ResNet50"


def test_load_run_names_the_file_and_the_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"task": "dw", "modality": "s1"}))
    with pytest.raises(ValueError, match=r"metrics.json: .*lacks .*weights"):
        tables.load_run(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        tables.load_run(path)
    with pytest.raises(FileNotFoundError):
        tables.load_run(tmp_path / "missing.json")


def test_reference_tables_are_complete() -> None:
    for path in sorted((ROOT / "reference").glob("paper_table*.csv")):
        table = tables.load_reference(path)
        cromss_rows = table[table["weights"].str.startswith("CromSS")]
        assert len(cromss_rows) == 12, path  # S1 and S2 (9, 13 bands), mid/late, 2 settings
        assert set(table["setting"]) == {"frozen", "fine-tuned"}


def transfer_frame(means: list[float], stds: list[float], miou_ref: list[float]) -> pd.DataFrame:
    """Four of our rows (two S1, two S2, frozen) and one published-only row."""
    nan = float("nan")
    return pd.DataFrame({
        "label": ["a|b", "b 13B", "x 13B", "z 13B", "y 13B"],
        "input": ["S1", "S1", "S2", "S2", "S2"],
        "paper_backbone": ["ResNet50"] * 5, "backbone": ["ResNet18"] * 4 + [None],
        "pretraining": ["", "this workflow", "released", "this workflow", ""],
        "setting": ["frozen"] * 5, "seeds": pd.array([2, 2, 2, 2, pd.NA], dtype="Int64"),
        **{m: [*means, nan] for m in tables.METRICS},
        **{f"{m}_std": [*stds, nan] for m in tables.METRICS},
        "mIoU_ref": [*miou_ref, nan], "mIoU_ref_std": [0.0] * 4 + [nan],
        **{f"paper_{m}": [nan, nan, 40.0, nan, 50.0] for m in tables.METRICS},
        **{f"paper_{m}_std": [nan, nan, 0.1, nan, 0.2] for m in tables.METRICS},
        "paper_bold": [None, None, "OA;mIoU", None, ""],
    })


def markdown_rows(text: str) -> dict[str, str]:
    return {line.split(" | ")[0][2:]: line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Row") and "---" not in line}


def test_markdown_bolds_ours_only_beyond_one_std_and_the_paper_as_printed() -> None:
    # S1: b beats a by 3 points, both stds 1: marked; S2: x beats z by 0.4 within z's std 0.6:
    # noise, not marked
    table = transfer_frame([10.0, 13.0, 20.4, 20.0], [1.0, 1.0, 0.5, 0.6], [1.0, 2.0, 3.0, 4.0])
    rows = markdown_rows(markdown.transfer_markdown(table, "T"))
    assert rows["a\\|b"].startswith("| a\\|b | S1 | frozen | ResNet50 | ResNet18 |  | 2 | 10.00 ± 1.00 |")
    assert "| **13.00 ± 1.00** |" in rows["b 13B"]
    assert "**20.40" not in rows["x 13B"] and "**20.00" not in rows["z 13B"]
    # paper: bold where the paper has it (x), not at the maximum (y)
    assert rows["x 13B"].endswith("| **40.00 ± 0.10** | 40.00 ± 0.10 | **40.00 ± 0.10** | 40.00 ± 0.10 |")
    assert "| 50.00 ± 0.20 |" in rows["y 13B"] and "**50.00" not in rows["y 13B"]
    assert "| mIoU (ref.) |" in markdown.transfer_markdown(table, "T")


def test_no_bold_without_a_std_and_an_uninformative_column_is_left_out() -> None:
    nan = float("nan")
    table = transfer_frame([10.0, 30.0, 20.0, 50.0], [nan] * 4, [10.0, 30.0, 20.0, 50.0])
    table["mIoU_ref_std"] = nan
    text = markdown.transfer_markdown(table, "T")
    assert "**30.00" not in text and "**50.00" not in text  # one seed: no noise estimate
    assert "| mIoU (ref.) |" not in text and "mIoU (ref.) is left out" in text


def test_html_table_groups_ours_and_published_and_lists_our_rows_first() -> None:
    from cromss.report.html_tables import transfer_html
    from cromss.report.provenance import Provenance

    table = transfer_frame([10.0, 13.0, 20.4, 20.0], [1.0, 1.0, 0.5, 0.6], [10.0, 13.0, 20.4, 20.0])
    table["mIoU_ref_std"] = table["mIoU_std"]
    provenance = Provenance.from_settings(
        {"data": {"source": "synthetic", "synthetic": {"seed": 0, "tiles": {"dw_train": 24}}},
         "pretrain": {"encoder": "resnet18", "epochs": 10},
         "finetune": {"epochs": 10, "seeds": [0, 1]}})
    page = transfer_html(table, "Table 2: DW", provenance, "a,b\n1,2\n", "table2.csv")
    assert "Ours (synthetic world, ResNet18, 10 + 10 epochs, seeds 0 1)" in page
    assert "Published (Liu et al., TGRS 2025)" in page
    assert "not with the published values (synthetic instead of real data" in page
    body = page.split("<tbody>", 1)[1]
    order = [body.index(label) for label in ("a|b", "b 13B", "x 13B", "z 13B",
                                             "published rows without", "y 13B")]
    assert order == sorted(order)  # ours (paper order) first, then the published-only row
    assert "<strong>13.00" in body and "<strong>20.40" not in body
    assert ">mIoU (ref.)<" not in page  # equal to mIoU in every row
    assert 'download="table2.csv" href="data:text/csv;charset=utf-8;base64,YSxiCjEsMgo="' in page


def test_ablation_table_takes_the_last_epoch_and_downstream_miou(tmp_path: Path) -> None:
    logs = {"midF": [epoch(0, 1.0, 3.0, 0.7), epoch(1, 0.5, 2.0, 0.9)],
            "midF-nosel": [epoch(0, 1.0, 2.5, 0.7)]}
    runs = load(
        make_run(tmp_path / "a.json", task="dw", weights="midF", seed=0, miou=40.0),
        make_run(tmp_path / "b.json", task="dw", weights="midF", seed=1, miou=42.0),
        make_run(tmp_path / "c.json", task="dw", weights="random", seed=0, miou=30.0),
    )
    table = tables.ablation_table(logs, variants(), runs).set_index("weights")
    assert list(table.index) == ["random", "midF", "midF-nosel"]
    mid = table.loc["midF"]
    assert (mid["fusion"], mid["selection"], mid["smoothing"], mid["epochs"]) == (
        "middle", "yes", "yes", 2)
    assert (mid["kept_proportion"], mid["val_loss"]) == (50.0, 2.0)  # percent, like tables 1-3
    assert mid["selection_precision_s2"] == pytest.approx(95.0)
    assert (mid["mIoU"], mid["mIoU_std"]) == pytest.approx((41.0, math.sqrt(2)))
    assert mid["mIoU_ref"] == pytest.approx(46.0)
    assert mid["transfer"] == "dw/s2/frozen"
    nosel = table.loc["midF-nosel"]
    assert nosel["selection"] == "no"
    assert nosel["seeds"] == 0 and math.isnan(nosel["mIoU"])
    assert math.isnan(table.loc["random", "val_loss"])
    text = markdown.ablation_markdown(table.reset_index(), "T4")
    # one pretraining run per variant: no spread, so none of its statistics is marked
    assert "| midF | middle | yes | yes | dw/s2/frozen | 50.00 | 70.00 | 90.00 | 95.00 | 2.000 |" in text
    assert "| 41.00 ± 1.41 |" in text  # random has one seed: no noise estimate, no bold


def test_ablation_table_rejects_inconsistent_input(tmp_path: Path) -> None:
    logs = {"midF": [epoch(0, 1.0, 3.0, 0.7)]}
    with pytest.raises(ValueError, match="without settings"):
        tables.ablation_table({"other": logs["midF"]}, variants(), [])
    stray = load(make_run(tmp_path / "x.json", weights="lateF"))
    with pytest.raises(ValueError, match="no pretraining log"):
        tables.ablation_table(logs, variants(), stray)
    mixed = load(make_run(tmp_path / "y.json", weights="midF"),
                 make_run(tmp_path / "z.json", weights="midF", setting="finetuned"))
    with pytest.raises(ValueError, match="several transfers"):
        tables.ablation_table(logs, variants(), mixed)


def test_load_log_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "log.jsonl"
    empty.parent.mkdir()
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        tables.load_log(empty)
    broken = write_log(tmp_path / "v" / "log.jsonl", [epoch(0, 1, 1, 1)])
    broken.write_text(broken.read_text() + "{oops\n")
    with pytest.raises(ValueError, match="log.jsonl:2"):
        tables.load_log(broken)
    assert tables.variant_of_log(broken) == "v"


def test_metrics_summary_nests_by_task_modality_weights_setting(tmp_path: Path) -> None:
    runs = load(make_run(tmp_path / "a.json", seed=0, miou=40.0),
                make_run(tmp_path / "b.json", seed=1, miou=50.0),
                make_run(tmp_path / "c.json", weights="random", miou=10.0))
    summary = tables.metrics_summary(runs)
    assert summary["dfc2020"]["s2"]["midF"]["frozen"] == {
        "OA": 70.0, "mIoU": 45.0, "mIoU_std": round(math.sqrt(50), 4), "mIoU_ref": 50.0, "seeds": 2}
    assert summary["dfc2020"]["s2"]["random"]["frozen"]["mIoU_std"] is None


def test_cli_writes_csv_and_markdown_or_nothing(tmp_path: Path) -> None:
    metrics = [make_run(tmp_path / f"m{seed}.json", seed=seed, miou=40.0 + seed)
               for seed in range(2)]
    out = tmp_path / "tables" / "table1.csv"
    common = ["--reference", str(REFERENCE_DFC), "--variants", json.dumps(PRETRAIN),
              "--out", str(out)]
    assert main(["report", "tables", "--task", "dfc2020", "--metrics", *map(str, metrics), *common]) == 0
    written = pd.read_csv(out)
    assert ours(written).loc[0, "mIoU"] == pytest.approx(40.5) and len(written) == 40
    assert "Table 1" in out.with_suffix(".md").read_text()

    out.unlink()
    out.with_suffix(".md").unlink()
    assert main(["report", "tables", "--task", "dw", "--metrics", *map(str, metrics), *common]) == 2
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_cli_table4(tmp_path: Path) -> None:
    log = write_log(tmp_path / "pretrain" / "midF" / "log.jsonl", [epoch(0, 0.8, 1.5, 0.8)])
    run = make_run(tmp_path / "m.json", task="dw", weights="midF")
    out = tmp_path / "table4.csv"
    assert main(["report", "table4", "--pretrain-logs", str(log), "--variants", json.dumps(PRETRAIN),
                 "--metrics", str(run), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["weights"]) == ["midF"]
    assert table.loc[0, "kept_proportion"] == pytest.approx(80.0)


def test_s1_cromss_rows_find_their_paper_row_in_every_table(tmp_path: Path) -> None:
    # table 2 notes the S2 partner (13) of S1 CromSS rows, tables 1 and 3 leave it empty
    run = load(make_run(tmp_path / "s1.json", task="dw", modality="s1", weights="midF",
                        setting="frozen"))
    reference = tables.load_reference(ROOT / "reference" / "paper_table2_dw.csv")
    row = ours(tables.transfer_table(run, reference, "dw", variants())).iloc[0]
    assert (row["input"], row["label"], row["s2_bands"]) == ("S1", "CromSS-midF 13B", "13")
    assert row["paper_mIoU"] == pytest.approx(39.63)  # SSL4EO-S12@DW, S1, CromSS-midF, frozen
