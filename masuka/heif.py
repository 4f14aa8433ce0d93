"""HEIC/HEIF photos, what iPhones save by default: Pillow reads them once pi-heif's opener is registered.

pi-heif is pillow-heif's decoder-only build (its wheels carry no encoder, so a permissive licence): MASUKA only
reads these files, and every copy it writes of one is a JPEG or PNG. Pillow reads AVIF by itself. Registering costs
about 0.1 s, so it happens where a picture someone gave is first opened, not at import.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import BinaryIO

#: the ``ftyp`` brands of HEIF still images and sequences (ISO/IEC 23008-12); AVIF's ``avif``/``avis`` are Pillow's
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
MISSING = "a HEIC/HEIF photo, which MASUKA reads through the pi-heif package: it is not installed (pip install pi-heif)"


@functools.cache
def read_heif() -> bool:
    """Let Pillow open HEIC/HEIF files (once per process); False when pi-heif is not installed."""
    try:
        from pi_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def missing_reader(source: str | Path | BinaryIO) -> str | None:
    """:data:`MISSING` when ``source`` is a HEIF file that cannot be read because pi-heif is absent, else None."""
    if read_heif():
        return None
    try:
        if isinstance(source, str | Path):
            with open(source, "rb") as file:
                head = file.read(12)
        else:
            position = source.tell()
            head = source.read(12)
            source.seek(position)
    except OSError:
        return None
    return MISSING if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS else None
