"""Reading a character photo (a large one is brought down, not refused; transparency flattened onto white, as the
Datasets tab does), finding its face (OpenCV's bundled Haar cascade) and cutting it out with a margin."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from masuka.datasets.ingest import to_rgb
from masuka.datasets.preprocess import find_faces
from masuka.errors import InvalidInput
from masuka.image.tasks import eight_bit, open_picture
from masuka.picture_formats import read_heif

#: how much room around the detected face box the crop keeps, as a fraction of the box's side, on each side
MARGIN = 0.5
#: a photo longer than this (a 24 MP phone photo) is brought down to it: views and datasets need no more
MAX_PHOTO_SIDE = 4096


@dataclass
class FaceCrop:
    """One photo's chosen face: its box in the photo and the square crop around it."""

    box: tuple[int, int, int, int] | None  # (left, top, width, height); None when face checks were skipped
    crop: Image.Image
    faces: int
    photo: Image.Image  # the whole photo, upright and RGB (transparency flattened onto white)


def crop_box(size: tuple[int, int], box: tuple[int, int, int, int], margin: float = MARGIN
             ) -> tuple[int, int, int, int]:
    """A square around ``box`` grown by ``margin`` on each side, kept inside an image of ``size``."""
    left, top, width, height = box
    side = min(round(max(width, height) * (1 + 2 * margin)), *size)
    center_x, center_y = left + width / 2, top + height / 2
    x = min(max(round(center_x - side / 2), 0), size[0] - side)
    y = min(max(round(center_y - side / 2), 0), size[1] - side)
    return x, y, x + side, y + side


def face_crop(image: Image.Image, name: str, pick: int | None = None, skip_faces: bool = False) -> FaceCrop:
    """The face a character is made from: the only one, or face number ``pick`` (1 = biggest) when the photo
    shows several people (a pick means nothing in a photo of one face). A photo with no face, or several faces
    and no pick, is refused; ``skip_faces`` (a character that is not a person, or a style) takes the whole
    picture. ``image`` is RGB, as :func:`open_photo` reads it (transparency flattened onto white, so a fully
    transparent photo shows no face)."""
    if skip_faces:
        return FaceCrop(None, image, 0, image)
    faces = find_faces(image)
    if not faces:
        raise InvalidInput(f"No face was found in {name}: use a photo where the face is clearly visible and "
                           "facing the camera, or turn on 'not a person' for a character without a human face.")
    if pick is None and len(faces) > 1:
        raise InvalidInput(f"{name} shows {len(faces)} faces: choose which one is the character (face 1 is the "
                           f"biggest, up to {len(faces)}).")
    index = 1 if pick is None or len(faces) == 1 else int(pick)
    if not 1 <= index <= len(faces):
        raise InvalidInput(f"{name} shows {len(faces)} face(s): there is no face {index}.")
    box = faces[index - 1]
    return FaceCrop(box, image.crop(crop_box(image.size, box)), len(faces), image)


def open_photo(path: str | Path, what: str = "photo") -> Image.Image:
    """A picture file turned upright as its EXIF orientation says (phones store portraits sideways), at most
    MAX_PHOTO_SIDE pixels long (a larger one is brought down, a JPEG decoded at a reduced scale); refused with a
    clear message when it is not a readable picture, or has more pixels than Pillow reads (179 MP); in RGB, its
    transparency flattened onto white as the Datasets tab flattens it."""
    read_heif()
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError:  # more than twice Pillow's MAX_IMAGE_PIXELS: it will not read it
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        side = math.isqrt(limit)
        raise InvalidInput(f"The {what} {Path(path).name!r} is too large: at most {limit / 1e6:.0f} megapixels "
                           f"({side}x{side}, or 16000x11000 and the like) can be read; a photo up to that size is "
                           f"brought down to {MAX_PHOTO_SIDE} pixels long. Scale it down first.") from None
    except (OSError, SyntaxError, ValueError):
        return open_picture(path, what)  # which says what is wrong with the file
    with opened:
        if max(opened.size) <= MAX_PHOTO_SIDE:
            return to_rgb(open_picture(path, what))
        try:  # a large photo is read here, as open_picture would refuse it by its size: so is a broken one
            picture = eight_bit(opened) if opened.mode.startswith("I") else opened  # 16-bit: to 8 bits first
            picture.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE), Image.Resampling.LANCZOS)
            return to_rgb(ImageOps.exif_transpose(picture))
        except (OSError, SyntaxError, ValueError) as error:  # cut short ("image file is truncated"), corrupt
            reason = str(error).replace(str(path), Path(path).name)
            raise InvalidInput(f"The {what} {Path(path).name!r} is not a readable image ({reason}).") from None


def photo_face(path: str | Path, pick: int | None = None, skip_faces: bool = False) -> FaceCrop:
    """:func:`face_crop` of a photo file read by :func:`open_photo`."""
    return face_crop(open_photo(path), Path(path).name, pick, skip_faces)
