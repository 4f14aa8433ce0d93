"""Picture files as formats and bytes: HEIC read through pi-heif, and the metadata a file carries taken out.

HEIC/HEIF is what iPhones save by default: Pillow reads it once pi-heif's opener is registered. pi-heif is
pillow-heif's decoder-only build (its wheels carry no encoder, so a permissive licence): MASUKA only reads these
files, and every copy it writes of one is a JPEG or PNG. Pillow reads AVIF by itself. Registering costs about 0.1 s,
so it happens where a picture someone gave is first opened, not at import.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import BinaryIO

#: the most pixels MASUKA decodes of one picture (64 MP: a 48-50 MP phone photo or a 61 MP camera's is read, as
#: any smaller one); Pillow itself refuses to open one of more than 179 MP
MAX_PIXELS = 64_000_000
#: the ``ftyp`` brands of HEIF still images and sequences (ISO/IEC 23008-12); AVIF's ``avif``/``avis`` are Pillow's
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
MISSING = "a HEIC/HEIF photo, which MASUKA reads through the pi-heif package: it is not installed (pip install pi-heif)"
#: the JPEG application segments a decoder needs: APP0 (JFIF), APP2 (the ICC colour profile), APP14 (Adobe's
#: colour transform, for CMYK)
JPEG_DECODING = frozenset({0xE0, 0xE2, 0xEE})
#: the flags of a WebP's extended header (``VP8X``) saying it holds an EXIF or an XMP chunk
WEBP_EXIF, WEBP_XMP = 0x08, 0x04


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


def png_without_text(png: bytes, also: tuple[bytes, ...] = ()) -> bytes:
    """A PNG file's bytes without its text chunks (``tEXt``, ``zTXt``, ``iTXt``) and the chunks named in ``also``:
    the pixels, as they were."""
    dropped = (b"tEXt", b"zTXt", b"iTXt", *also)
    kept, at = [png[:8]], 8
    while at + 8 <= len(png):
        end = at + 12 + int.from_bytes(png[at:at + 4], "big")
        if png[at + 4:at + 8] not in dropped:
            kept.append(png[at:end])
        at = end
    return b"".join(kept)


def jpeg_without_metadata(jpeg: bytes) -> bytes:
    """A JPEG file's bytes without its application segments other than :data:`JPEG_DECODING` (EXIF and XMP, where
    the photo was taken among them; IPTC; makers' notes) and its comments: the pixels, as they were."""
    kept, at = [jpeg[:2]], 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF:
        marker = jpeg[at + 1]
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
            continue
        if marker == 0xDA:  # start of scan: the compressed picture follows
            break
        end = at + 2 + int.from_bytes(jpeg[at + 2:at + 4], "big")
        if marker in JPEG_DECODING or not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            kept.append(jpeg[at:end])
        at = end
    return b"".join([*kept, jpeg[at:]])


def webp_without_metadata(webp: bytes) -> bytes:
    """A WebP file's bytes without its ``EXIF`` and ``XMP`` chunks, the extended header's flags for them cleared:
    the pixels (and the colour profile), as they were."""
    kept, at = [], 12
    while at + 8 <= len(webp):
        kind, size = webp[at:at + 4], int.from_bytes(webp[at + 4:at + 8], "little")
        chunk = webp[at:at + 8 + size + size % 2]  # a chunk of an odd size is padded to an even one
        if kind == b"VP8X":
            chunk = chunk[:8] + bytes([chunk[8] & ~(WEBP_EXIF | WEBP_XMP)]) + chunk[9:]
        if kind not in (b"EXIF", b"XMP "):
            kept.append(chunk)
        at += 8 + size + size % 2
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def without_metadata(data: bytes, fmt: str) -> bytes:
    """The bytes of a JPEG, WebP or PNG file without what it says besides its pixels (a photo's EXIF and XMP, with
    where and when it was taken and the camera; a PNG's text, such as a prompt; its eXIf chunk), losslessly; the
    colour profile is kept. ``fmt`` is the file's format as Pillow names it."""
    if fmt == "PNG":
        return png_without_text(data, also=(b"eXIf",))
    if fmt == "JPEG":
        return jpeg_without_metadata(data)
    return webp_without_metadata(data)
