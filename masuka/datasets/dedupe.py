"""Duplicate detection: the same file (SHA-256 of its bytes), near-duplicates (perceptual hash distance) and
mirrored copies (the mirrored image's perceptual hash near a kept one's: a flipped copy exported and added
back, which the dataset's own flip would double)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from imagehash import ImageHash


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash (``imagehash.phash``) as hex: resized or re-encoded copies stay close."""
    import imagehash

    return str(imagehash.phash(image))


@dataclass(frozen=True)
class Kept:
    """An image of the dataset a new one is checked against: its name as the person knows it, and its row id."""

    name: str
    image_id: int


@dataclass(frozen=True)
class Duplicate:
    """Why a new image repeats one already kept (``reason``), and which (``of``)."""

    reason: str
    of: Kept


class DuplicateIndex:
    """The images already in a dataset (and those accepted so far in this batch), by both hashes."""

    def __init__(self, near_distance: int):
        self.near_distance = near_distance
        self._by_sha: dict[str, Kept] = {}
        self._hashes: list[tuple[ImageHash, Kept]] = []

    def add(self, kept: Kept, sha256: str, phash: str) -> None:
        import imagehash

        self._by_sha.setdefault(sha256, kept)
        if phash:
            self._hashes.append((imagehash.hex_to_hash(phash), kept))

    def add_rows(self, rows: Iterable[dict]) -> None:
        """Add dataset image rows (their ``id``, ``source_name``, ``sha256`` and ``phash``)."""
        for row in rows:
            self.add(Kept(row["source_name"], row["id"]), row["sha256"], row["phash"])

    def duplicate(self, sha256: str, phash: str, mirrored: str = "") -> Duplicate | None:
        """The kept image that one with these hashes (``mirrored``: its mirror image's phash) repeats, and why; or
        None."""
        if sha256 in self._by_sha:
            kept = self._by_sha[sha256]
            return Duplicate(f"duplicate of {kept.name} (same file)", kept)
        for wanted, what in ((phash, "near-duplicate"), (mirrored, "mirror")):
            nearest = self._nearest(wanted)
            if nearest is not None and nearest[0] <= self.near_distance:
                return Duplicate(f"{what} of {nearest[1].name} (perceptual hash distance {nearest[0]})", nearest[1])
        return None

    def _nearest(self, phash: str) -> tuple[int, Kept] | None:
        """The distance to the kept image nearest ``phash`` and that image; None for no hash or none kept."""
        if not phash:
            return None
        import imagehash

        wanted = imagehash.hex_to_hash(phash)
        return min(((int(wanted - hashed), kept) for hashed, kept in self._hashes), default=None,
                   key=lambda x: x[0])
