"""A Hugging Face Hub look-alike on 127.0.0.1 with just the endpoints ``snapshot_download``, ``model_info``,
``hf_hub_download`` and ``whoami`` use."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from masuka.testing.http import FakeServer, Reply, Request, bearer

TOKEN = "hf_test_token_1234"


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    gated: bool = False
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    claimed_sizes: dict[str, int] = field(default_factory=dict)  # sizes model_info reports, if not the real ones
    fail_once: set[str] = field(default_factory=set)  # files whose first download breaks off halfway

    @classmethod
    def of_folder(cls, folder: Path, **extra: bytes) -> FakeRepo:
        """A repo holding every file under ``folder`` (a model saved by a test) and the ``extra`` files."""
        files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*")
                 if path.is_file()}
        return cls(files | extra)


class FakeHub:
    """Routes for a set of repos; ``downloads`` counts GETs from byte 0 per path, ``resumed`` the ranged ones."""

    def __init__(self, repos: dict[str, FakeRepo]):
        self.repos = repos
        self.downloads: dict[str, int] = {}
        self.resumed: list[tuple[str, int]] = []

    def __call__(self, request: Request) -> Reply:
        path = request.path
        if path == "/api/whoami-v2":
            return Reply(200, {"name": "tester", "type": "user"}) if bearer(request) == TOKEN else Reply(
                401, {"error": "Invalid credentials in Authorization header"})
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
        if match:
            return self._guarded(match[1], request, self._info)
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/[^/]+(?:/.*)?", path)
        if match:
            return self._guarded(match[1], request, self._tree)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
        if match:
            return self._guarded(match[1], request, lambda repo, req: self._file(repo, match[2], req))
        return Reply(404, {"error": "not found"}, {"X-Error-Code": "EntryNotFound"})

    def _guarded(self, repo_id: str, request: Request, handler) -> Reply:
        repo = self.repos.get(repo_id)
        if repo is None:
            return Reply(401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound",
                                                                  "X-Error-Message": "Repository not found"})
        if repo.gated and bearer(request) != TOKEN:
            return Reply(401, {"error": "gated"}, {"X-Error-Code": "GatedRepo",
                                                   "X-Error-Message": "Access to this model is restricted."})
        return handler(repo, request)

    def _info(self, repo: FakeRepo, request: Request) -> Reply:
        siblings = [{"rfilename": name, "size": repo.claimed_sizes.get(name, len(data))}
                    for name, data in repo.files.items()]
        return Reply(200, {"id": "repo", "sha": repo.sha, "siblings": siblings, "gated": repo.gated,
                           "private": False, "usedStorage": sum(s["size"] for s in siblings)})

    def _tree(self, repo: FakeRepo, request: Request) -> Reply:
        return Reply(200, [{"type": "file", "path": name, "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest()} for name, data in repo.files.items()])

    def _file(self, repo: FakeRepo, name: str, request: Request) -> Reply:
        data = repo.files.get(name)
        if data is None:
            return Reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": repo.sha,
                   "Content-Length": str(len(data)), "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return Reply(200, b"", headers)
        start = int(re.match(r"bytes=(\d+)-", request.headers.get("range", "bytes=0-"))[1])
        if start == 0:
            self.downloads[name] = self.downloads.get(name, 0) + 1
        else:
            self.resumed.append((name, start))
        if name in repo.fail_once:
            repo.fail_once.discard(name)
            half = data[: len(data) // 2]  # promise the whole file, send half, hang up
            return Reply(200, half, {**headers, "Content-Length": str(len(data)), "Connection": "close"})
        body = data[start:]
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        return Reply(206 if start else 200, body, headers)


def serve(repos: dict[str, FakeRepo]) -> tuple[FakeServer, FakeHub]:
    hub = FakeHub(repos)
    return FakeServer(hub), hub


@contextmanager
def hub_online(monkeypatch, repos: dict[str, FakeRepo], cache: Path | None = None) -> Iterator[FakeHub]:
    """Serve ``repos`` and point the Hub client at them, online (tests run with ``HF_HUB_OFFLINE=1``), with its
    cache in ``cache`` when given: for MASUKA (which reads the environment at call time) and for the libraries
    that read ``huggingface_hub.constants``."""
    from huggingface_hub import constants

    server, hub = serve(repos)
    with server:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        if cache is not None:
            monkeypatch.setenv("HF_HUB_CACHE", str(cache))
            monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        yield hub
