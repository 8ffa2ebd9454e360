"""Store summary (samples, seasons, bands, class histogram, label noise) and a PNG quicklook."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cromss.constants import IGNORE_INDEX, S2_BANDS
from cromss.data.store import open_arrays

TRUE_COLOUR = tuple(S2_BANDS.index(b) for b in ("B4", "B3", "B2"))
S2_TRUE_COLOUR_MAX = 2500.0  # L1C digital number shown as white
TRUE_COLOUR_GAMMA = 0.8      # brightens the dark land surface a little


def class_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel counts per class index, with the ignored pixels counted last."""
    counts = np.bincount(labels.ravel(), minlength=256)
    return np.append(counts[:num_classes], counts[IGNORE_INDEX])


def summarise(path: str | os.PathLike, max_samples: int = 2000) -> dict[str, Any]:
    """Sizes, attributes, class histogram and label-noise rate (where ``truth`` exists).

    Pixel statistics use the first ``max_samples`` samples.
    """
    group = open_arrays(path)
    attrs = dict(group.attrs)
    n, seasons, s2_bands, h, w = group["s2"].shape
    used = min(n, max_samples)
    label = group["label"][:used]
    summary: dict[str, Any] = {
        "store": str(path), "dataset": attrs.get("dataset"), "split": attrs.get("split"),
        "samples": n, "seasons": seasons, "height": h, "width": w,
        "s1_bands": list(attrs.get("s1_bands", [])), "s2_bands": list(attrs.get("s2_bands", [])),
        "pixel_statistics_over_samples": used,
        "class_histogram": dict(zip([*attrs["class_names"], "ignore"],
                                    class_histogram(label, attrs["num_classes"]).tolist())),
        "s1_nodata_pixels": int(np.asarray(group["s1_nodata"][:used]).sum()),
    }
    if "truth" in group:
        truth = group["truth"][:used]
        valid = (label != IGNORE_INDEX) & (truth != IGNORE_INDEX)
        summary["label_noise_rate"] = float((label[valid] != truth[valid]).mean())
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned text lines."""
    lines = [f"{key}: {value}" for key, value in summary.items() if key != "class_histogram"]
    total = max(sum(summary["class_histogram"].values()), 1)
    lines.append("class histogram (pixels, share):")
    lines += [f"  {name:<45} {count:>12} {count / total:7.2%}"
              for name, count in summary["class_histogram"].items()]
    return "\n".join(lines)


def stretch(image: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Scale to [0, 1] between two percentiles (per channel on the last axis), NaN-safe."""
    lo, hi = np.nanpercentile(np.asarray(image, dtype=float), [low, high], axis=(0, 1))
    return np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0, 1)


def rgb_bands(s2: np.ndarray) -> np.ndarray:
    """(H, W, 3) red, green, blue (B4, B3, B2) of a (13, H, W) L1C stack."""
    return np.asarray(s2)[list(TRUE_COLOUR)].transpose(1, 2, 0)


def true_colour(rgb: np.ndarray) -> np.ndarray:
    """S2 true colour for display, the one scale of every figure and quicklook: L1C digital numbers
    of (H, W, 3) red, green, blue divided by ``S2_TRUE_COLOUR_MAX``, clipped, gamma 0.8.

    A fixed scale (not a per-tile stretch) keeps tiles comparable: a cloudy tile is bright, a
    dark one dark, as in the data."""
    rgb = np.nan_to_num(np.asarray(rgb, dtype=float))
    return np.clip(rgb / S2_TRUE_COLOUR_MAX, 0, 1) ** TRUE_COLOUR_GAMMA


def s1_composite(s1: np.ndarray) -> np.ndarray:
    """False colour of a (2, H, W) S1 array in dB (VV, VH, VV - VH), each channel stretched."""
    s1 = np.asarray(s1, dtype=float)
    if s1.ndim != 3 or s1.shape[0] != 2:
        raise ValueError(f"S1 must be (2, H, W), not {s1.shape}")
    return stretch(np.stack([s1[0], s1[1], s1[0] - s1[1]], axis=-1))


def colour_labels(label: np.ndarray, colors: list[str]) -> np.ndarray:
    """Class indices -> RGB in the class colours; ignored pixels black."""
    from matplotlib.colors import to_rgb
    table = np.zeros((256, 3))
    table[: len(colors)] = [to_rgb(c) for c in colors]
    return table[label]


def quicklook(path: str | os.PathLike, png: str | os.PathLike, samples: int = 4) -> Path:
    """PNG grid, one row per sample (row r shows season r mod T): S2 true colour, S1, labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from cromss.atomic import atomic_path

    group = open_arrays(path)
    attrs = dict(group.attrs)
    rows = min(samples, group["s2"].shape[0])
    panels = ["S2 true colour (B4 B3 B2)", "S1 (VV, VH, VV-VH)", "label"]
    if "truth" in group:
        panels.append("truth")
    fig, axes = plt.subplots(rows, len(panels), figsize=(3 * len(panels), 3 * rows + 1),
                             squeeze=False)
    ids = group["sample"][:rows]
    seasons = group["s2"].shape[1]
    for row in range(rows):
        season = row % seasons
        images = [true_colour(rgb_bands(group["s2"][row, season])),
                  s1_composite(group["s1"][row, season]),
                  colour_labels(group["label"][row, season], attrs["class_colors"])]
        if "truth" in group:
            images.append(colour_labels(group["truth"][row, season], attrs["class_colors"]))
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(panels[col], fontsize=9)
        axes[row, 0].set_ylabel(f"{ids[row]} season {season}", fontsize=8)
    handles = [Patch(color=c, label=n) for n, c in zip(attrs["class_names"], attrs["class_colors"])]
    handles.append(Patch(color="black", label="ignore"))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=7,
               frameon=False)
    fig.suptitle(f"{attrs.get('dataset')} / {attrs.get('split')}", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    png = Path(png)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return png
