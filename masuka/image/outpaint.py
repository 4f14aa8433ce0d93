"""Outpainting: the canvas grows by some pixels per side and the new area is repainted around the picture.

The padding is ``(left, right, top, bottom)``. The canvas is the picture plus the padding, rounded *up* to the
model's size multiple by adding the missing pixels to the right and bottom sides, so the picture keeps its place
at ``(left, top)`` and the result is never smaller than asked. The new area (with any mask of the picture's
own, placed over it) is the inpaint mask; it starts from the picture's colours smeared outwards, and the
result is pasted back so that every pixel of the original picture outside its own mask comes back identical.
"""

from __future__ import annotations

from PIL import Image, ImageChops, ImageFilter

from masuka.errors import InvalidInput

MAX_OUTPAINT = 1024
SIDES = ("left", "right", "top", "bottom")

Padding = tuple[int, int, int, int]


def parse_outpaint(text: str | None) -> Padding | None:
    """``"64,0,32,32"`` (left, right, top, bottom pixels) -> a checked padding; empty -> ``None``."""
    if text is None or not str(text).strip():
        return None
    parts = [part.strip() for part in str(text).split(",")]
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        raise InvalidInput(f"Outpaint takes four whole numbers of pixels, left,right,top,bottom (got {text!r}).")
    return check_padding(tuple(int(part) for part in parts))


def check_padding(padding: object) -> Padding:
    """``padding`` as four side widths of 0-:data:`MAX_OUTPAINT` pixels, at least one above 0."""
    if not isinstance(padding, (list, tuple)) or len(padding) != 4:
        raise InvalidInput(f"Outpaint takes four side widths, left, right, top, bottom (got {padding!r}).")
    for side, value in zip(SIDES, padding, strict=True):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OUTPAINT:
            raise InvalidInput(f"The outpaint {side} side must be 0-{MAX_OUTPAINT} pixels (got {value!r}).")
    if not any(padding):
        raise InvalidInput("Outpaint needs at least one side above 0 pixels.")
    left, right, top, bottom = padding
    return left, right, top, bottom


def rounded_padding(size: tuple[int, int], padding: Padding, multiple: int) -> Padding:
    """``padding`` with the right and bottom sides grown so the canvas is a multiple of ``multiple``."""
    left, right, top, bottom = padding
    width, height = size[0] + left + right, size[1] + top + bottom
    return left, right + -width % multiple, top, bottom + -height % multiple


def canvas_size(size: tuple[int, int], padding: Padding, multiple: int) -> tuple[int, int]:
    """The output size of outpainting a picture of ``size``."""
    left, right, top, bottom = rounded_padding(size, padding, multiple)
    return size[0] + left + right, size[1] + top + bottom


def outpaint_canvas(picture: Image.Image, mask: Image.Image | None, padding: Padding, multiple: int
                    ) -> tuple[Image.Image, Image.Image, tuple[int, int, int, int]]:
    """The grown canvas (the picture at ``(left, top)``), its repaint mask (the new area, plus ``mask`` of the
    picture's own placed over it) and the picture's box on the canvas."""
    left, right, top, bottom = rounded_padding(picture.size, padding, multiple)
    size = (picture.width + left + right, picture.height + top + bottom)
    box = (left, top, left + picture.width, top + picture.height)
    canvas = Image.new("RGB", size)
    canvas.paste(picture, box[:2])
    repaint = Image.new("L", size, 255)
    repaint.paste(mask if mask is not None else Image.new("L", picture.size, 0), box[:2])
    return canvas, repaint, box


def keep_original(blurred: Image.Image, own_mask: Image.Image | None, box: tuple[int, int, int, int],
                  blur: int) -> Image.Image:
    """The mask a result is pasted through: the blurred repaint mask, but over the picture only its own mask
    (feathered within itself) or nothing, so the blur never reaches into pixels that must come back identical."""
    composite = blurred.copy()
    inside = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0) if own_mask is None else feather(own_mask, blur)
    composite.paste(inside, box[:2])
    return composite


def feather(mask: Image.Image, blur: int) -> Image.Image:
    """``mask`` blurred by ``blur`` pixels within itself: a result pasted through it fades in toward the mask's
    edge but never past it, so every pixel the mask leaves black comes back as it was."""
    if not blur:
        return mask
    return ImageChops.multiply(mask.filter(ImageFilter.GaussianBlur(blur)), mask.point(lambda value: 255 * (value > 0)))
