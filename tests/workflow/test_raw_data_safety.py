"""Data a user placed or downloaded survives every rerun: trees read in place (data.real.local) and
trees below the raw folder are never outputs Snakemake may remove, whatever is touched."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers.workflow import TINY, copy_workflow, snakemake

DATA = ROOT / "tests" / "fixtures"
PARTS = ("ssl4eo_s12", "noldo", "dfc2020")


def place_trees(dest: Path) -> dict[str, Path]:
    """The fixture trees, placed by hand as a user's downloads."""
    return {part: Path(shutil.copytree(DATA / part, dest / part)) for part in PARTS}


def fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def touch_everything(root: Path) -> None:
    """Make every file and folder newer than anything Snakemake has written."""
    time.sleep(0.05)
    for path in [root, *root.rglob("*")]:
        os.utime(path)


def real_config(workdir: Path, **real) -> Path:
    config = yaml.safe_load(TINY.read_text())
    config["data"]["source"] = "real"
    config["data"]["real"] = {"huggingface_url": "http://127.0.0.1:9",  # nothing listens there
                              "retry": {"attempts": 1, "backoff_s": 0, "timeout_s": 2}, **real}
    path = workdir / "real.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


STORES = ["results/data/nol.zarr", "results/data/dfc2020_test.zarr"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "wf").mkdir()
    return copy_workflow(tmp_path / "wf")


@pytest.mark.slow
def test_local_trees_are_read_in_place_and_never_touched(workdir, tmp_path):
    trees = place_trees(tmp_path / "mine")
    config = real_config(workdir, local={part: str(path) for part, path in trees.items()})
    before = {part: fingerprint(path) for part, path in trees.items()}
    snakemake(workdir, *STORES, "--cores", "1", "--configfile", str(config))
    assert all((workdir / store).is_dir() for store in STORES)
    assert not (workdir / "results/raw/real").exists()  # nothing copied, nothing downloaded
    for path in trees.values():
        touch_everything(path)
    snakemake(workdir, *STORES, "--cores", "1", "--configfile", str(config))
    assert {part: fingerprint(path) for part, path in trees.items()} == before


@pytest.mark.slow
def test_hand_placed_raw_trees_survive_reruns_and_failed_downloads(workdir):
    raw = workdir / "results/raw/real"
    trees = place_trees(raw)
    touch_everything(trees["noldo"])  # NoLDO newer than SSL4EO-S12: the case that deleted it
    before = {part: fingerprint(path) for part, path in trees.items()}
    config = real_config(workdir)
    snakemake(workdir, *STORES, "--cores", "1", "--configfile", str(config))
    assert sorted(p.name for p in raw.glob("*.fetched")) == [f"{p}.fetched" for p in sorted(PARTS)]
    for path in trees.values():
        touch_everything(path)
    changed = real_config(workdir, retry={"attempts": 1, "backoff_s": 0, "timeout_s": 3})
    snakemake(workdir, *STORES, "--cores", "1", "--forceall", "--configfile", str(changed))
    assert {part: fingerprint(path) for part, path in trees.items()} == before
    # a download that really has to happen fails (no network): it removes nothing
    shutil.rmtree(trees["noldo"] / "ssl4eo_s12_osm")
    before["noldo"] = {k: v for k, v in before["noldo"].items() if not k.startswith("ssl4eo_s12_osm")}
    result = snakemake(workdir, "results/data/osm_test.zarr", "--cores", "1", "--forcerun",
                       "real_download", "--configfile", str(changed), check=False)
    assert result.returncode != 0
    assert {part: fingerprint(path) for part, path in trees.items()} == before
