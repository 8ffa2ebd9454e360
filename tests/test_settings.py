"""Typed settings: the schema is the only source of defaults, and the typed settings serialise to
the validated mapping that cards and checkpoints kept before them."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from cromss import config, settings
from cromss.settings import Finetune, Local, Pretrain, Real, Scene, as_dict, build

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {Pretrain: "pretrain", Finetune: "finetune", Scene: "scene"}
MINIMAL = {Pretrain: {"fusion": "middle", "encoder": "resnet18", "epochs": 1, "batch_size": 2,
                      "crop": 32},
           Finetune: {}, Scene: {}}
SETTINGS_NAMES = ("settings", "selection", "smoothing", "section")
"""Names under which the library holds settings (a section or a part of one)."""


def settings_classes() -> list[type]:
    return [obj for obj in vars(settings).values()
            if isinstance(obj, type) and dataclasses.is_dataclass(obj)
            and obj.__module__ == settings.__name__]


def schema_defaults(schema: dict, root: dict) -> dict:
    """Key -> default of every property of ``schema`` that has one, nested sections included."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    found = {}
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub:
            found[key] = sub["default"]
        elif "properties" in sub or "$ref" in sub:
            nested = schema_defaults(sub, root)
            if nested:
                found[key] = nested
    return found


def test_the_typed_settings_have_no_defaults_of_their_own():
    classes = settings_classes()
    assert {c.__name__ for c in classes} >= {"Pretrain", "Finetune", "Selection", "Smoothing",
                                              "Crop", "Scene", "Real", "Local", "Retry"}
    for cls in classes:
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
            assert field.default_factory is dataclasses.MISSING, f"{cls.__name__}.{field.name}"


@pytest.mark.parametrize("cls", [Pretrain, Finetune, Scene])
def test_every_default_of_the_typed_settings_is_the_schemas(cls):
    schema = config.section_schema(SECTIONS[cls])
    defaults = schema_defaults(schema, schema)
    assert defaults  # the schema does fill this section
    parsed = as_dict(cls.parse(MINIMAL[cls]))
    for key, default in defaults.items():
        assert parsed[key] == default, key
    # and nothing but the given keys and the schema's defaults
    assert set(parsed) == set(MINIMAL[cls]) | set(defaults)


@pytest.mark.parametrize("cls", [Pretrain, Finetune])
def test_typed_settings_serialise_to_the_validated_mapping(cls):
    """Model cards, checkpoints and run keys hold ``as_dict``: the validated mapping as before, so
    a run interrupted before the typed settings is recognised when it resumes."""
    given = {**MINIMAL[cls], "epochs": 3, "lr": 0.001}
    if cls is Pretrain:
        given |= {"name": "midF", "selection": {"enabled": False},
                  "decoder_channels": [16, 16, 8, 8, 8]}
    else:
        given |= {"crop": {"dw": 64}, "encoder": "resnet18"}
    validated = config.validate(given, SECTIONS[cls], "test")
    typed = build(cls, validated)
    assert as_dict(typed) == validated
    assert build(cls, as_dict(typed)) == typed
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.epochs = 4  # type: ignore[misc]


def test_a_key_the_schema_does_not_fill_is_an_error_not_a_default():
    validated = config.validate(MINIMAL[Pretrain], "pretrain", "test")
    del validated["weight_decay"]
    with pytest.raises(ValueError, match="weight_decay missing"):
        build(Pretrain, validated)
    with pytest.raises(ValueError, match="unknown keys"):
        build(Pretrain, {**config.validate(MINIMAL[Pretrain], "pretrain", "test"), "colour": 1})


def test_real_data_settings_are_completed_by_the_schema_block_by_block():
    """An absent block of ``data.real`` is its schema defaults; a given key is kept."""
    schema = config.section_schema("real")
    defaults = schema_defaults(schema, schema)
    real = Real.parse({"stac": {"bbox": [1, 2, 3, 4], "max_cloud": 5},
                       "local": {"noldo": "/data/noldo"}})
    assert as_dict(real.retry) == defaults["retry"]
    assert (real.huggingface_url, real.download_dir) == (defaults["huggingface_url"],
                                                         defaults["download_dir"])
    assert real.local == Local(ssl4eo_s12=None, noldo="/data/noldo", dfc2020=None)
    assert real.stac == {**defaults["stac"], "bbox": [1, 2, 3, 4], "max_cloud": 5}
    assert real.ssl4eo == defaults["ssl4eo"] and real.noldo == defaults["noldo"]
    assert real.dfc2020 == defaults["dfc2020"] and real.dynamicworld == {}
    with pytest.raises(ValueError, match="retry.attempts"):
        Real.parse({"retry": {"attempts": 0}})


def receiver_name(node: ast.expr) -> str:
    """``settings`` of ``settings``, ``self.settings`` and ``settings.get(...)`` (chained gets)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return receiver_name(node.func.value)
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def literal_gets(source: str) -> list[tuple[int, str]]:
    """(line, text) of every ``X.get(key, literal)`` where X is named like settings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and len(node.args) == 2):
            continue
        if any(word in receiver_name(node.func.value).lower() for word in SETTINGS_NAMES):
            try:
                ast.literal_eval(node.args[1])
            except ValueError:
                continue  # a computed fallback (a tensor's class count), not a literal default
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_scan_finds_a_literal_default():
    assert literal_gets("x = settings.get('lr', 0.1)\ny = self.settings.get('a', {})\n"
                        "z = settings['lr']\nw = card.get('s2_bands', 13)")[0][0] == 1
    assert len(literal_gets("settings.get('a', [])\nselection.get('keep', 0.5)\n"
                            "settings.get('selection', {}).get('enabled', True)")) == 4


def test_no_literal_default_is_read_from_settings():
    files = sorted((ROOT / "cromss").rglob("*.py"))
    found = {str(path.relative_to(ROOT)): literal_gets(path.read_text()) for path in files}
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_the_workflow_schema_is_the_one_the_cli_validates_with():
    assert yaml.safe_load(config.SCHEMA.read_text())["properties"]["pretrain"]["properties"][
        "val_fraction"]["default"] == as_dict(Pretrain.parse(MINIMAL[Pretrain]))["val_fraction"]


def test_the_map_commands_tiling_defaults_are_the_schemas():
    """`cromss map predict` shows its tiling defaults in `--help`; they must be the schema's
    ``maps`` defaults, which the workflow's map jobs pass."""
    from cromss.cli import build_parser

    maps = yaml.safe_load(config.SCHEMA.read_text())["properties"]["maps"]["properties"]
    predict = build_parser().parse_args(["map", "predict", "--model", "m.pt", "--scene", "s",
                                         "--out", "o.tif"])
    for key in ("tile", "overlap", "batch_size"):
        assert getattr(predict, key) == maps[key]["default"], key


def test_the_reference_test_protocol_scores_the_published_tile_counts():
    """The reference's test batches (300 DFC2020, 100 DW and OSM; its .sh scripts) with
    drop_last=True score 5,100 of DFC2020's 5,128 test tiles, 300 of DW's 340, all 400 of OSM's."""
    reference = Finetune.parse({"test": {"tiles": "reference"}}).test
    assert [reference.scored(task, n) for task, n in (("dfc2020", 5128), ("dw", 340),
                                                      ("osm", 400))] == [5100, 300, 400]
    every = Finetune.parse({}).test
    assert every.tiles == "all" and every.scored("dfc2020", 5128) == 5128
