"""A real full disk (a small tmpfs): every command fails with one line naming the path, rc 2, and
leaves nothing partial. Skipped where mounting a tmpfs is not permitted (not root, containers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from cromss.cli import main
from cromss.weights import files
from helpers.predict import s2_scene
from helpers.settings import FINETUNE_SETTINGS as SETTINGS


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs: room for logs and small files, not for a model or a store."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_checkpoint_save_raises_the_os_error_naming_the_file(full_disk: Path) -> None:
    """torch's C++ writer raises ``RuntimeError: ... unexpected pos``; the caller sees ENOSPC."""
    with pytest.raises(OSError, match=rf"No space left on device: '{full_disk / 'c.pt'}'"):
        files.save({"w": torch.zeros(200_000)}, full_disk / "c.pt")
    assert leftovers(full_disk) == []


def test_disk_full_while_fine_tuning(stores, full_disk: Path, capsys) -> None:
    out = full_disk / "run"
    code = main(["finetune", "run", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
                 "--setting", "finetuned", "--seed", "0", "--train", str(stores[0]),
                 "--settings", json.dumps({**SETTINGS, "checkpoint_every": 1}), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"error: {out / 'checkpoint.pt'}: no space left on device" in err
    assert not [name for name in leftovers(full_disk) if "partial" in name or name.endswith(".pt")]


def test_disk_full_while_ingesting(tiny_raw: Path, full_disk: Path, capsys) -> None:
    out = full_disk / "nol.zarr"
    assert main(["data", "ingest", "nol", "--raw", str(tiny_raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cromss data ingest: error: {out}: no space left on device"]
    assert leftovers(full_disk) == []


def test_disk_full_while_mapping(tmp_path: Path, full_disk: Path, capsys) -> None:
    from cromss.constants import DW_CLASSES, input_normalisation
    from cromss.models import build_downstream

    s2_scene(tmp_path / "scene.tif", 600, 600)
    card = {"task": "dw", "encoder": "resnet18", "modality": "s2", "in_channels": 13,
            "s2_bands": 13, "normalisation": input_normalisation("s2", 13),
            "classes": list(DW_CLASSES), "num_classes": 9}
    model = tmp_path / "model.pt"
    files.save({"state_dict": build_downstream("dw", "resnet18", 13).state_dict(),
                     "card": card}, model)
    out = full_disk / "map.tif"
    assert main(["map", "predict", "--model", str(model), "--scene", str(tmp_path / "scene.tif"),
                 "--out", str(out), "--tile", "256", "--overlap", "32", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cromss map predict: error: {out}")
    assert err[0].endswith("no space left on device")
    assert leftovers(full_disk) == []
