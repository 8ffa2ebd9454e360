"""One version everywhere a user or a tool reads it: the package, pyproject, CITATION.cff and the
newest release of the changelog."""

from __future__ import annotations

import re
import tomllib

import yaml

import cromss
from helpers import ROOT


def test_the_version_is_the_same_everywhere() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)$",
                          (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases, "CHANGELOG.md names no release"
    assert cromss.__version__ == pyproject == str(cff["version"]) == releases[0][0]
    assert str(cff["date-released"]) == releases[0][1]
