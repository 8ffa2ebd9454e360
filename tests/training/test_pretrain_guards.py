"""Pretraining stops on a non-finite validation loss instead of logging NaN."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from cromss.errors import CromssError
from cromss.settings import Pretrain
from cromss.training import pretrain
from helpers.settings import PRETRAIN_SETTINGS as SETTINGS
from helpers.stores import write_store


def test_nan_validation_sample_stops_before_anything_is_logged(tmp_path):
    store = write_store(tmp_path / "nol.zarr", samples=8, size=48)
    _, val = pretrain.split_indices(8, SETTINGS["val_fraction"], SETTINGS["seed"])
    s1 = zarr.open_array(str(store / "s1"), mode="r+")
    s1[val[0], :, :, 23:25, 23:25] = np.nan  # central pixels of one validation sample
    out = tmp_path / "run"
    with pytest.raises(CromssError, match="non-finite values in the validation loss of epoch 0"):
        pretrain.pretrain(store, Pretrain.parse({**SETTINGS, "epochs": 1}), out)
    assert not (out / "log.jsonl").exists() and not (out / "model.pt").exists()
