"""The copies MASUKA keeps and sends of a picture it is given: as it is seen, with nothing else about it.

A picture kept with a job (a starting image, mask, reference, upscale source: its history row and Reuse read the
copy) or sent to a video provider is a plain copy (:func:`plain_copy`). A JPEG, PNG or WebP standing upright is
its own bytes less its metadata (a photo's EXIF: where and when it was taken, the camera; a PNG's text, such as a
prompt), so a photo keeps its quality and its size on disk; one turned by its EXIF orientation (a phone photo),
or in another format (an iPhone's HEIC, AVIF, TIFF, a camera's MPO), is an upright JPEG or PNG of it
(:func:`upright_copy`), as the Datasets tab keeps its processed copies. A video's first frame for a local model,
or for an API that takes one only at the video's size, is fitted to that size (:func:`fitted_frame`). Kept copies
go in the owner's ``inputs`` folder (:func:`keep_input`).
"""

from __future__ import annotations

import functools
import io
import math
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from masuka.datasets.ingest import LOSSY, PROCESSED_AS, to_rgb
from masuka.errors import InvalidInput
from masuka.image.tasks import open_picture, stands_upright
from masuka.picture_formats import read_heif, without_metadata
from masuka.studio import Studio
from masuka.users import output_dir

#: picture formats (Pillow's names) every browser shows and every provider takes: a plain copy of one standing
#: upright is its own bytes, less its metadata; a camera's MPO is not (its second picture has metadata of its own)
AS_IS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
#: the image modes a PNG file stores as they are
PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")
#: how the copies MASUKA writes of pictures it was given as pixels (a REST request's, a character's photos) are
#: written: zlib's fastest level, as a dataset's processed pictures are. Pillow's default (6) took three times as
#: long for files a sixth smaller: 2.8 s against 0.9 s for a 9-megapixel photo, time a request waited for.
KEPT_PNG: dict[str, Any] = {"format": "PNG", "compress_level": 1}


def picture_format(path: str | Path | BinaryIO) -> str | None:
    """The format of the picture at ``path`` as Pillow names it (``JPEG``, ``HEIF``...), from its header; None when
    it is no picture Pillow reads (:func:`open_picture` says why)."""
    read_heif()
    try:
        with Image.open(path) as header:
            return header.format
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None


def upright_copy(path: str | Path, fmt: str | None, what: str = "picture") -> tuple[str, bytes]:
    """The suffix and bytes of the picture at ``path`` (of format ``fmt``) as a file of no metadata, upright: a JPEG
    (quality 95, transparency on white) of a photo (JPEG, HEIC, AVIF), a PNG of a lossless picture (PNG, TIFF, BMP,
    GIF), as the Datasets tab keeps them. A file that is no readable picture is :class:`InvalidInput`, naming it
    as ``what``."""
    return _encoded(open_picture(path, what), fmt)


def _encoded(picture: Image.Image, fmt: str | None) -> tuple[str, bytes]:
    suffix, options = PROCESSED_AS[fmt in LOSSY]
    picture = to_rgb(picture) if options["format"] == "JPEG" else png_mode(picture)
    buffer = io.BytesIO()
    picture.save(buffer, **options)
    return suffix, buffer.getvalue()


def plain_copy(path: Path, what: str = "picture") -> tuple[str, bytes]:
    """The suffix and bytes of the plain copy of the picture at ``path`` (see the module), read whole once so that
    one MASUKA cannot read (cut short, too many pixels) is :class:`InvalidInput` naming it as ``what``. Made once
    per file as it is: a form's checks at each change and the job's copy ask for the same."""
    stat = path.stat()
    try:
        return _plain_copy(str(path), stat.st_mtime_ns, stat.st_size)
    except InvalidInput:  # made again, uncached, to be refused in the caller's words
        return _made(str(path), what)


@functools.lru_cache(maxsize=4)
def _plain_copy(path: str, mtime_ns: int, size: int) -> tuple[str, bytes]:
    return _made(path, "picture")


def plain_bytes(data: bytes, what: str = "picture") -> tuple[str, bytes]:
    """:func:`plain_copy` of a picture given as its bytes (a REST request's)."""
    return _made(io.BytesIO(data), what)


def _made(source: str | io.BytesIO, what: str) -> tuple[str, bytes]:
    """The plain copy of the picture at ``source`` (a file's path, or a stream over its bytes)."""
    fmt = picture_format(source)  # None for a PNG whose text is too large for Pillow: its PNG copy has none
    picture = open_picture(source, what)  # read whole, upright: one MASUKA cannot read is refused here
    if fmt in AS_IS:
        with Image.open(source) as header:
            if stands_upright(header):
                data = source.getvalue() if isinstance(source, io.BytesIO) else Path(source).read_bytes()
                return AS_IS[fmt], without_metadata(data, fmt)
    return _encoded(picture, fmt)


def smaller_copy(path: str | Path, pixels: int, what: str = "picture") -> tuple[str, bytes]:
    """The suffix and bytes of the picture at ``path`` upright, scaled to at most ``pixels`` (its shape kept), as a
    file of no metadata: a JPEG of a photo, a PNG of a lossless picture."""
    with open_picture(path, what) as picture:
        scale = min(1.0, math.sqrt(pixels / (picture.width * picture.height)))
        picture.thumbnail((max(1, int(picture.width * scale)), max(1, int(picture.height * scale))))
        return _encoded(picture, picture_format(path))


def fitted_frame(path: str | Path, size: tuple[int, int], what: str = "first frame") -> Image.Image:
    """The picture at ``path`` as a video's frame of ``size``: upright, transparency on white, cropped at the centre
    to ``size``'s shape and scaled to it."""
    with open_picture(path, what) as picture:
        return ImageOps.fit(to_rgb(picture), size)


def fitted_copy(path: Path, size: tuple[int, int]) -> tuple[str, bytes]:
    """The suffix and bytes of :func:`fitted_frame` as a file: a JPEG of a photo, a PNG of a lossless picture."""
    return _encoded(fitted_frame(path, size), picture_format(path))


def keep_inputs(studio: Studio, plan: Any) -> None:
    """Copy a planned request's init image, mask and references into the owner's ``inputs`` folder and point the
    plan at the copies, so its history row keeps them and Reuse can redo the job; files already there stay."""
    request = plan.request

    def keep(path: str | Path | None, kind: str) -> str | Path | None:
        return None if path is None else keep_input(studio, request.owner, path, kind)

    init = request.init
    if init is not None:
        init = replace(init, path=keep(init.path, "init-image"), mask=keep(init.mask, "mask"))
        plan.task.source = init
    plan.request = replace(request, init=init, references=[keep(path, "reference") for path in request.references])


def keep_input(studio: Studio, owner: str, path: str | Path, kind: str) -> Path:
    """The plain copy (:func:`plain_copy`) of an uploaded picture in the owner's ``inputs`` folder, so its history
    row outlives the upload; a picture already kept there (a queued job's copy, a reused entry's) is used as it is,
    not copied again."""
    if Path(path).resolve().parent == (output_dir(studio.config, owner) / "inputs").resolve():
        return Path(path)
    suffix, data = plain_copy(Path(path), kind.replace("-", " "))
    return write_input(studio, owner, kind, suffix, data)


def save_input(studio: Studio, owner: str, picture: Image.Image, kind: str) -> Path:
    """Keep a picture given as pixels (a REST request's, a guide made from one) in the owner's ``inputs`` folder, as
    a PNG (history rows point at it)."""
    buffer = io.BytesIO()
    png_mode(picture).save(buffer, **KEPT_PNG)
    return write_input(studio, owner, kind, ".png", buffer.getvalue())


def write_input(studio: Studio, owner: str, kind: str, suffix: str, data: bytes) -> Path:
    """Write ``data`` as a new file of the owner's ``inputs`` folder, named for its ``kind``."""
    target = output_dir(studio.config, owner) / "inputs"
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{kind}-{uuid.uuid4().hex[:12]}{suffix}"
    path.write_bytes(data)
    return path


def png_mode(picture: Image.Image) -> Image.Image:
    """``picture`` in a mode PNG keeps: a CMYK or YCbCr JPEG, a LAB TIFF as the colours they show."""
    return picture if picture.mode in PNG_MODES else picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
