"""For the tests that every use of a model holds it: a tiny model put into the Hugging Face cache as a downloaded
repo (loaded from there offline, as tests run), and deletion of it tried from inside the work that uses it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from masuka.errors import InvalidInput
from masuka.models.hub import repo_cache_folder
from masuka.models.manage import delete_model

SHA = "0123456789abcdef0123456789abcdef01234567"
REFUSED = "cannot be deleted yet: running work .* is using it"


def use_cache(monkeypatch, cache: Path) -> Path:
    """Make ``cache`` the Hugging Face cache, for MASUKA and for the libraries that read ``huggingface_hub``'s
    constants."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def cached_repo(monkeypatch, cache: Path, folder: Path, repo: str) -> str:
    """``folder`` (a model saved by a test) as the complete download of ``repo`` in ``cache`` (made the Hugging
    Face cache): blobs, a snapshot linking them and ``refs/main``. Returns ``repo``."""
    root = repo_cache_folder(repo, use_cache(monkeypatch, cache))
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / SHA / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(SHA)
    return repo


def deletion_tried_in(monkeypatch, studio, repo: str, owner: object, method: str = "hold") -> list[str]:
    """Wrap ``owner.method``, a context manager the work enters (a GPU slot: ``studio.gpu``) or a model cache's
    ``get(key, load)`` (``method="get"``: around ``load``), so that deleting ``repo`` is tried as the work enters it
    and again as it leaves; the returned list gets the message of each refusal (a deletion that goes through, or
    a refusal for another reason, is missing from it)."""
    original = getattr(owner, method)
    refusals: list[str] = []

    def try_to_delete() -> None:
        with pytest.raises(InvalidInput, match=REFUSED) as refused:
            delete_model(studio, repo)
        refusals.append(str(refused.value))

    @contextmanager
    def tried() -> Iterator[None]:
        try_to_delete()
        yield
        try_to_delete()

    @contextmanager
    def held(*args, **kwargs) -> Iterator[None]:
        with original(*args, **kwargs), tried():
            yield

    def got(key: object, load: Callable[[], object]) -> object:
        def loading() -> object:
            with tried():
                return load()

        return original(key, loading)

    monkeypatch.setattr(owner, method, got if method == "get" else held)
    return refusals
