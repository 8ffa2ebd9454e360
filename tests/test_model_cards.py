"""Model cards say where the weights come from, and the loading recipe of docs/encoders.md works as
written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from cromss import models
from cromss.weights import cards, encoders, trained

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"encoder": "resnet18", "fusion": "middle", "s2_bands": 13,
            "decoder_channels": [16, 16, 8, 8, 8], "name": "midF", "lr": 0.005}


def doc_block(heading: str) -> str:
    section = (ROOT / "docs" / "encoders.md").read_text().split(f"## {heading}\n", 1)[1].split("\n## ")[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_cards_carry_data_source_commit_licence_and_settings(tiny_world, tmp_path: Path) -> None:
    model = models.build_model(SETTINGS)
    saved = trained.save_model(tmp_path / "model.pt", model, SETTINGS,
                              cards.provenance(tiny_world["nol"]))
    encoder = trained.export_encoder(saved, "s2", tmp_path / "encoder_s2.pt")
    _, card = encoders.read_encoder(encoder)
    origin = card["provenance"]
    assert origin["data"]["kind"] == "synthetic"  # the offline world has true maps
    assert origin["data"]["store"] == str(tiny_world["nol"])
    assert origin["data"]["dataset"] and origin["data"]["samples"] == 6
    assert origin["licence"] == "MIT" and "synthetic" in origin["data"]["licence"]
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", origin["git_commit"])
    assert card["settings"]["lr"] == 0.005


def test_readme_loads_an_exported_encoder_with_timm_and_smp(tiny_world, tmp_path: Path,
                                                            monkeypatch) -> None:
    model = models.build_model(SETTINGS)
    path = tmp_path / "results" / "pretrain" / "midF" / "encoder_s2.pt"
    path.parent.mkdir(parents=True)
    encoders.save_encoder(path, model, "s2", SETTINGS, cards.provenance(tiny_world["nol"]))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(doc_block("Using an exported encoder without cromss"), namespace)
    expected = model.encoder("s2").state_dict()
    for loaded in (namespace["backbone"].state_dict(), namespace["model"].encoder.state_dict()):
        assert all(torch.equal(loaded[key], value) for key, value in expected.items())
    assert namespace["backbone"].eval()(torch.zeros(1, 13, 64, 64)).shape == (1, 512)
