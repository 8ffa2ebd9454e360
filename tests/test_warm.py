"""The warm start (cromss.warm): commands forked from one server behave as fresh processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_datasets import write_store

CROMSS = [sys.executable, "-m", "cromss.cli"]


def wait_for(condition, what: str, limit_s: float = 120.0) -> None:
    """Poll ``condition`` (a loaded machine makes the server's imports slow)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit_s} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    socket_path = folder / "socket"
    process = subprocess.Popen([sys.executable, "-m", "cromss.warm", str(socket_path)])
    wait_for(socket_path.exists, "the server's socket")
    yield process, socket_path
    process.terminate()
    process.wait(timeout=60)
    assert not socket_path.exists()  # removed on exit


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "s.zarr")


def cromss(*args: str, socket_path: Path | None, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CROMSS_WARM"}
    if socket_path is not None:
        env["CROMSS_WARM"] = str(socket_path)
    return subprocess.run([*CROMSS, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          **kwargs)


def test_a_forked_command_is_the_command_run_alone(server, store):
    _, socket_path = server
    args = ("data", "inspect", store.name, "--json")  # a path relative to the client's directory
    warm = cromss(*args, socket_path=socket_path, cwd=store.parent)
    alone = cromss(*args, socket_path=None, cwd=store.parent)
    assert warm.returncode == alone.returncode == 0, warm.stderr
    assert json.loads(warm.stdout) == json.loads(alone.stdout)
    assert "forked from the warm server" in warm.stderr
    assert "forked from" not in alone.stderr


def test_errors_and_exit_statuses_come_back(server, tmp_path):
    _, socket_path = server
    result = cromss("data", "inspect", "missing.zarr", socket_path=socket_path, cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.zarr: no such Zarr store" in result.stderr
    usage = cromss("data", "no-such-command", socket_path=socket_path, cwd=tmp_path)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_without_a_server_the_command_runs_alone(tmp_path, store):
    result = cromss("data", "inspect", str(store), "--json", socket_path=tmp_path / "gone",
                    cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["samples"] == 6
    assert "forked from" not in result.stderr


def children_of(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def long_command(out: Path) -> tuple[str, ...]:
    settings = json.dumps({"pretrain_locations": 4000, "pretrain_size": 96})
    return ("data", "synth", "--settings", settings, "--out", str(out))


def test_a_signal_to_the_client_reaches_the_command(server, tmp_path):
    process, socket_path = server
    env = {**os.environ, "CROMSS_WARM": str(socket_path)}
    client = subprocess.Popen([*CROMSS, *long_command(tmp_path / "raw")], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, text=True)
    wait_for(lambda: children_of(process.pid), "the forked command")
    (child,) = children_of(process.pid)
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=60)
    assert client.returncode == -signal.SIGTERM  # as the command itself died
    wait_for(lambda: child not in children_of(process.pid), "the command's end")
    assert not (tmp_path / "raw").exists()  # nothing half-written under the final name


def test_a_client_that_dies_takes_its_command_with_it(server, tmp_path):
    process, socket_path = server
    env = {**os.environ, "CROMSS_WARM": str(socket_path)}
    client = subprocess.Popen([*CROMSS, *long_command(tmp_path / "raw")], cwd=tmp_path, env=env,
                              stderr=subprocess.DEVNULL)
    wait_for(lambda: children_of(process.pid), "the forked command")
    (child,) = children_of(process.pid)
    client.kill()  # SIGKILL: nothing is forwarded, the server sees the connection close
    client.wait(timeout=60)
    wait_for(lambda: child not in children_of(process.pid), "the orphaned command's end")
    assert process.poll() is None  # the server serves on
