"""Shared fixtures: a tiny synthetic world in the real on-disk layouts, ingested into every store.

Like torchgeo's fake-data generators, the fixture writes exactly the files a real download
unpacks to, so the same ingest code is exercised as on real data.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling

TINY_RUN_GROUP = "tiny_run"
"""The xdist group of the tests that share ``tiny_run``: one worker runs them all."""
LONG_CHAINS = (TINY_RUN_GROUP, "slurm")
"""xdist groups handed out first, in this order: the suite's longest chains of work (the tiny
DAG and its tests; the same DAG through SLURM, which reads ``finished_tiny_run`` only at its
end) start on both workers at once. The SLURM run mostly waits for its jobs, whose CPU the tiny
DAG's two cores then take."""
FINISHED_TIMEOUT_S = 1800

TINY_SETTINGS = {
    "seed": 7, "pretrain_locations": 6, "pretrain_size": 48,
    "tiles": {"dw_train": 3, "dw_test": 2, "osm_train": 3, "osm_test": 2,
              "dfc2020_train": 3, "dfc2020_test": 2},
    "tile_size": 48, "dfc_size": 32, "label_noise": 0.3, "cloud_fraction": 0.5,
}


def xdist_groups(item: pytest.Item) -> list[str]:
    return sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                   for mark in item.iter_markers("xdist_group")})


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker under ``--dist loadgroup`` (pyproject.toml's addopts): each grouped
    test's node id carries its group, and the ``tiny_run`` group comes first.

    xdist 3.8 tells the scheduler a test's group by appending ``@group`` to the legacy
    ``_nodeid``, which pytest 9 no longer reads (pytest-xdist#1386): the grouped tests were
    spread over the workers and each of them ran the tiny DAG from nothing. The suffix is set
    on the node id pytest 9 reports (a no-op where xdist did it). Work is handed out in
    collection order (ModuleOrGroupScheduling), so the ``LONG_CHAINS`` come first.
    """
    config.stash[TINY_RUN_SELECTED] = any(
        "tiny_run" in item.fixturenames and TINY_RUN_GROUP in xdist_groups(item) for item in items)
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = xdist_groups(item)
        suffix = f"@{'_'.join(groups)}"
        if groups and not item.nodeid.endswith(suffix):
            from _pytest.nodeid import NodeId
            item._id = NodeId.parse(item.nodeid + suffix)
    items.sort(key=lambda item: min((LONG_CHAINS.index(group) for group in xdist_groups(item)
                                     if group in LONG_CHAINS), default=len(LONG_CHAINS)))


TINY_RUN_SELECTED = pytest.StashKey[bool]()
"""Whether a selected test of the ``tiny_run`` group builds ``tiny_run`` in this session."""


class ModuleOrGroupScheduling(LoadGroupScheduling):
    """``--dist loadgroup`` with the unmarked tests of a module as one unit of work, so that its
    module-scoped fixtures are set up once, on one worker; units go out in collection order."""

    def _split_scope(self, nodeid: str) -> str:
        scope = super()._split_scope(nodeid)
        return nodeid.split("::", 1)[0] if scope == nodeid else scope


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadGroupScheduling | None:
    if config.getoption("dist") != "loadgroup":
        return None
    config.option.loadscopereorder = False  # not by test count: the tiny_run group first
    return ModuleOrGroupScheduling(config, log)


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw root of a tiny synthetic world (6 locations at 48 px, a few tiles)."""
    from cromss.data.synthetic import synthesise
    return synthesise(tmp_path_factory.mktemp("tiny") / "raw", TINY_SETTINGS)


@pytest.fixture(scope="session")
def tiny_world(tiny_raw: Path) -> dict[str, Path]:
    """Store name -> path of every Zarr store ingested from the tiny world."""
    from cromss.data.ingest import STORES, ingest
    stores = {name: tiny_raw.parent / "data" / f"{name}.zarr" for name in STORES}
    for name, path in stores.items():
        ingest(name, tiny_raw, path)
    return stores


@pytest.fixture(scope="session")
def release_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Release name -> (file, Lightning module) of four tiny checkpoints written by Lightning the
    way the reference writes the released weights (``tests/helpers/reference_checkpoints.py``), with the
    small ``mobilenet_v2`` encoder in place of ResNet-50 to keep them small (the payload and the
    key layout are those of the released files). Mark the tests that use them
    ``xdist_group("release_checkpoints")``, so that one worker writes them."""
    from cromss.weights.released import RELEASES, release
    from helpers.reference_checkpoints import write_reference_checkpoint
    # laid out as the Hugging Face repository serves them (tests/test_release.py serves this root)
    root = tmp_path_factory.mktemp("release")
    folder = root / "datasets" / "vikki23" / "NoLDO-S12" / "resolve" / "main"
    folder.mkdir(parents=True)
    out = {}
    for name in RELEASES:
        rel = release(name)
        file_fusion = rel.file.split("-")[3]
        path = folder / rel.file
        out[name] = (path, write_reference_checkpoint(path, file_fusion, rel.s2_bands,
                                                             "mobilenet_v2"))
    return out


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder all xdist workers of this session share (each has its own basetemp in it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The whole DAG of tests/configs/tiny.yaml, run once per session in a git checkout of the
    workflow and shared by the end-to-end tests of the ``tiny_run`` group, which may change it
    (mark them ``xdist_group("tiny_run")``). A copy as it was when the DAG finished is left for
    the tests on other workers (``finished_tiny_run``)."""
    from helpers.workflow import run_tiny_workflow
    shared = shared_dir(tmp_path_factory)
    if getattr(request.config.option, "loadgroup", False):  # an xdist worker
        claim = shared / "tiny_run.worker"
        try:
            with claim.open("x") as mine:
                mine.write(os.environ["PYTEST_XDIST_WORKER"])
        except FileExistsError:
            pytest.fail(f"{claim.read_text()} already ran the tiny DAG: the xdist group "
                        f"{TINY_RUN_GROUP!r} is not in effect (pytest_collection_modifyitems)")
    try:
        run = run_tiny_workflow(tmp_path_factory.mktemp("e2e") / "run")
        shutil.copytree(run, shared / "tiny_run.building", symlinks=True)
        (shared / "tiny_run.building").rename(shared / "tiny_run.finished")
    except BaseException:
        (shared / "tiny_run.failed").touch()
        raise
    return run


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                      ) -> Path:
    """``tiny_run`` as it was when its DAG finished, whichever worker ran it: read it, or copy it
    to change it. Waits while another worker still runs the DAG."""
    shared = shared_dir(tmp_path_factory)
    finished, failed = shared / "tiny_run.finished", shared / "tiny_run.failed"
    if not (getattr(request.config.option, "loadgroup", False)
            and request.config.stash.get(TINY_RUN_SELECTED, False)):
        request.getfixturevalue("tiny_run")  # no other worker runs it: this one does
    deadline = time.monotonic() + FINISHED_TIMEOUT_S
    while not finished.is_dir():
        if failed.exists():
            pytest.fail("the tiny DAG (tiny_run) failed on another worker")
        if time.monotonic() > deadline:
            pytest.fail(f"the tiny DAG did not finish within {FINISHED_TIMEOUT_S} s")
        time.sleep(1)
    return finished


@pytest.fixture(scope="session")
def tiny_report(tiny_run: Path) -> Path:
    """The Snakemake report of ``tiny_run`` (``snakemake --report``), made once for the tests
    that read it (in the ``tiny_run`` group)."""
    from helpers.workflow import TINY_ARGS, snakemake
    snakemake(tiny_run, "--report", "report.html", *TINY_ARGS)
    return tiny_run / "report.html"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train, test) stores of a tiny learnable DFC2020-like task: 8 classes, 32 px, clean labels."""
    from cromss.constants import DFC_CLASSES
    from helpers.stores import write_store
    root = tmp_path_factory.mktemp("dfc")
    kwargs = {"seasons": 1, "size": 32, "classes": 8, "noise": 0.0, "names": DFC_CLASSES}
    return (write_store(root / "train.zarr", samples=4, **kwargs),
            write_store(root / "test.zarr", samples=3, seed=1, **kwargs))
