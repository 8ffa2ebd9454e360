"""Settings as the CLI receives them."""

import json

import pytest

from cromss.config import deep_merge, load_settings, variant_settings


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
