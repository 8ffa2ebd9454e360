"""Settings as the CLI receives them."""

import json
from pathlib import Path

import pytest
import yaml

from cromss.config import deep_merge, load_settings, variant_settings
from cromss.settings import Pretrain

ROOT = Path(__file__).resolve().parents[1]


def test_inline_json_and_files_give_the_same_settings(tmp_path):
    settings = {"lr": 1e-08, "selection": {"enabled": False}}
    (tmp_path / "s.json").write_text(json.dumps(settings))
    (tmp_path / "s.yaml").write_text("lr: 1.0e-08\nselection: {enabled: false}\n")
    assert load_settings(json.dumps(settings)) == settings
    assert load_settings(str(tmp_path / "s.json")) == settings
    assert load_settings(str(tmp_path / "s.yaml")) == settings


def test_missing_or_non_mapping_settings_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_settings(str(tmp_path / "nope.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="list.yaml.*mapping"):
        load_settings(str(tmp_path / "list.yaml"))


def test_variant_overrides_merge_into_the_shared_settings():
    pretrain = {"epochs": 3, "selection": {"enabled": True, "keep": 0.5},
                "variants": {"nosel": {"fusion": "middle", "selection": {"enabled": False}}}}
    merged = variant_settings(pretrain, "nosel")
    assert merged == {"epochs": 3, "selection": {"enabled": False, "keep": 0.5},
                      "fusion": "middle", "name": "nosel"}
    assert pretrain["variants"]["nosel"]["selection"] == {"enabled": False}  # not mutated
    with pytest.raises(ValueError, match="unknown pretraining variant 'x'"):
        variant_settings(pretrain, "x")
    assert deep_merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


FINETUNE = {"epochs": 2, "lr": 0.01, "batch_size": 4, "crop": {"dfc2020": 32}, "encoder": "resnet18"}
PRETRAIN = {"name": "midF", "fusion": "middle", "encoder": "resnet18", "epochs": 2, "batch_size": 4,
            "crop": 32}


@pytest.mark.parametrize("section,settings,message", [
    ("finetune", {**FINETUNE, "epochs": -1}, r"epochs: -1 is less than the minimum of 1"),
    ("finetune", {**FINETUNE, "learning_rate": 0.1}, r"'learning_rate' was unexpected"),
    ("finetune", {**FINETUNE, "lr": "0.01"}, r"lr: '0.01' is not of type 'number'"),
    ("pretrain", {k: v for k, v in PRETRAIN.items() if k != "epochs"},
     r"'epochs' is a required property"),
    ("pretrain", {**PRETRAIN, "selection": {"keep": 2}}, r"selection.keep: 2 is greater than"),
    ("synthetic", {"tile_size": 8}, r"tile_size: 8 is less than the minimum of 32"),
])
def test_cli_settings_are_checked_against_the_workflow_schema(tmp_path, section, settings,
                                                              message):
    with pytest.raises(ValueError, match=r"(?s)--settings \(inline JSON\): invalid .*" + message):
        load_settings(json.dumps(settings), section)
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=rf"{path}: invalid {section} settings"):
        load_settings(str(path), section)


def test_valid_cli_settings_get_the_schema_defaults():
    settings = load_settings(json.dumps(FINETUNE), "finetune")
    assert settings["checkpoint_every"] == 1 and settings["min_lr"] == 1.0e-5
    assert settings["lr"] == 0.01  # given values win
    pretrain = load_settings(json.dumps(PRETRAIN), "pretrain")
    assert pretrain["selection"] == {"enabled": True, "ramp_epochs": 80, "keep": 0.5}
    partial = load_settings(json.dumps({**PRETRAIN, "selection": {"keep": 0.3}}), "pretrain")
    assert partial["selection"] == {"enabled": True, "ramp_epochs": 80, "keep": 0.3}


def test_broken_settings_name_their_source(tmp_path):
    with pytest.raises(ValueError, match=r"--settings \(inline JSON\): not valid JSON"):
        load_settings('{"epochs": 2,', "finetune")
    (tmp_path / "s.json").write_text('{"epochs": }')
    with pytest.raises(ValueError, match=r"s\.json: not valid JSON"):
        load_settings(str(tmp_path / "s.json"))
    (tmp_path / "s.yaml").write_text("epochs: [1,\n")
    with pytest.raises(ValueError, match=r"s\.yaml: not valid YAML"):
        load_settings(str(tmp_path / "s.yaml"))


def test_the_cli_refuses_negative_epochs_before_training(tmp_path, capsys):
    from cromss.cli import main

    code = main(["pretrain", "run", "--store", str(tmp_path / "none.zarr"), "--settings",
                 json.dumps({**PRETRAIN, "epochs": -1}), "--out", str(tmp_path / "out")])
    assert code == 2 and "epochs: -1 is less than the minimum" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
PAPER_BASELINES = ("s1-only", "s2-only-13B", "s2-only-9B", "multimodal-nosel-13B")


def _variants(path: Path) -> dict[str, Pretrain]:
    pretrain = yaml.safe_load(path.read_text())["pretrain"]
    return {name: Pretrain.parse(variant_settings(pretrain, name), str(path))
            for name in pretrain["variants"]}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_baselines_train_on_hard_labels_as_the_reference(path):
    """Single-modal and no-selection variants are the reference's pl_pretrain.py and
    pl_pretrain_mm.py baselines, whose datasets make no smoothing prior (issue 24)."""
    for name, settings in _variants(path).items():
        baseline = settings.fusion.startswith("single_") or not settings.selection.enabled
        if baseline:
            assert not settings.smoothing.enabled, f"{path.name}: {name} smooths its labels"


def test_paper_config_baselines_and_the_no_smoothing_ablation():
    variants = _variants(ROOT / "config" / "paper.yaml")
    for name in PAPER_BASELINES:
        assert not variants[name].smoothing.enabled, name
    assert variants["multimodal-nosel-13B"].fusion == "middle"
    assert not variants["multimodal-nosel-13B"].selection.enabled
    ablation = variants["midF-13B-nosmooth"]  # CromSS without smoothing: selection stays on
    assert ablation.selection.enabled and not ablation.smoothing.enabled
    for name in ("midF-13B", "lateF-13B", "midF-9B", "lateF-9B"):
        assert variants[name].selection.enabled and variants[name].smoothing.enabled, name


@pytest.mark.parametrize("name", ["paper.yaml", "release.yaml"])
def test_the_paper_and_release_configs_score_as_the_published_numbers(name):
    from cromss.config import with_defaults

    section = yaml.safe_load((ROOT / "config" / name).read_text())["finetune"]
    settings = with_defaults(section, "finetune")
    assert settings["test"] == {"tiles": "reference",
                                "batch_size": {"dfc2020": 300, "dw": 100, "osm": 100}}
    assert settings["drop_last"] is True
