"""DFC2020: the Copernicus-Bench mirror (md5-checked) or the IEEE DataPort release placed by hand.

Both end in the original layout the ingest reads (``shared/data.md``)::

    <out>/dfc2020/ROIs0000_validation/{s1,s2,dfc}_validation/ROIs0000_validation_{s1,s2,dfc}_0_p<N>.tif
    <out>/dfc2020/ROIs0000_test/{s1,s2,dfc}_0/ROIs0000_test_{s1,s2,dfc}_0_p<N>.tif

The mirror is re-split into ``dfc-{train,val,test}-new.csv``; ``mirror_splits`` says which of its
splits fill the original "validation" (the paper's training set) and "test" splits, and
``mirror_manifest.csv`` records which mirror file became which patch number.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from cromss.atomic import atomic_path
from cromss.errors import CromssError
from cromss.settings import Real
from cromss.sources.archives import unpack
from cromss.sources.huggingface import download_dir, fetch_repo_file

MIRROR = {
    "repo": "wangyi111/Copernicus-Bench",
    "revision": "9d252acd3aa0e3da3128e05c6f028647f0e48e5f",
    "file": "l2_dfc2020_s1s2/dfc2020.zip",
    "md5": "f10ba017dab6f38b7a6857b169ea924b",
    "mirror_splits": {"validation": ["val"], "test": ["train", "test"]},
}
MANUAL_ZIP = "DFC_Public_Dataset.zip"
DATAPORT_URL = "https://ieee-dataport.org/competitions/2020-ieee-grss-data-fusion-contest"
SPLITS = ("validation", "test")
KINDS = ("s1", "s2", "dfc")


def split_folder(split: str) -> str:
    """The per-kind folder suffix of an original split: ``validation`` or ``0`` (test)."""
    return "validation" if split == "validation" else "0"


def is_complete(dfc_dir: Path) -> bool:
    """Whether both original split folders are in place."""
    return all((dfc_dir / f"ROIs0000_{split}").is_dir() for split in SPLITS)


def missing_message(dfc_dir: Path) -> str:
    """Where to put which file when DFC2020 has to be placed by hand."""
    return (f"DFC2020 is not in {dfc_dir}. Download {MANUAL_ZIP} from IEEE DataPort ({DATAPORT_URL}, "
            f"free account needed) and put it at {dfc_dir / MANUAL_ZIP}, or unpack it so that "
            f"{dfc_dir / 'ROIs0000_validation'}/{{s1,s2,dfc}}_validation/ and "
            f"{dfc_dir / 'ROIs0000_test'}/{{s1,s2,dfc}}_0/ exist; then rerun `cromss data fetch dfc2020`. "
            "Alternatively set data.real.dfc2020.mode: mirror to download the Copernicus-Bench mirror "
            "(re-split, see docs/sources.md).")


def _member_under(split: str):  # noqa: ANN202 - a Rename
    """Keep the members below ``ROIs0000_<split>/`` (wherever that folder sits), relative to it."""
    marker = f"ROIs0000_{split}/"

    def rename(name: str) -> str | None:
        _, found, rest = name.partition(marker)
        return rest if found and rest else None
    return rename


def place_manual(dfc_dir: Path) -> Path:
    """Use the hand-placed IEEE DataPort release: the unpacked folders or the zip beside them."""
    if is_complete(dfc_dir):
        return dfc_dir
    archive = dfc_dir / MANUAL_ZIP
    if not archive.is_file():
        raise FileNotFoundError(missing_message(dfc_dir))
    for split in SPLITS:
        unpack(archive, dfc_dir / f"ROIs0000_{split}", rename=_member_under(split))
    return dfc_dir


def _mirror_root(unpacked: Path) -> Path:
    found = sorted(unpacked.rglob("dfc-val-new.csv"))
    if not found:
        raise CromssError(f"{unpacked}: no dfc-val-new.csv; not the Copernicus-Bench DFC2020 layout")
    return found[0].parent


def _split_names(root: Path, split: str) -> list[str]:
    path = root / f"dfc-{split}-new.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split list of the Copernicus-Bench mirror is missing")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def convert_mirror(root: Path, dfc_dir: Path, mirror_splits: dict[str, list[str]]) -> Path:
    """Copy the mirror's rasters into the original split layout and write ``mirror_manifest.csv``."""
    manifest = [("split", "patch", "mirror_split", "mirror_name")]
    for split in SPLITS:
        names = [(cb, name) for cb in mirror_splits[split] for name in _split_names(root, cb)]
        with atomic_path(dfc_dir / f"ROIs0000_{split}") as tmp:
            for patch, (cb_split, name) in enumerate(names, start=1):
                for kind in KINDS:
                    source = root / kind / name.replace("dfc", kind)
                    if not source.is_file():
                        raise FileNotFoundError(f"{source}: listed in dfc-{cb_split}-new.csv but missing")
                    folder = tmp / f"{kind}_{split_folder(split)}"
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, folder / f"ROIs0000_{split}_{kind}_0_p{patch}.tif")
                manifest.append((split, str(patch), cb_split, name))
    with atomic_path(dfc_dir / "mirror_manifest.csv") as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(manifest)
    return dfc_dir


def fetch_dfc2020(real: Real, out: Path, *, progress: bool = True) -> Path:
    """Place DFC2020 under ``out/dfc2020`` from the mirror (``mode: mirror``) or by hand (``manual``)."""
    section = {**MIRROR, **real.dfc2020}
    dfc_dir = out / "dfc2020"
    if section["mode"] == "manual" or is_complete(dfc_dir):
        return place_manual(dfc_dir)
    downloads = download_dir(real, "dfc2020")
    files = {"repo": section["repo"], "revision": section["revision"],
             "md5": {section["file"]: section["md5"]}}
    archive = fetch_repo_file(real, files, section["file"], downloads, progress=progress)
    unpacked = unpack(archive, downloads / "copernicus_bench")
    return convert_mirror(_mirror_root(unpacked), dfc_dir, section["mirror_splits"])
