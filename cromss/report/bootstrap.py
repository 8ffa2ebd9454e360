"""A bootstrap over test tiles and seeds of a contrast between runs, and the verdict on a claim.

Each *arm* of a contrast is one run configuration (task, modality, weights, setting) given as its
per-seed, per-unit additive counts: ``{seed: array (units, K)}``, e.g. the flattened confusion
matrix of every test tile. A score (mIoU) is computed from the counts summed over the units, per
seed, then averaged over seeds; the contrast is ``sum_k weight_k * arm_k`` (``[1, -1]``: A - B).

*Paired* (the default): one replicate draws the seeds and the units with replacement once, for all
arms alike, so the arms share seeds (fine-tuning seed) and tiles (the same test store); this is
the comparison the design allows, and it removes the variation the arms share. *Unpaired* draws
them separately per arm. The bootstrap RNG has a fixed seed, so a verdict is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
REPLICATES = 2000
RNG_SEED = 0
CHUNK = 250
"""Replicates drawn at a time (bounds the memory of the units-by-replicates count matrix)."""
VERDICTS = ("holds", "does not hold", "inconclusive")
MIN_UNITS = 5
"""Fewer resampled units (test tiles, epochs, locations) than this decide nothing: a bootstrap
of two tiles has three distinct replicates."""

Arm = Mapping[int, np.ndarray]
Score = Callable[[np.ndarray], np.ndarray]


def miou_of_counts(counts: np.ndarray) -> np.ndarray:
    """mIoU in percent (strict convention: a class absent from prediction and truth scores 0) of
    flattened confusion matrices, shape (..., C*C) -> (...)."""
    classes = int(round(np.sqrt(counts.shape[-1])))
    if classes * classes != counts.shape[-1]:
        raise ValueError(f"{counts.shape[-1]} counts are not a square confusion matrix")
    cm = counts.reshape(*counts.shape[:-1], classes, classes).astype(np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    union = cm.sum(-1) + cm.sum(-2) - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    return 100.0 * iou.mean(-1)


def mean_of_counts(counts: np.ndarray) -> np.ndarray:
    """The mean of per-unit values given as counts ``[value, 1]`` per unit, shape (..., 2)."""
    return counts[..., 0] / np.maximum(counts[..., 1], 1e-300)


@dataclass(frozen=True)
class Interval:
    """A contrast's point estimate (all units and seeds) and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float
    seeds: int
    units: int
    per_seed: tuple[float, ...]
    """The contrast per seed (paired seeds only; empty otherwise)."""


def _arm_score(arm: Arm, seeds: Sequence[int], score: Score) -> np.ndarray:
    """Per-seed scores on all units."""
    return np.array([float(score(np.asarray(arm[s]).sum(0))) for s in seeds])


def _draw_counts(rng: np.random.Generator, size: int, replicates: int) -> np.ndarray:
    """How often each of ``size`` items is drawn in each replicate, shape (replicates, size)."""
    return rng.multinomial(size, np.full(size, 1.0 / size), size=replicates).astype(np.float64)


def _replicate_scores(arm: Arm, seeds: Sequence[int], seed_draws: np.ndarray,
                      unit_draws: np.ndarray, score: Score) -> np.ndarray:
    """An arm's score per replicate: per-seed scores of the resampled units, weighted by how
    often each seed was drawn."""
    per_seed = np.stack([score(unit_draws @ np.asarray(arm[s], dtype=np.float64))
                         for s in seeds], axis=1)
    return (per_seed * seed_draws).sum(1) / seed_draws.sum(1)


def _common(arms: Sequence[Arm]) -> tuple[list[int], int]:
    seeds = sorted(set.intersection(*(set(arm) for arm in arms)))
    if not seeds:
        raise ValueError("the arms of a paired contrast share no seed")
    units = {np.asarray(arm[s]).shape[0] for arm in arms for s in seeds}
    if len(units) != 1:
        raise ValueError(f"the arms of a paired contrast have different unit counts {sorted(units)}")
    return seeds, units.pop()


def contrast(arms: Sequence[Arm], weights: Sequence[float], *, score: Score = miou_of_counts,
             paired: bool = True, level: float = LEVEL, replicates: int = REPLICATES,
             rng_seed: int = RNG_SEED) -> Interval:
    """The contrast ``sum_k weights[k] * arms[k]`` with its bootstrap interval at ``level``."""
    if len(arms) != len(weights) or not arms:
        raise ValueError(f"{len(arms)} arms and {len(weights)} weights")
    rng = np.random.default_rng(rng_seed)
    if paired:
        seeds, units = _common(arms)
        per_arm_seeds = [seeds] * len(arms)
    else:
        per_arm_seeds = [sorted(arm) for arm in arms]
    scores = [_arm_score(arm, s, score) for arm, s in zip(arms, per_arm_seeds)]
    estimate = float(sum(w * s.mean() for w, s in zip(weights, scores)))
    per_seed = (tuple(float(v) for v in np.sum([w * s for w, s in zip(weights, scores)], axis=0))
                if paired else ())
    samples = []
    for start in range(0, replicates, CHUNK):
        size = min(CHUNK, replicates - start)
        total = np.zeros(size)
        if paired:
            seed_draws, unit_draws = _draw_counts(rng, len(seeds), size), _draw_counts(rng, units, size)
        for k, (arm, arm_seeds) in enumerate(zip(arms, per_arm_seeds)):
            if not paired:
                seed_draws = _draw_counts(rng, len(arm_seeds), size)
                unit_draws = _draw_counts(rng, np.asarray(arm[arm_seeds[0]]).shape[0], size)
            total += weights[k] * _replicate_scores(arm, arm_seeds, seed_draws, unit_draws, score)
        samples.append(total)
    draws = np.concatenate(samples)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    counted = per_arm_seeds[0]
    return Interval(estimate, float(low), float(high), level, len(counted),
                    int(np.asarray(arms[0][counted[0]]).shape[0]), per_seed)


def verdict(interval: Interval, direction: int) -> str:
    """``holds`` if the interval of ``direction * effect`` lies above 0, ``does not hold`` if it
    lies below 0, else ``inconclusive`` (also with fewer than :data:`MIN_UNITS` units)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be 1 or -1, not {direction}")
    if interval.units < MIN_UNITS:
        return "inconclusive"
    low, high = sorted((direction * interval.low, direction * interval.high))
    if low > 0:
        return "holds"
    if high < 0:
        return "does not hold"
    return "inconclusive"
