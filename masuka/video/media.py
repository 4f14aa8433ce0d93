"""MP4 files: check a download is a playable video, take a clip's last frame, join clips, add a soundtrack (ffmpeg from
imageio-ffmpeg, so nothing needs a system install)."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path
from typing import Any

from masuka.errors import MasukaError

FFMPEG_TIMEOUT_S = 600


class BrokenVideo(MasukaError):
    """A file is not a complete, playable MP4."""


class NotMP4(BrokenVideo):
    """A file that is no MP4 at all (its first box is not ``ftyp``): a web page, a picture, text, ...; ``looks`` says
    what it looks like ("an HTML page")."""

    def __init__(self, path: Path, looks: str):
        super().__init__(f"{path.name} is not an MP4 video: it looks like {looks}.")
        self.looks = looks


#: how the first bytes of a file that is no MP4 tell what it is (:func:`looks_like`)
SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
              (b"\x1aE\xdf\xa3", "a WebM or Matroska video"), (b"%PDF", "a PDF document"),
              (b"PK\x03\x04", "a zip archive"))


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def check_mp4(path: Path) -> None:
    """Raise :class:`BrokenVideo` unless ``path`` is a whole MP4 whose first frame decodes.

    The top-level boxes must start with ``ftyp`` (any other start is :class:`NotMP4`: MP4s from the providers, ffmpeg
    and diffusers all begin with it), include ``moov`` and ``mdat`` and fit the file exactly (a truncated download
    fails here); then ffmpeg decodes the first frame.
    """
    size = path.stat().st_size if path.is_file() else 0
    if size < 8:
        raise BrokenVideo(f"{path.name} is empty or missing.")
    boxes = []
    with open(path, "rb") as handle:
        head = handle.read(512)
        if head[4:8] != b"ftyp":
            raise NotMP4(path, looks_like(head))
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            length, kind = struct.unpack(">I4s", handle.read(8))
            if length == 1:
                length = struct.unpack(">Q", handle.read(8))[0]
            elif length == 0:
                length = size - offset
            if length < 8 or offset + length > size:
                raise BrokenVideo(f"{path.name} is cut short (a box runs past the end of the file).")
            boxes.append(kind)
            offset += length
    if missing := [kind.decode() for kind in (b"moov", b"mdat") if kind not in boxes]:
        raise BrokenVideo(f"{path.name} is an incomplete MP4: it has no {' or '.join(missing)} box (boxes: "
                          f"{[b.decode('latin-1') for b in boxes][:6]}).")
    result = _run([ffmpeg(), "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "null", "-"])
    if result.returncode != 0:
        raise BrokenVideo(f"{path.name} does not decode: {result.stderr.strip()[-300:]}")


def looks_like(head: bytes) -> str:
    """What a file that is no MP4 looks like, from its first bytes: "an HTML page", "a PNG image", "text", ..."""
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "a QuickTime movie without a file type box"
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"AVI "):
        return "a WebP image" if head[8:12] == b"WEBP" else "an AVI video"
    for signature, kind in SIGNATURES:
        if head.startswith(signature):
            return kind
    text = head.decode("utf-8", "replace")
    if "\x00" in text or "\ufffd" in text[:-3]:  # the last character may be cut where the bytes read end
        return "another kind of file"
    text = text.lstrip("\ufeff \t\r\n").lower()
    if text.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in text:
        return "an HTML page"
    if text.startswith("<"):
        return "an XML document"
    if text.startswith(("{", "[")):
        return "JSON text"
    return "text"


def last_frame(video: Path, dest: Path) -> Path:
    """Write the last frame of ``video`` as a PNG (the first frame of the next clip in a chain)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = _run([ffmpeg(), "-v", "error", "-y", "-sseof", "-1", "-i", str(video), "-update", "1",
                   "-frames:v", "1000", str(dest)])
    if result.returncode != 0 or not dest.is_file():
        raise BrokenVideo(f"Could not take the last frame of {video.name}: {result.stderr.strip()[-300:]}")
    return dest


def concat(clips: list[Path], dest: Path) -> Path:
    """Join clips of the same encoding into one MP4 (stream copy), written atomically and checked."""
    listing = dest.with_suffix(".txt")
    listing.write_text("".join(f"file {_quoted(c.resolve().as_posix())}\n" for c in clips), encoding="utf-8")
    partial = dest.with_name(dest.name + ".part.mp4")
    try:
        result = _run([ffmpeg(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                       "-c", "copy", "-movflags", "+faststart", str(partial)])
        if result.returncode != 0:
            raise BrokenVideo(f"Could not join the clips: {result.stderr.strip()[-300:]}")
        check_mp4(partial)
        os.replace(partial, dest)
    finally:
        listing.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return dest


def _quoted(path: str) -> str:
    """``path`` quoted for an ffmpeg concat list: in single quotes, each ``'`` written as ``'\\''``."""
    return "'" + path.replace("'", "'\\''") + "'"


def add_audio(video: Path, samples: Any, rate: int, dest: Path) -> Path:
    """Write ``video`` with a soundtrack (``samples``: float waveform, channels x samples, in [-1, 1]) as AAC."""
    import numpy as np

    wave = np.ascontiguousarray(np.clip(np.asarray(samples, dtype=np.float32), -1, 1).T)
    result = subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", str(video), "-f", "f32le", "-ar", str(rate),
                             "-ac", str(wave.shape[1]), "-i", "-", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                             "-c:a", "aac", "-movflags", "+faststart", str(dest)],
                            input=wave.tobytes(), capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise BrokenVideo(f"Could not add the soundtrack: {result.stderr.decode(errors='replace').strip()[-300:]}")
    return dest


def has_audio(video: Path) -> bool:
    """Whether ``video`` carries an audio stream."""
    result = _run([ffmpeg(), "-v", "error", "-i", str(video), "-map", "0:a:0", "-frames:a", "1", "-f", "null", "-"])
    return result.returncode == 0


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
