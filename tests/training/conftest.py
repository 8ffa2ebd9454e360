"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cromss import models
from cromss.weights import encoders


@pytest.fixture(scope="module")
def s2_encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An S2 encoder exported from a freshly built (seeded) midF model."""
    settings = {"name": "midF", "fusion": "middle", "encoder": "resnet18", "s2_bands": 13,
                "decoder_channels": [32, 16, 16, 8, 8]}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "encoder_s2.pt"
    encoders.save_encoder(path, models.build_model(settings), "s2", settings)
    return path
