"""A store ingested in partitions (separate jobs) equals the one-job store; reruns keep finished
partitions; a live writer's work is never swept; sharded stores validate by their shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from cromss.atomic import atomic_path, sweep
from cromss.cli import main
from cromss.data import partitioned
from cromss.data.ingest import ingest, ingest_partition, init_ingest, publish_ingest
from cromss.data.layouts import Roots
from cromss.data.store import open_arrays


def assert_same_store(a: Path, b: Path) -> None:
    """Every array (values, dtype, shape) and every attribute of two stores are equal."""
    one, two = open_arrays(a), open_arrays(b)
    assert sorted(one.array_keys()) == sorted(two.array_keys())
    for name in one.array_keys():
        x, y = one[name][:], two[name][:]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
        assert dict(one[name].attrs) == dict(two[name].attrs), name
    assert dict(one.attrs) == dict(two.attrs)


@pytest.fixture(scope="module")
def one_job(tiny_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "nol.zarr"
    ingest("nol", tiny_raw, out, shard_samples=2)
    return out


def test_three_partitions_write_the_one_job_store(tiny_raw, one_job, tmp_path):
    out = tmp_path / "nol.zarr"
    counts = ingest("nol", tiny_raw, out, shard_samples=2, partitions=3)
    assert counts["samples"] == 6
    assert_same_store(one_job, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nol.zarr"]  # partial removed
    group = open_arrays(out)
    assert group["s2"].shards == (2, 4, 13, 48, 48) and group["s2"].chunks == (1, 1, 13, 48, 48)
    assert "ingest_plan" not in group.attrs


def test_partition_jobs_through_the_cli_and_a_rerun_writes_nothing_twice(tiny_raw, one_job,
                                                                         tmp_path, capsys):
    out = tmp_path / "nol.zarr"
    args = ["data", "ingest", "nol", "--raw", str(tiny_raw), "--out", str(out),
            "--shard-samples", "2"]
    assert main([*args, "--step", "init", "--partitions", "3"]) == 0
    assert main([*args, "--step", "0"]) == 0 and main([*args, "--step", "2"]) == 0
    shard = partitioned.store_path(out) / "s2" / "c" / "0" / "0" / "0" / "0" / "0"
    written = shard.stat().st_mtime_ns
    # partition 1 not finished: nothing is published, nothing appears under the final name
    assert main([*args, "--step", "publish"]) == 2
    assert "partitions [1] of 3 are not finished" in capsys.readouterr().err
    assert not out.exists()
    # a rerun of init (same plan) and of a finished partition keep what was written
    assert main([*args, "--step", "init", "--partitions", "3"]) == 0
    assert main([*args, "--step", "0"]) == 0
    assert shard.stat().st_mtime_ns == written
    assert main([*args, "--step", "1"]) == 0 and main([*args, "--step", "publish"]) == 0
    assert_same_store(one_job, out)
    assert not partitioned.parts_dir(out).exists()


def test_a_failed_partition_reruns_alone(tiny_raw, one_job, tmp_path, monkeypatch):
    from cromss.data import ingest as ingest_module

    out, roots = tmp_path / "nol.zarr", Roots.under(tiny_raw)
    init_ingest("nol", roots, out, partitions=3, shard_samples=2)
    ingest_partition("nol", roots, out, 0)
    real = ingest_module.write_region
    monkeypatch.setattr(ingest_module, "write_region",
                        lambda *a: (_ for _ in ()).throw(OSError("node lost")))
    with pytest.raises(OSError, match="node lost"):
        ingest_partition("nol", roots, out, 1)
    monkeypatch.setattr(ingest_module, "write_region", real)
    calls = []
    monkeypatch.setattr(ingest_module, "write_region", lambda *a: calls.append(a[2]) or real(*a))
    for index in range(3):
        ingest_partition("nol", roots, out, index)
    assert calls == [2, 4]  # partitions 1 and 2 only: samples 2-3 and 4-5
    publish_ingest("nol", out)
    assert_same_store(one_job, out)


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_writers_partial_is_not_swept(tmp_path):
    final = tmp_path / "nol.zarr"
    host = socket.gethostname()
    live = sleeper()
    try:
        mine = tmp_path / f".nol.zarr.{live.pid}@{host}.abcd.partial"
        dead = tmp_path / f".nol.zarr.{dead_pid()}@{host}.efgh.partial"
        old_style = tmp_path / ".nol.zarr.ijkl.partial"
        for path in (mine, dead, old_style):
            path.mkdir()
        sweep(final)
        assert mine.is_dir() and not dead.exists() and not old_style.exists()
        with atomic_path(final) as tmp:  # a second writer of the same output
            assert tmp.name.startswith(f".nol.zarr.{os.getpid()}@{host}.")
            tmp.mkdir()
        assert mine.is_dir() and final.is_dir()
    finally:
        live.kill()
        live.wait()
    sweep(final)
    assert not mine.exists()


def test_a_second_ingest_leaves_a_live_partition_alone(tiny_raw, tmp_path):
    out, roots = tmp_path / "nol.zarr", Roots.under(tiny_raw)
    init_ingest("nol", roots, out, partitions=3, shard_samples=2)
    stamp = partitioned.parts_dir(out) / "parts" / "00000.owner"
    live = sleeper()
    try:
        stamp.write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid}))
        with pytest.raises(RuntimeError, match="partition 0 is being written by"):
            ingest("nol", tiny_raw, out, partitions=3, shard_samples=2)
        assert stamp.is_file() and partitioned.store_path(out).is_dir()  # not discarded
        with pytest.raises(RuntimeError, match="being written by live processes"):
            init_ingest("nol", roots, out, partitions=2, shard_samples=2)  # another plan
    finally:
        live.kill()
        live.wait()
    ingest("nol", tiny_raw, out, partitions=3, shard_samples=2)  # the owner is dead: resumed
    assert not partitioned.parts_dir(out).exists() and out.is_dir()


def test_a_missing_shard_is_found_without_listing_chunks(one_job, tmp_path):
    import shutil

    store = tmp_path / "nol.zarr"
    shutil.copytree(one_job, store)
    (store / "label" / "c" / "1" / "0" / "0" / "0").unlink()
    with pytest.raises(ValueError, match=r"label has 1 of 3 shards missing"):
        open_arrays(store)


def test_an_unsharded_store_still_opens(one_job, tmp_path):
    import xarray as xr

    from cromss.data.store import open_store

    legacy = tmp_path / "old.zarr"
    dataset = open_store(one_job).load()
    encoding = {name: {"chunks": var.encoding["chunks"],
                       "compressors": var.encoding["compressors"]}
                for name, var in dataset.data_vars.items() if var.encoding.get("shards")}
    for var in dataset.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k == "units" or k == "dtype"}
    dataset.to_zarr(legacy, mode="w", zarr_format=3, consolidated=False, encoding=encoding,
                    write_empty_chunks=True)
    assert zarr.open_group(str(legacy))["s2"].shards is None
    assert_same_store(one_job, legacy)
    assert isinstance(xr.open_zarr(legacy, consolidated=False), xr.Dataset)


def test_snakemake_runs_partition_jobs_and_publishes_the_one_job_store(tmp_path, monkeypatch):
    from helpers.workflow import TINY, copy_workflow, planned_jobs, snakemake, with_config

    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    assert "store_init" not in planned_jobs(workdir)  # the offline default: one job per store
    paper = planned_jobs(workdir, "--configfile", "config/paper.yaml", "--replace-workflow-config")
    assert (paper["store_init"], paper["store_partition"], paper["store"]) == (1, 128, 7)
    config = with_config(workdir, "parts.yaml", TINY, lambda c: c["data"].update(
        ingest={"partitions": {"nol": 3}, "shard_samples": 2}))
    target = "results/data/nol.zarr"
    jobs = planned_jobs(workdir, target, "--configfile", str(config))
    assert (jobs["store_init"], jobs["store_partition"], jobs["store"]) == (1, 3, 1)
    snakemake(workdir, target, "--cores", "2", "--configfile", str(config))
    one = tmp_path / "one" / "nol.zarr"
    monkeypatch.chdir(workdir)  # the same relative raw path in the attribute "source"
    ingest("nol", "results/raw/synthetic", one, shard_samples=2)
    assert_same_store(one, workdir / target)
    assert sorted(p.name for p in (workdir / "results/data").iterdir()) == ["nol.zarr"]
    rerun = snakemake(workdir, target, "-n", "--configfile", str(config)).stdout
    assert "Nothing to be done" in rerun
