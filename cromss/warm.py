"""A warm start for the workflow's jobs: one process imports torch and the model stack once, and
every ``cromss`` command of a local Snakemake run is forked from it instead of importing them
again (about 3.5 s of CPU per job on 2 cores).

``python -m cromss.warm SOCKET`` serves on a Unix socket (the Snakefile starts it for local runs
and stops it at the end). A ``cromss`` command whose environment names the socket in
``CROMSS_WARM`` sends its arguments, working directory, environment and its stdin/stdout/stderr
to the server, which forks a child that runs the command exactly as a fresh process would (same
streams, directory, environment, exit status); the client forwards SIGINT/SIGTERM/SIGHUP to it
and exits with its status. Without a server, or when the connection fails, the command runs in
its own process as usual. The server kills a child whose client has gone, and exits when its
parent (Snakemake) does.

Only the standard library is imported here: the client must stay cheap.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
from pathlib import Path

ENV = "CROMSS_WARM"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals a client passes on to its command (the server blocks them across each fork)."""
PRELOAD = ("cromss.training.runs", "cromss.training.finetune", "cromss.training.pretrain",
           "cromss.predict.cli", "cromss.report.figures", "cromss.report.tables",
           "cromss.data.ingest", "cromss.data.inspect", "cromss.data.synthetic", "cromss.release")
"""Modules the server imports once (every command's heavy dependencies)."""
_STATUS = struct.Struct("!i")
_RESULT = struct.Struct("!idq")  # exit status, CPU seconds, peak resident KiB of the child
_MAX_REQUEST = 1 << 22


def _send(conn: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    message = struct.pack("!I", len(payload)) + payload
    if fds:
        socket.send_fds(conn, [message[:4]], fds)
        conn.sendall(message[4:])
    else:
        conn.sendall(message)


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, 4, 3)
    if len(header) < 4:
        header += _exactly(conn, 4 - len(header))
    (size,) = struct.unpack("!I", header)
    if size > _MAX_REQUEST:
        raise ValueError(f"request of {size} bytes")
    return _exactly(conn, size), list(fds)


def _exactly(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(left)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- client -----------------------------------------------------------------------------------

def forward(argv: list[str]) -> int | None:
    """Run ``cromss argv`` in a child of the warm server; None when there is no server."""
    path = os.environ.get(ENV)
    if not path or not Path(path).exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    child: list[int] = []  # the command's pid, once the server has forked it
    early: list[int] = []  # signals that came before it

    def forward_signal(number: int, _: object) -> None:
        if child:
            _kill(child[0], number)
        else:
            early.append(number)

    previous = {sig: signal.signal(sig, forward_signal) for sig in FORWARDED}
    try:
        conn.connect(path)
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        _send(conn, json.dumps(request).encode(), [0, 1, 2])
        (pid,) = _STATUS.unpack(_exactly(conn, _STATUS.size))
    except (OSError, ConnectionError):
        conn.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for number in early:  # nothing was forked: the signal is this process's own
            signal.raise_signal(number)
        return None
    child.append(pid)
    for number in early:
        _kill(pid, number)
    try:
        status, cpu, peak = _RESULT.unpack(_exactly(conn, _RESULT.size))
        print(f"cromss: ran as process {pid}, forked from the warm server ({ENV}={path}): "
              f"{cpu:.1f} s CPU, {peak / 1024:.0f} MiB peak memory", file=sys.stderr)
    except ConnectionError:
        status = 1  # the server went away: the child was killed with it
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        conn.close()
    if status < 0:  # killed by a signal: die the same way, as a fresh process would
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


def _kill(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


# -- server -----------------------------------------------------------------------------------

def _run_child(request: dict, fds: list[int], listener: socket.socket) -> None:
    """In the forked child: become the client's process, run the command, exit with its status."""
    listener.close()
    for sig in (*FORWARDED, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # one sent already acts now
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(ENV, None)  # commands started by this one run on their own
    sys.argv = ["cromss", *request["argv"]]
    status = 1
    try:
        from cromss.cli import main

        status = int(main(request["argv"]) or 0)
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - print it as a fresh process would, then exit
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def serve(path: Path) -> None:
    """Import :data:`PRELOAD`, then fork one child per request until the parent exits."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import gc

    gc.freeze()  # the children share the imported modules' pages instead of copying them
    parent = os.getppid()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    children: dict[int, tuple[socket.socket, int]] = {}  # pidfd -> (client, pid)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while running and os.getppid() == parent:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "accept":
                    _accept(listener, selector, children)
                elif key.data == "child":
                    _reap(key.fileobj, selector, children)
                else:  # the client's connection: readable only when it has gone
                    _client_gone(key, selector, children)
    finally:
        for client, pid in children.values():
            _kill(pid, signal.SIGTERM)
            client.close()
        listener.close()
        path.unlink(missing_ok=True)


def _accept(listener: socket.socket, selector: selectors.BaseSelector,
            children: dict[int, tuple[socket.socket, int]]) -> None:
    client, _ = listener.accept()
    try:
        payload, fds = _receive(client)
        request = json.loads(payload)
        if len(fds) != 3:
            raise ValueError(f"{len(fds)} streams")
    except (OSError, ValueError, ConnectionError):
        client.close()
        return
    # blocked across the fork: a signal sent to the child before it restores the default
    # handlers waits for them instead of reaching the server's
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    pid = os.fork()
    if pid == 0:
        _run_child(request, fds, listener)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    children[pidfd] = (client, pid)
    client.sendall(_STATUS.pack(pid))
    selector.register(pidfd, selectors.EVENT_READ, "child")
    selector.register(client, selectors.EVENT_READ, pidfd)


def _reap(pidfd: int, selector: selectors.BaseSelector,
          children: dict[int, tuple[socket.socket, int]]) -> None:
    client, pid = children.pop(pidfd)
    _, wait_status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)  # negative: the signal that killed it
    selector.unregister(pidfd)
    if client.fileno() in selector.get_map():
        selector.unregister(client)
    os.close(pidfd)
    try:
        client.sendall(_RESULT.pack(code, usage.ru_utime + usage.ru_stime, usage.ru_maxrss))
    except OSError:
        pass
    client.close()


def _client_gone(key: selectors.SelectorKey, selector: selectors.BaseSelector,
                 children: dict[int, tuple[socket.socket, int]]) -> None:
    selector.unregister(key.fileobj)
    if key.data in children:
        _kill(children[key.data][1], signal.SIGTERM)  # reaped when it exits


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
