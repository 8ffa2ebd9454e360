"""Benchmark of the CromSS method library on CPU (2 threads), in one run on one machine.

(a) time of a full CromSS training step (two resnet18 U-Nets, batch 16, S1 2 + S2 13 channels,
    64x64 crops, 9 classes: soft targets from smoothing priors, cross-modal selection,
    consistency, forward + backward + Adam) over a plain step of the same two U-Nets with cross
    entropy. Target: at most 1.15.
(b) per-sample cost of producing the smoothed targets (4 seasons, 96x96 full maps and 64x64
    crops, the offline default; the paper's 264x264 maps and 256x256 crops) against a per-sample
    scipy implementation of the same equations on the full maps, without and with ignored
    pixels: ours one sample per call, a batch per call, and as the data loader makes them (a
    batch per call, each sample's crop window only). Target: the data loader's at least 5x
    faster, values equal within 1e-5.

Run: ``python benchmarks/bench_method.py``; writes ``benchmarks/results/bench_method.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cromss import allocator
from cromss.atomic import atomic_path
from cromss.constants import IGNORE_INDEX
from cromss.losses import cromss_loss
from cromss.models import build_model
from cromss.settings import Selection
from cromss.smoothing import reference_smoothing_prior, smoothed_targets_batch, soft_labels

THREADS = 2
BATCH, CROP, FULL, SEASONS, CLASSES = 16, 64, 96, 4, 9
TARGET_CASES = ((FULL, CROP, BATCH, 0.0), (FULL, CROP, BATCH, 0.02), (264, 256, 4, 0.0),
                (264, 256, 4, 0.02))
"""(map side, crop, batch, share of ignored pixels) of part (b); 264 / 256 is the paper's."""
SETTINGS = {"fusion": "late", "encoder": "resnet18", "s2_bands": 13, "num_classes": CLASSES,
            "decoder_channels": [256, 128, 64, 32, 16], "consistency_weight": 1.0,
            "selection": {"enabled": True, "ramp_epochs": 5, "keep": 0.5}}
SELECTION = Selection(**SETTINGS["selection"])
OUT = Path(__file__).parent / "results" / "bench_method.json"


def season_stack(rng: np.random.Generator, ignored: float, size: int = FULL,
                 batch: int = BATCH) -> np.ndarray:
    """N x T x H x W noisy labels: blocky classes with some ignored pixels."""
    coarse = rng.integers(0, CLASSES, (batch, SEASONS, size // 8, size // 8))
    labels = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3).astype(np.uint8)
    labels[rng.random(labels.shape) < ignored] = IGNORE_INDEX
    return labels


def seconds(step: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def training_steps(repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds of the plain step, the CromSS step, and the CromSS step with
    the batch's priors computed in the step (from the full maps, on the crop window); and the
    median over the repeats of each CromSS step's time over the plain step run just before it."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(SETTINGS)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3, weight_decay=1e-8)
    s1, s2 = torch.randn(BATCH, 2, CROP, CROP), torch.randn(BATCH, 13, CROP, CROP)
    full_labels = torch.from_numpy(season_stack(rng, 0.01))
    seasons = torch.from_numpy(rng.integers(0, SEASONS, BATCH))
    labels = full_labels[torch.arange(BATCH), seasons, :CROP, :CROP].long()
    corners = np.zeros((BATCH, 2), dtype=np.int64)
    targets = smoothed_targets_batch(full_labels, seasons, CLASSES, windows=corners,
                                     window_size=CROP)

    def update(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def plain() -> None:
        logits_1, logits_2 = model(s1, s2)
        update(F.cross_entropy(logits_1, labels, ignore_index=IGNORE_INDEX)
               + F.cross_entropy(logits_2, labels, ignore_index=IGNORE_INDEX))

    def cromss(step_targets: torch.Tensor | None = None) -> None:
        if step_targets is None:
            step_targets = smoothed_targets_batch(full_labels, seasons, CLASSES, windows=corners,
                                                  window_size=CROP)
        logits_1, logits_2 = model(s1, s2)
        update(cromss_loss(logits_1, logits_2, labels, step_targets, 2, SELECTION,
                           SETTINGS["consistency_weight"])[0])

    for step in (plain, lambda: cromss(targets), cromss):  # warm-up
        step()
    # Interleaved repeats, so that each ratio compares steps run under the same machine load.
    times: dict[str, list[float]] = {"plain": [], "cromss": [], "cromss_with_priors": []}
    for _ in range(repeats):
        times["plain"] += seconds(plain, 1)
        times["cromss"] += seconds(lambda: cromss(targets), 1)
        times["cromss_with_priors"] += seconds(cromss, 1)
    ratios = {f"ratio{suffix}": statistics.median(
        step / base for step, base in zip(times[name], times["plain"], strict=True))
        for name, suffix in (("cromss", ""), ("cromss_with_priors", "_with_priors"))}
    return {**{f"{name}_s": min(values) for name, values in times.items()}, **ratios}


def smoothed_targets(size: int, crop: int, batch: int, ignored: float,
                     repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per sample of priors + soft labels, four ways: scipy one
    sample at a time on the full maps (as the reference's data loader, which then crops); ours
    one sample per call; ours for the whole batch in one call; and ours as the data loader makes
    them (``PretrainDataset.__getitems__``): the whole batch, each sample's ``crop`` window only."""
    rng = np.random.default_rng(1)
    stacks = season_stack(rng, ignored, size, batch)
    seasons = rng.integers(0, SEASONS, batch)
    windows = rng.integers(0, size - crop + 1, (batch, 2))
    labels = stacks[np.arange(batch), seasons]

    def reference() -> np.ndarray:
        return np.stack([soft_labels(lab, reference_smoothing_prior(stack, int(t), CLASSES),
                                     CLASSES)
                         for stack, t, lab in zip(stacks, seasons, labels, strict=True)])

    def per_sample() -> torch.Tensor:
        return torch.cat([smoothed_targets_batch(stacks[i:i + 1], seasons[i:i + 1], CLASSES)
                          for i in range(batch)])

    def batched() -> torch.Tensor:
        return smoothed_targets_batch(stacks, seasons, CLASSES)

    def loader() -> torch.Tensor:
        return smoothed_targets_batch(stacks, seasons, CLASSES, windows=windows,
                                      window_size=crop)

    expected = reference()
    crops = np.stack([target[:, top:top + crop, left:left + crop]
                      for target, (top, left) in zip(expected, windows, strict=True)])
    difference = max(float(np.abs(per_sample().numpy() - expected).max()),
                     float(np.abs(batched().numpy() - expected).max()),
                     float(np.abs(loader().numpy() - crops).max()))
    steps = {"scipy": reference, "per_sample": per_sample, "batched": batched, "loader": loader}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved, as the training steps
        for name, step in steps.items():
            times[name] += seconds(step, 1)
    best = {name: min(values) / batch for name, values in times.items()}
    return {**best, "max_abs_difference": difference,
            **{f"speedup_{name}": best["scipy"] / best[name]
               for name in ("per_sample", "batched", "loader")}}


def main() -> dict[str, object]:
    torch.set_num_threads(THREADS)
    allocator.keep_freed_memory()  # as every cromss command runs
    steps = training_steps(repeats=11)
    targets = {f"{size}px_ignored_{share}": smoothed_targets(size, crop, batch, share,
                                                             repeats=15 if size == FULL else 5)
               for size, crop, batch, share in TARGET_CASES}
    results = {
        "machine": {"processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": THREADS},
        "training_step": {**steps, "target_ratio": 1.15},
        "smoothed_targets": {**targets, "target_speedup": 5.0},
    }
    print(f"(a) training step, batch {BATCH}, {CROP}x{CROP}, {THREADS} threads")
    print(f"    plain CE {steps['plain_s']:.3f} s | CromSS {steps['cromss_s']:.3f} s "
          f"(ratio {steps['ratio']:.3f}) | CromSS + batch priors "
          f"{steps['cromss_with_priors_s']:.3f} s (ratio {steps['ratio_with_priors']:.3f}); "
          "median ratios of interleaved steps, target <= 1.15")
    print(f"(b) smoothed targets, {SEASONS} seasons: ms per sample, and speed-up over scipy; "
          "ours one sample per call / whole batch per call / the data loader (batch, crop only)")
    print(f"    {'case':<20}{'scipy':>8}{'one':>8}{'batch':>8}{'loader':>8}"
          f"{'speed-up':>24}{'max |diff|':>12}")
    for name, case in targets.items():
        print(f"    {name:<20}" + "".join(f"{case[k] * 1e3:>8.3f}" for k in
                                          ("scipy", "per_sample", "batched", "loader"))
              + f"{case['speedup_per_sample']:>9.1f}x /{case['speedup_batched']:>5.1f}x /"
              f"{case['speedup_loader']:>5.1f}x{case['max_abs_difference']:>12.1e}")
    with atomic_path(OUT) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return results


if __name__ == "__main__":
    main()
