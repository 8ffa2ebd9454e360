"""A loopback HTTP server for the source tests: serves a folder with Range support and faults.

``LoopbackServer(root)`` binds 127.0.0.1 on a free port in a background thread. Faults are
injected per URL path: ``drop_after[path] = n`` closes the connection after ``n`` body bytes (once),
``fail_first[path] = k`` answers 503 to the first ``k`` requests, ``replace_after_drop[path] =
data`` changes the file once its connection was dropped, ``no_length`` (paths) sends bodies without
``Content-Length``, delimited by closing the connection, ``no_ranges`` (paths) ignores ``Range``,
``redirects[path] = other`` answers 302 to ``other``. Files carry an ``ETag`` (their SHA-256), and
``If-Range`` is honoured: a Range with a stale validator gets the whole new file (200);
``no_validators`` (paths) sends no ``ETag`` and answers every ``Range`` from the current file.
``post_routes[path]`` maps a POST path to a function of the JSON (or form-encoded) body returning a
JSON-able answer (a tiny STAC ``/search``, an OpenID token endpoint); with ``bearer`` set, GETs
below ``/protected/`` need ``Authorization: Bearer <bearer>`` (401 otherwise). Every request is
logged as ``(method, path, Range header)`` in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class LoopbackServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.drop_after: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}
        self.replace_after_drop: dict[str, bytes] = {}
        self.no_length: set[str] = set()
        self.no_ranges: set[str] = set()
        self.no_validators: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.post_routes: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.bearer: str | None = None
        self.requests: list[tuple[str, str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _path(self) -> str:
                return unquote(urlsplit(self.path).path)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_POST(self) -> None:
                path = self._path()
                server.requests.append(("POST", path, None))
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if "form-urlencoded" in self.headers.get("Content-Type", ""):
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    body = json.loads(raw or b"{}")
                if path not in server.post_routes:
                    self._send(404, b"not found", {})
                    return
                answer = json.dumps(server.post_routes[path](body)).encode()
                self._send(200, answer, {"Content-Type": "application/json"})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self._path()
                ranged = self.headers.get("Range")
                server.requests.append((self.command, path, ranged))
                if server.bearer and path.startswith("/protected/") and (
                        self.headers.get("Authorization") != f"Bearer {server.bearer}"):
                    self._send(401, b"unauthorized", {})
                    return
                if path in server.redirects:
                    self._send(302, b"", {"Location": server.redirects[path]})
                    return
                if server.fail_first.get(path, 0) > 0:
                    server.fail_first[path] -= 1
                    self._send(503, b"busy", {})
                    return
                file = (server.root / path.lstrip("/")).resolve()
                if not file.is_file() or server.root.resolve() not in file.parents:
                    self._send(404, b"not found", {})
                    return
                data = file.read_bytes()
                kind = "application/json" if file.suffix == ".json" else "application/octet-stream"
                etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
                match = RANGE.match(ranged or "")
                if_range = self.headers.get("If-Range")
                if path in server.no_ranges or (if_range is not None and if_range != etag):
                    match = None
                if path in server.no_validators:
                    etag, match = None, RANGE.match(ranged or "")
                if match is None:
                    status, start, body = 200, 0, data
                    headers = {"Content-Type": kind, "Accept-Ranges": "bytes", "ETag": etag}
                else:
                    start = int(match[1])
                    end = int(match[2]) if match[2] else len(data) - 1
                    if start >= len(data):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    status, body = 206, data[start:end + 1]
                    headers = {"Content-Type": kind, "ETag": etag,
                               "Content-Range": f"bytes {start}-{start + len(body) - 1}/{len(data)}"}
                headers = {k: v for k, v in headers.items() if v is not None}
                cut = server.drop_after.pop(path, None)
                if (cut is None and path not in server.no_length) or self.command == "HEAD":
                    self._send(status, body, headers)
                    return
                self.send_response(status)
                if path not in server.no_length:
                    headers["Content-Length"] = str(len(body))
                for key, value in {**headers, "Connection": "close"}.items():
                    self.send_header(key, value)
                self.end_headers()
                if cut is not None and path in server.replace_after_drop:
                    file.write_bytes(server.replace_after_drop.pop(path))  # before the next try
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

        return Handler
