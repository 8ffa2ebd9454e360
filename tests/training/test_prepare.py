"""The batch preparation on the training device: the stored values it starts from."""

from __future__ import annotations

import numpy as np
import torch

from cromss.normalisation import normalise
from cromss.training import prepare


def test_uint16_bands_reach_the_device_with_their_values():
    """S2 digital numbers above the int16 range (bright clouds, saturation) keep their values."""
    raw = np.array([[[0, 1, 32767], [32768, 40000, 65535]]], dtype=np.uint16)
    moved = prepare.unsigned_on(torch.from_numpy(raw), torch.device("cpu"))
    assert moved.dtype == torch.int32
    np.testing.assert_array_equal(moved.numpy(), raw.astype(np.int32))
    statistics = prepare.scaling("s2", 13)
    mean, std = statistics["mean"][:1], statistics["std"][:1]
    np.testing.assert_array_equal(prepare.normalise_tensor(moved, mean, std).numpy(),
                                  normalise(raw, mean, std))
