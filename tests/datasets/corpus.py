"""Generated test files: good photos in every accepted format and mode, and every kind of bad file."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def picture(seed: int, size: tuple[int, int] = (640, 480), mode: str = "RGB") -> Image.Image:
    """A distinct picture per seed: a smooth random colour field with shapes (distinct perceptual hashes)."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = (int(v) for v in (rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(20, 120)))
        draw.rectangle((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image.convert(mode)


def photo(path: Path, seed: int, size: tuple[int, int] = (640, 480), **save) -> Path:
    picture(seed, size).save(path, **save)
    return path


def exif_rotated(path: Path, seed: int, size: tuple[int, int] = (640, 480)) -> Path:
    """A landscape-stored JPEG whose EXIF says "rotate 90° clockwise" (orientation 6): upright it is portrait."""
    image = picture(seed, size)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes(), quality=90)
    return path


def cmyk(path: Path, seed: int) -> Path:
    picture(seed).convert("CMYK").save(path, quality=92)
    return path


def palette_with_transparency(path: Path, seed: int) -> Path:
    """A palette PNG whose left half is transparent (shown white once flattened)."""
    image = picture(seed).convert("RGBA")
    pixels = np.asarray(image).copy()
    pixels[:, : image.width // 2, 3] = 0
    Image.fromarray(pixels, "RGBA").quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(path)
    return path


def rgba(path: Path, seed: int) -> Path:
    image = picture(seed).convert("RGBA")
    pixels = np.asarray(image).copy()
    pixels[:60, :60, 3] = 0  # a transparent corner
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def grey16(path: Path, level: int = 32768, size: tuple[int, int] = (400, 300)) -> Path:
    """A 16-bit greyscale PNG: a ramp around ``level`` (of 65535) with texture."""
    rng = np.random.default_rng(level)
    base = np.full((size[1], size[0]), level, dtype=np.int32)
    base += (np.linspace(-8000, 8000, size[0]).astype(np.int32)[None, :]
             + rng.integers(-3000, 3000, (size[1] // 20 + 1, size[0] // 20 + 1)).repeat(20, 0).repeat(20, 1)
             [: size[1], : size[0]])
    Image.fromarray(np.clip(base, 0, 65535).astype(np.uint16)).save(path)
    return path


def animated_gif(path: Path, seed: int) -> Path:
    """Two frames: the first is the picture, the second plain blue."""
    first = picture(seed).convert("P", palette=Image.Palette.ADAPTIVE)
    second = Image.new("RGB", first.size, (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    first.save(path, save_all=True, append_images=[second], duration=100)
    return path


def truncated(path: Path, seed: int) -> Path:
    data = io.BytesIO()
    picture(seed).save(data, format="JPEG", quality=90)
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    return path


def corrupt_png(path: Path, seed: int) -> Path:
    """A PNG whose image data has flipped bytes (its chunk checksum no longer matches)."""
    data = io.BytesIO()
    picture(seed).save(data, format="PNG")
    raw = bytearray(data.getvalue())
    start = raw.index(b"IDAT") + 20
    raw[start:start + 16] = bytes(b ^ 0xFF for b in raw[start:start + 16])
    path.write_bytes(bytes(raw))
    return path


def not_an_image(path: Path) -> Path:
    path.write_text("this is a shopping list, not a photo\n")
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A few hundred bytes of PNG whose header claims ``width`` × ``height`` pixels (no real pixel data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def near_duplicate(source: Path, path: Path) -> Path:
    """The same picture, slightly smaller, re-encoded and a touch blurred: a different file, the same shot."""
    with Image.open(source) as image:
        copy = image.convert("RGB").resize((image.width * 9 // 10, image.height * 9 // 10))
    copy.filter(ImageFilter.GaussianBlur(0.6)).save(path, quality=75)
    return path


def face_photo(path: Path, size: tuple[int, int] = (900, 600), center: tuple[int, int] = (690, 300)) -> Path:
    """A light background with a drawn frontal face (dark eyes and brows, nose shade, mouth) at ``center``."""
    image = Image.new("L", size, 200)
    draw = ImageDraw.Draw(image)
    cx, cy = center
    draw.ellipse((cx - 90, cy - 120, cx + 90, cy + 120), fill=170)
    for side in (-1, 1):
        ex = cx + side * 40
        draw.rectangle((ex - 30, cy - 62, ex + 30, cy - 52), fill=40)
        draw.ellipse((ex - 20, cy - 40, ex + 20, cy - 20), fill=30)
    draw.polygon([(cx, cy - 20), (cx - 14, cy + 30), (cx + 14, cy + 30)], fill=140)
    draw.ellipse((cx - 40, cy + 50, cx + 40, cy + 72), fill=60)
    image.filter(ImageFilter.GaussianBlur(3)).convert("RGB").save(path, quality=92)
    return path


def unsafe_zip(path: Path, good: Path) -> Path:
    """A zip with one good image and caption, plus '../', absolute and symlink entries."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(good, "photos/good.jpg")
        archive.writestr("photos/good.txt", "a good caption from the zip")
        archive.writestr("../escape.jpg", good.read_bytes())
        archive.writestr("photos/../../escape2.jpg", good.read_bytes())
        archive.writestr("/tmp/absolute.jpg", good.read_bytes())
        link = zipfile.ZipInfo("photos/link.jpg")
        link.create_system = 3
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    return path
