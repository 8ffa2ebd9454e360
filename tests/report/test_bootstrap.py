"""The paired bootstrap over seeds and test tiles, and the verdict rule."""

from __future__ import annotations

import numpy as np
import pytest

from cromss.report import bootstrap
from cromss.training import metrics
from helpers.claims import simulated_tiles


def arms_of(rng: np.random.Generator, qualities: list[float], tiles: int = 30,
            seeds: int = 2, spread: float = 1.5) -> list[dict[int, np.ndarray]]:
    """Arms on the same tiles (shared difficulty) and seeds, one per quality."""
    difficulty = rng.normal(0.0, spread, tiles)
    return [{s: simulated_tiles(rng, difficulty, q) for s in range(seeds)} for q in qualities]


def test_miou_of_counts_is_the_strict_miou_of_the_summed_matrix() -> None:
    rng = np.random.default_rng(1)
    tiles = simulated_tiles(rng, rng.normal(0, 1, 5), 0.5, classes=4)
    tiles[:, 4 * 3 + 3] = 0  # class 3 never predicted right: a real zero
    summed = tiles.sum(0)
    expected = metrics.scores(summed.reshape(4, 4), "strict")["mIoU"]
    assert bootstrap.miou_of_counts(summed) == pytest.approx(expected)
    assert bootstrap.miou_of_counts(np.zeros(9)) == 0.0  # absent classes count 0
    with pytest.raises(ValueError, match="square"):
        bootstrap.miou_of_counts(np.zeros(8))


def test_the_estimate_is_the_mean_over_seeds_of_each_runs_miou() -> None:
    arms = arms_of(np.random.default_rng(2), [1.0, 0.0])
    result = bootstrap.contrast(arms, [1, -1], replicates=200)
    per_seed = [bootstrap.miou_of_counts(arms[0][s].sum(0)) - bootstrap.miou_of_counts(
        arms[1][s].sum(0)) for s in (0, 1)]
    assert result.estimate == pytest.approx(np.mean(per_seed))
    assert result.per_seed == pytest.approx(per_seed)
    assert (result.seeds, result.units, result.level) == (2, 30, 0.95)


def test_the_interval_covers_the_population_effect() -> None:
    # a population of tiles; each experiment tests both arms on 30 of them (paired)
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0.0, 1.0, 1500)
    better, worse = simulated_tiles(rng, difficulty, 1.0), simulated_tiles(rng, difficulty, 0.7)
    truth = bootstrap.miou_of_counts(better.sum(0)) - bootstrap.miou_of_counts(worse.sum(0))
    assert truth > 3  # a real effect
    covered = holds = 0
    for experiment in range(60):
        chosen = rng.choice(len(difficulty), 30, replace=False)
        result = bootstrap.contrast([{0: better[chosen]}, {0: worse[chosen]}], [1, -1],
                                    replicates=400, rng_seed=experiment)
        covered += result.low <= truth <= result.high
        holds += bootstrap.verdict(result, 1) == "holds"
    assert covered >= 50  # nominal 95 %: 57 of 60; a percentile bootstrap runs a little short
    assert holds >= 40


def test_pairing_narrows_the_interval_when_the_arms_share_tiles() -> None:
    arms = arms_of(np.random.default_rng(4), [0.6, 0.3], spread=2.0)
    paired = bootstrap.contrast(arms, [1, -1], replicates=500)
    unpaired = bootstrap.contrast(arms, [1, -1], replicates=500, paired=False)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert (paired.high - paired.low) < 0.7 * (unpaired.high - unpaired.low)
    assert unpaired.per_seed == ()


def test_the_same_seed_gives_the_same_interval_another_one_another() -> None:
    arms = arms_of(np.random.default_rng(5), [0.5, 0.4])
    first = bootstrap.contrast(arms, [1, -1], replicates=300)
    assert bootstrap.contrast(arms, [1, -1], replicates=300) == first
    other = bootstrap.contrast(arms, [1, -1], replicates=300, rng_seed=7)
    assert other.estimate == first.estimate and (other.low, other.high) != (first.low, first.high)


def test_a_difference_of_differences_has_four_arms() -> None:
    arms = arms_of(np.random.default_rng(6), [1.5, 0.0, 0.5, 0.0])
    result = bootstrap.contrast(arms, [1, -1, -1, 1], replicates=300)
    gains = [bootstrap.contrast(arms[i:i + 2], [1, -1], replicates=10).estimate for i in (0, 2)]
    assert result.estimate == pytest.approx(gains[0] - gains[1])
    assert bootstrap.verdict(result, 1) == "holds"


def interval(low: float, high: float, seeds: int = 2, units: int = 10) -> bootstrap.Interval:
    return bootstrap.Interval((low + high) / 2, low, high, 0.95, seeds, units, ())


def test_verdict_rule() -> None:
    assert bootstrap.verdict(interval(0.5, 2.0), 1) == "holds"
    assert bootstrap.verdict(interval(0.5, 2.0), -1) == "does not hold"
    assert bootstrap.verdict(interval(-2.0, -0.5), -1) == "holds"
    assert bootstrap.verdict(interval(-0.5, 2.0), 1) == "inconclusive"
    assert bootstrap.verdict(interval(0.0, 2.0), 1) == "inconclusive"  # touches 0
    assert bootstrap.verdict(interval(0.5, 2.0, seeds=1, units=5), 1) == "holds"
    assert bootstrap.verdict(interval(0.5, 2.0, seeds=3, units=4), 1) == "inconclusive"
    with pytest.raises(ValueError, match="direction"):
        bootstrap.verdict(interval(0.5, 2.0), 0)


def test_a_paired_contrast_needs_shared_seeds_and_tiles() -> None:
    arms = arms_of(np.random.default_rng(8), [0.5, 0.4])
    with pytest.raises(ValueError, match="share no seed"):
        bootstrap.contrast([arms[0], {9: arms[1][0]}], [1, -1])
    with pytest.raises(ValueError, match="unit counts"):
        bootstrap.contrast([arms[0], {0: arms[1][0][:5], 1: arms[1][1][:5]}], [1, -1])
    with pytest.raises(ValueError, match="weights"):
        bootstrap.contrast(arms, [1])
