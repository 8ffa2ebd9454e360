"""Small learnable stores written through the real store writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cromss.constants import DW_CLASSES, DW_COLORS, IGNORE_INDEX
from cromss.data.store import make_batch, save_store, store_attrs


def write_store(path: Path, *, samples: int = 6, seasons: int = 4, size: int = 32,
                classes: int = 9, noise: float = 0.2, truth: bool = True, seed: int = 0,
                names: tuple[str, ...] = DW_CLASSES, colors: tuple[str, ...] = DW_COLORS) -> Path:
    """A tiny store whose images encode the true class (so a model can learn), with noisy labels.

    The true map is a pattern of 8x8 blocks; S1 and S2 are class-dependent levels plus noise; the
    label flips a share ``noise`` of the pixels to a random class and marks a corner ignored.
    """
    rng = np.random.default_rng(seed)
    blocks = rng.integers(classes, size=(samples, 1, size // 8, size // 8))
    true = np.repeat(np.repeat(blocks, 8, axis=2), 8, axis=3).repeat(seasons, axis=1)
    level = true[:, :, None].astype(np.float32)
    s1 = -25 + 2.0 * level + rng.normal(0, 0.5, (samples, seasons, 2, size, size))
    s2 = 300 + 250 * level + rng.normal(0, 40, (samples, seasons, 13, size, size))
    flip = rng.random(true.shape) < noise
    label = np.where(flip, rng.integers(classes, size=true.shape), true).astype(np.uint8)
    label[..., :2, :2] = IGNORE_INDEX
    times = np.datetime64("2020-01-01") + np.arange(seasons) * np.timedelta64(90, "D")
    batch = make_batch(
        s1=s1, s2=np.clip(s2, 0, 10000), label=label, truth=true if truth else None,
        sample_id=[f"{i:07d}" for i in range(samples)], crs=[32632] * samples,
        transform=np.tile([10.0, 0, 500000, 0, -10.0, 5000000], (samples, 1)),
        time=np.tile(times, (samples, 1)))
    attrs = store_attrs(dataset="test", split="train", classes=names[:classes],
                        colors=colors[:classes], label_remap={}, source="test helper")
    return save_store(path, batch, attrs)
