"""One image file → a validated RGB image, prepared and written into the dataset, or a refusal with a reason.

Checks run cheapest first. The format and the pixel count come from the header, so a decompression bomb
is refused before a single pixel is decoded; ``verify()`` then ``load()`` catch corrupt and truncated files.
JPEGs are decoded straight at a reduced scale when the target is smaller (``draft``), which is most of the
speed of a large ingest, and the pixel limit counts what is decoded. Pillow releases the GIL while decoding,
resizing and encoding, so files run in a thread pool on every core.
"""

from __future__ import annotations

import io
import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from masuka.datasets.dedupe import file_sha256, perceptual_hash
from masuka.datasets.preprocess import PrepOptions, prepare, sharpness, stored_size
from masuka.datasets.sources import Candidate
from masuka.errors import DiskFull, as_disk_full, reason
from masuka.picture_formats import MAX_PIXELS, missing_reader, png_without_text, read_heif

log = logging.getLogger(__name__)

#: formats accepted (Pillow's names); MPO is what cameras call a JPEG with a depth or preview frame, HEIF is an
#: iPhone's HEIC (read through :mod:`masuka.picture_formats`)
FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
           "TIFF": ".tif", "HEIF": ".heic", "AVIF": ".avif"}
LOSSY = {"JPEG", "MPO", "WEBP", "HEIF", "AVIF"}
#: processed copies: photos stay JPEG (quality 95, no chroma subsampling), lossless sources stay lossless
PROCESSED_AS: dict[bool, tuple[str, dict[str, Any]]] = {
    True: (".jpg", {"format": "JPEG", "quality": 95, "subsampling": 0}),
    False: (".png", {"format": "PNG", "compress_level": 1})}
ORIENTATION_SWAPS = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90°
#: what ends the name stem of a flipped copy (``<base>-flip.png`` beside ``<base>.png``)
FLIP_MARK = "-flip"
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError)
# Pillow warns above 89 MP; MASUKA refuses anything above MAX_PIXELS (lower) from the header, so the warning
# would only ever announce a refusal that is already listed.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class Refused(Exception):
    """This file is not kept; the message says why."""


@dataclass
class Prepared:
    """An image kept on disk (original, processed and maybe flipped copy), waiting for its duplicate check;
    ``mirrored`` is its mirror image's phash (with dedupe on, else empty)."""

    candidate: Candidate
    original: Path
    processed: Path
    flipped: Path | None
    size: tuple[int, int]
    original_size: tuple[int, int]
    sha256: str
    phash: str
    mirrored: str
    notes: list[str] = field(default_factory=list)

    def discard(self) -> None:
        for path in (self.original, self.processed, self.flipped):
            if path is not None:
                path.unlink(missing_ok=True)


def _open(path: Path, options: PrepOptions) -> tuple[Image.Image, tuple[int, int]]:
    """Open and check the header only (format, short side, the pixels that will be decoded); and the size stored.
    A JPEG larger than needed is set to decode at a reduced scale (``draft``): the pixel limit counts those, so a
    108 MP phone photo is taken where a 64 MP PNG is not."""
    read_heif()
    try:
        image = _pixels_of(path)
    except UnidentifiedImageError:
        raise Refused(missing_reader(path) or "not an image (or a format MASUKA cannot read)") from None
    except Image.DecompressionBombError as error:
        raise Refused(f"too large in pixels ({error}); refused before decoding") from None
    except DECODE_ERRORS as error:
        raise Refused(f"corrupt: {error}") from None
    width, height = image.size
    if image.format not in FORMATS:
        image.close()
        raise Refused(f"unsupported format {image.format}: use JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF")
    if min(width, height) < options.min_side:
        image.close()
        raise Refused(f"too small: {width}x{height} (the short side must be at least {options.min_side} px)")
    jpeg = image.format in ("JPEG", "MPO")
    if jpeg and options.size < min(width, height):
        image.draft("RGB", (options.size, options.size))
    if image.width * image.height > MAX_PIXELS:
        image.close()
        reduced = " (a JPEG counts at the reduced scale it is read at, if the image size is half its short side)"
        raise Refused(f"too large in pixels: {width}x{height} ({width * height / 1e6:.0f} MP, limit "
                      f"{MAX_PIXELS // 1_000_000} MP{reduced if jpeg else ''}); refused before decoding")
    return image, (width, height)


def _pixels_of(path: Path) -> Image.Image:
    """``path`` opened; a PNG whose text Pillow will not read (a field past 1 MB inflated: a tool's workflow) opened
    without its text, which a dataset does not keep anyway."""
    try:
        return Image.open(path)
    except ValueError as error:
        if "MAX_TEXT_CHUNK" not in str(error):
            raise
        return Image.open(io.BytesIO(png_without_text(path.read_bytes())))


def decode(path: Path, options: PrepOptions) -> tuple[Image.Image, tuple[int, int], str, list[str]]:
    """The first frame as upright RGB, its upright size before any reduction, its format, and notes."""
    probe, _ = _open(path, options)
    with probe:
        try:
            probe.verify()
        except DECODE_ERRORS as error:
            raise Refused(f"corrupt: {error}") from None
    image, (width, height) = _open(path, options)  # verify() leaves the file unusable: open it again to decode
    notes: list[str] = []
    fmt = image.format
    if fmt is None:  # _open refused it already; this says so to the type checker
        image.close()
        raise Refused("not an image (or a format MASUKA cannot read)")
    try:
        image.load()
    except DECODE_ERRORS as error:
        image.close()
        raise Refused(f"corrupt or truncated: {error}") from None
    try:
        if image.getexif().get(ImageOps.ExifTags.Base.Orientation) in ORIENTATION_SWAPS:
            width, height = height, width
        image = ImageOps.exif_transpose(image)
    except DECODE_ERRORS as error:
        notes.append(f"unreadable EXIF orientation ({error}): kept as stored")
    return to_rgb(image), (width, height), fmt, notes


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for training: 16-bit scaled down, CMYK through its ICC profile, transparency flattened on white."""
    import numpy as np

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(pixels * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image)
    if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            converted = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                                  ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:  # None only when converting in place
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            log.debug("CMYK profile unusable; plain conversion")
    return image.convert("RGB")


def _check_stored_size(decoded: tuple[int, int], original: tuple[int, int], options: PrepOptions) -> None:
    """Refuse an image whose short side, as stored, would fall under the dataset's minimum: a wide panorama or a
    photo a little longer than the target size, brought to it by its longest side. ``decoded`` is the upright size
    :func:`prepare` starts from, ``original`` the one the person knows."""
    (width, height), least = stored_size(decoded, options), options.least_stored_side
    if min(width, height) < least:
        raise Refused(f"too small once resized: {original[0]}x{original[1]} would be stored at {width}x{height}, "
                      f"under the {least} px least short side; crop it nearer to a square, or use a square crop, "
                      "a larger target size or a lower minimum")


def ingest_file(candidate: Candidate, options: PrepOptions, originals: Path, processed: Path, base: str
                ) -> Prepared:
    """Validate, convert and prepare one file, writing ``base``-named copies; raises :class:`Refused` (a full
    disk: :class:`DiskFull`)."""
    image, original_size, fmt, notes = decode(candidate.path, options)
    _check_stored_size(image.size, original_size, options)
    if options.blur_threshold > 0:
        score = sharpness(image)
        if score < options.blur_threshold:
            raise Refused(f"too blurry (sharpness {score:.1f}, threshold {options.blur_threshold:g})")
    image, crop_notes = prepare(image, options)
    suffix, save_options = PROCESSED_AS[fmt in LOSSY]
    mirror = ImageOps.mirror(image) if options.dedupe or options.flip else None
    result = Prepared(candidate, originals / f"{base}{FORMATS[fmt]}", processed / f"{base}{suffix}", None,
                      image.size, original_size, file_sha256(candidate.path), perceptual_hash(image),
                      perceptual_hash(mirror) if options.dedupe and mirror is not None else "", notes + crop_notes)
    try:
        shutil.copyfile(candidate.path, result.original)
        image.save(result.processed, **save_options)
        if options.flip and mirror is not None:
            result.flipped = processed / f"{base}{FLIP_MARK}{suffix}"
            mirror.save(result.flipped, **save_options)
    except OSError as error:
        result.discard()
        raise as_disk_full(error) or Refused(f"could not be saved: {reason(error)}") from None
    return result


def originals_first(candidates: list[Candidate]) -> list[Candidate]:
    """``candidates`` with the flipped copies MASUKA names (``<stem>-flip.<ext>`` beside a ``<stem>.*`` of the same
    folder: an export of a flipped dataset) after the others, so the mirror check keeps the originals and refuses
    the copies; the order is kept otherwise."""
    stems = {_stem(candidate) for candidate in candidates}

    def flipped(candidate: Candidate) -> bool:
        stem = _stem(candidate)
        return stem.endswith(FLIP_MARK) and stem.removesuffix(FLIP_MARK) in stems

    return sorted(candidates, key=flipped)


def _stem(candidate: Candidate) -> str:
    """The name without its extension, folders kept."""
    name = PurePosixPath(candidate.name)
    return str(name.with_name(name.stem)) if name.name else candidate.name


def try_ingest(candidate: Candidate, options: PrepOptions, originals: Path, processed: Path, base: str
               ) -> Prepared | str:
    """:func:`ingest_file`, with any failure turned into its reason: one bad file never stops the others (a full
    disk does: :class:`DiskFull` is raised)."""
    try:
        return ingest_file(candidate, options, originals, processed, base)
    except Refused as refusal:
        return str(refusal)
    except DiskFull:
        raise
    except Exception as error:  # a file that trips a library bug is refused, never fatal for the batch
        log.exception("could not ingest %s", candidate.name)
        return f"could not be processed ({type(error).__name__}: {error})"
