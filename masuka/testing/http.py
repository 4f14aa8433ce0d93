"""A small HTTP server on 127.0.0.1 for stand-ins: routes are plain functions, every request is recorded.

``FakeServer(route)`` calls ``route(request) -> Reply`` for each request. A :class:`Reply` may be cut short
(``cut=True``: the full ``Content-Length`` is promised, half the body sent, the connection closed), the way a
download breaks in the wild.
"""

from __future__ import annotations

import abc
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names, ``host`` included
    body: bytes = b""

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict | list | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # promise the whole body, send half of it, hang up

    def encoded(self) -> bytes:
        if isinstance(self.body, (dict, list)):
            self.headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode()
        return self.body.encode() if isinstance(self.body, str) else self.body


Route = Callable[[Request], Reply]


class FakeServer:
    """``FakeServer(route)``: ``.url``, ``.requests``; a context manager, or :meth:`start` and :meth:`close`."""

    def __init__(self, route: Route):
        self.route = route
        self.requests: list[Request] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                fake.requests.append(request)
                reply = fake.route(request)
                body = reply.encoded()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if not any(key.lower() == "content-length" for key in reply.headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    self.wfile.write(body[: len(body) // 2] if reply.cut else body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: the exchange ends
                    self.close_connection = True
                if reply.cut:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def start(self) -> "FakeServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Fault:
    """An answer injected ``times`` times for one route of a stand-in."""

    route: str
    status: int
    headers: dict = field(default_factory=dict)
    body: dict | None = None
    times: int = 1


class StandIn(abc.ABC):
    """Base of the API stand-ins: a :class:`FakeServer` answering through ``_serve``, scripted jobs (finished
    after ``polls_to_finish`` polls once ``release`` is set, or failed with ``fail_jobs``), injected faults."""

    polls_to_finish = 2

    def __init__(self, kind: str):
        self.kind = kind
        self.fail_jobs = False
        self.creates = 0
        self.cancels = 0
        self.release = threading.Event()
        self.release.set()
        self.faults: list[Fault] = []
        self.jobs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = FakeServer(self._serve).start()
        self.requests = self.server.requests
        self.base = self.server.url
        self.other_origin = f"http://localhost:{self.server.port}"  # another host (a CDN): must get no key

    @abc.abstractmethod
    def _serve(self, request: Request) -> Reply:
        """The reply of this stand-in's API to one request."""

    def fault(self, route: str, status: int, headers: dict | None = None, body: dict | None = None,
              times: int = 1) -> None:
        self.faults.append(Fault(route, status, headers or {}, body, times))

    def take_fault(self, route: str) -> Fault | None:
        """The next injected answer for ``route``, used up once."""
        for fault in self.faults:
            if fault.route == route and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def requests_to(self, fragment: str) -> list[Request]:
        return [r for r in self.requests if fragment in r.path]

    def close(self) -> None:
        self.server.close()


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value.split(" ", 1)[1] if " " in value else None
