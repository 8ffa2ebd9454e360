"""``cromss map predict``'s argument checks: a missing model fails in one line before torch loads
(that every ``--help`` shows the defaults is tests/test_cli.py's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# runs the CLI in a fresh interpreter, then reports whether torch had been imported by then
PROBE = ("import sys; from cromss.cli import main; rc = main(sys.argv[1:]); "
         "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_missing_model_fails_before_torch(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    done = run_cli("map", "predict", "--model", str(missing), "--scene", str(tmp_path),
                   "--out", str(tmp_path / "map.tif"))
    assert done.returncode == 2
    # the log header, then the one-line error (no traceback)
    assert done.stderr.strip().splitlines()[-1] == f"cromss map predict: error: {missing}: no such file"
    assert "Traceback" not in done.stderr
    assert "torch imported: False" in done.stdout


def test_missing_best_of_metrics_named(tmp_path: Path) -> None:
    present = tmp_path / "a.json"
    present.write_text("{}")
    done = run_cli("map", "predict", "--best-of", str(present), str(tmp_path / "b.json"),
                   "--scene", str(tmp_path), "--out", str(tmp_path / "map.tif"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(f"{tmp_path / 'b.json'}: no such file")
    assert "torch imported: False" in done.stdout

