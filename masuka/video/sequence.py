"""An image sequence as an MP4: any images in order (a queue job's results, History entries, files) at a frame rate.

Frames are fitted to the first image's size (letterboxed, never stretched) with even sides of at least 2 pixels,
as H.264 wants; the file is written through imageio-ffmpeg (no system ffmpeg needed), checked, then moved into
place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput, NotFound, cannot_write
from masuka.picture_formats import read_heif
from masuka.store import row_id
from masuka.studio import Studio
from masuka.users import output_dir
from masuka.video.limits import MAX_FPS
from masuka.video.media import check_mp4

MAX_FRAMES = 10_000


def history_images(studio: Studio, user: str, admin: bool, ids: list[int]) -> list[Path]:
    """The image files of History entries (generation ids), in the order given; only the user's own."""
    paths = []
    for ref in ids:
        number = row_id(ref)
        row = studio.store.get("generations", number) if number else None
        if row is None or not (admin or row["owner"] == user) or not row["output_path"]:
            raise NotFound(f"There is no image g{ref} of yours in History.")
        paths.append(studio.config.absolute(row["output_path"]))
    return paths


def images_to_mp4(studio: Studio, owner: str, paths: list[Path], fps: float, dest: Path | None = None) -> Path:
    """Write ``paths`` as the frames of an MP4 at ``fps``; returns its path (default: the owner's videos folder).
    ``dest`` must be a new ``.mp4`` file: an existing file is never replaced."""
    import imageio_ffmpeg
    from PIL import Image, UnidentifiedImageError

    if not 0 < fps <= MAX_FPS:
        raise InvalidInput(f"The frame rate must be above 0 and at most {MAX_FPS} (got {fps:g}).")
    if not paths or len(paths) > MAX_FRAMES:
        raise InvalidInput(f"Give between 1 and {MAX_FRAMES} images.")
    if missing := next((Path(path) for path in paths if not Path(path).exists()), None):
        raise NotFound(f"The image {missing.name!r} does not exist.")
    if dest is None:
        folder = output_dir(studio.config, owner) / "videos"
        dest = folder / f"sequence-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}.mp4"
    if dest.is_dir():
        raise InvalidInput(f"{dest} is a folder: give the video a file name, such as {dest / 'sequence.mp4'}.")
    if dest.suffix.lower() != ".mp4":
        raise InvalidInput(f"{dest.name} does not end in .mp4: give the video a name such as {dest.stem}.mp4.")
    if dest.exists() or dest.is_symlink():
        raise _taken(dest)
    try:  # the destination is known writable before a frame is encoded; the partial file is new, never a user's
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".part.mp4", dir=dest.parent)
        os.close(handle)
    except OSError as error:
        raise cannot_write(error, dest) from error
    partial = Path(name)
    writer: Any = None  # imageio-ffmpeg's frame generator
    read_heif()
    try:
        for path in paths:
            try:
                with Image.open(path) as picture:
                    frame = picture.convert("RGB")
            except Image.DecompressionBombError:
                raise InvalidInput(f"{Path(path).name} is too large to be read as a frame.") from None
            except (OSError, UnidentifiedImageError):
                raise InvalidInput(f"{Path(path).name} is not an image MASUKA can read.") from None
            if writer is None:  # even sides, at least 2 pixels
                size = (max(2, frame.width // 2 * 2), max(2, frame.height // 2 * 2))
                writer = imageio_ffmpeg.write_frames(str(partial), size, fps=fps, macro_block_size=2,
                                                     ffmpeg_log_level="error")
                writer.send(None)
            writer.send(letterbox(frame, size).tobytes())
        writer.close()
        check_mp4(partial)
        _claim(partial, dest)
    finally:
        with contextlib.suppress(OSError):  # a failed clean-up never hides why the video was not made
            partial.unlink(missing_ok=True)
    return dest


def _claim(partial: Path, dest: Path) -> None:
    """Give ``partial`` the name ``dest``, never replacing a file that appeared there meanwhile (another run with
    the same name): a hard link fails when the name is taken; where links are not possible, the name is checked
    once more."""
    try:
        os.link(partial, dest)
    except FileExistsError:
        raise _taken(dest) from None
    except OSError:  # a file system without hard links
        if dest.exists() or dest.is_symlink():
            raise _taken(dest) from None
        os.replace(partial, dest)


def _taken(dest: Path) -> InvalidInput:
    return InvalidInput(f"{dest} already exists: give the video a new file name (nothing is replaced).")


def letterbox(frame: Any, size: tuple[int, int]) -> Any:
    """``frame`` scaled to fit ``size`` (each side at least 1 pixel, however thin it is) and centred on black."""
    from PIL import Image

    scale = min(size[0] / frame.width, size[1] / frame.height)
    fitted = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))),
                          Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", size)
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas
