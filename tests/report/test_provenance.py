"""Provenance of the tables: which test tiles were scored (issue 24)."""

from __future__ import annotations

import yaml

from cromss.report.provenance import Provenance, provenance_settings
from helpers import ROOT


def provenance_of(name: str) -> Provenance:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    return Provenance.from_settings(provenance_settings(config))


def test_the_tables_say_which_test_tiles_were_scored():
    paper, default = provenance_of("paper.yaml"), provenance_of("config.yaml")
    assert (paper.test_tiles, default.test_tiles) == ("reference", "all")
    assert paper.short().endswith(", reference test batches")
    assert default.short().endswith(", all test tiles")
    assert "5,100 of 5,128 DFC2020" in paper.sentence()
    assert default.sentence().endswith("Scored on every test tile.")


def test_settings_that_do_not_say_leave_it_out():
    settings = {"data": {"source": "real"}, "pretrain": {"encoder": "resnet50", "epochs": 200},
                "finetune": {"epochs": 50, "seeds": [0]}}
    assert Provenance.from_settings(settings).short() == "real data, ResNet50, 200 + 50 epochs, seeds 0"
