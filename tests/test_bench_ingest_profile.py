"""benchmarks/bench_ingest_profile.py on a world of 4 locations: its figures add up, it covers every
chunk of the store, and the codec trade-off it reports has the known order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCATIONS = 4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_ingest_profile") / "profile.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ingest_profile.py"),
                           "--locations", str(LOCATIONS), "--repeats", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "floor of this design" in done.stdout
    assert out.with_suffix(".txt").read_text().strip() in done.stdout
    return json.loads(out.read_text())


def test_the_ratio_and_the_floor_add_up(results):
    per = results["per_location"]
    assert results["locations"] == LOCATIONS and results["geotiffs_read"] == 68 * LOCATIONS
    assert results["throughput_ratio"] == pytest.approx(per["plain_read_ms"] / per["ingest_ms"])
    assert per["ingest_ms"] == pytest.approx(
        per["main_thread_ms"] + per["writer_and_codec_threads_ms"])
    warp = results["main_thread_steps_under_cprofile"]["bilinear_axis_aligned"]
    codecs = results["codecs"]["the store's codecs"]["encode_ms"]
    assert results["floor_ms"] == pytest.approx(per["plain_read_ms"] + warp["with_callees_ms"]
                                                + codecs)
    assert results["budget_ms"] == pytest.approx(per["plain_read_ms"] / 0.3)


def test_every_step_of_the_main_thread_is_seen(results):
    steps = results["main_thread_steps_under_cprofile"]
    read = LOCATIONS + 1  # the first location once more: the template the store is created from
    assert steps["read_nol_location"]["calls"] == read
    # 68 GeoTIFFs per location: 13 S2 + 2 S1 bands, the noisy and the true label, 4 seasons each
    assert steps["read_raster"]["calls"] == 68 * read
    # each band group (20 m, 60 m) warped once per location, its 4 seasons together
    assert steps["bilinear_axis_aligned"]["calls"] == 2 * read
    for step in steps.values():
        assert 0 <= step["own_ms"] <= step["with_callees_ms"]


def test_the_codecs_are_the_stores_and_cover_every_chunk(results):
    codecs = results["codecs"]
    assert codecs["chunks"]["decoded_mb"] == pytest.approx(codecs["chunks"]["arrays_mb"])
    store = codecs["the store's codecs"]
    assert store["codecs"] == ["CRC32C", "Shuffle", "Zstd"]  # read from the store's metadata
    # the shuffle: fewer bytes than zstd alone at a higher level; its level 3 a little fewer
    assert codecs["shuffle + zstd 3"]["mb"] < store["mb"] < codecs["zstd 3 (stores before)"]["mb"]
    assert store["mb"] < codecs["chunks"]["decoded_mb"]


def test_peak_memory_is_measured_at_three_sizes_of_the_world(results):
    peaks = results["peak_memory"]
    assert [p["locations"] for p in peaks] == [1, 2, 4]
    for peak in peaks:  # the main process holds the imports and a batch; a reader far less
        assert peak["main_process_mb"] > peak["reading_process_mb"] > 50
