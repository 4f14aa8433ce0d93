"""Image-to-image and inpainting: the text-to-image pipeline's weights, another diffusers task pipeline.

A request with an :class:`InitImage` starts from that picture instead of noise (``strength`` says how far it may
move: 0 keeps it, 1 ignores it); with a mask, only the white part is repainted. The task pipeline is the class the
architecture's profile names for the task, built around the cached pipeline's modules
(:func:`~masuka.image.memory.sharing_weights`), so it shares them (weights, LoRAs, memory plan) and costs no
extra memory; a task the profile names no class for is refused before the model loads (a pipeline of no known
architecture is left to diffusers' AutoPipeline). The pipeline sees the mask blurred by the mask blur; the result
is composited over the original through the mask feathered within itself, so every pixel outside it comes back
exactly as it was; at the picture's default size (its own, brought down to about the model's own pixels and
rounded to its multiple) the result is scaled back to the picture's own size and composited over it there, so the
output has the picture's exact size.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError

from masuka.datasets.ingest import ORIENTATION_SWAPS, to_rgb
from masuka.errors import InvalidInput
from masuka.image.limits import MAX_SIDE, MIN_SIDE
from masuka.image.memory import sharing_weights
from masuka.image.metadata import to_number
from masuka.image.outpaint import Padding, canvas_size, check_padding, feather, keep_original, outpaint_canvas
from masuka.picture_formats import MAX_PIXELS, missing_reader, png_without_text, read_heif
from masuka.studio import Studio

TASK_WORDS = {"img2img": "image-to-image", "inpaint": "inpainting or outpainting"}
MAX_MASK_BLUR = 64
#: the least strength a starting picture takes (a step of the form's slider): at it, the steps raised so that
#: one runs (:func:`task_steps`) stay within the steps a request may have
MIN_STRENGTH = 0.01
TOO_LARGE = f"at most {MAX_PIXELS // 1_000_000} megapixels (8000x8000, or 9600x6600 and the like): scale it down first."
MAX_UPSCALE = 8
MAX_SIDE_PADDING = 256
MASK_SHAPE_TOLERANCE = 0.02  # how far a mask's width:height may be from its picture's (rounding of a rescale)
RESAMPLERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
#: A1111's inpaint options in its words (its form's and its infotext's), the default first: Mask mode, Masked
#: content (two of A1111's four: its "latent noise" and "latent nothing" are read as "original") and Inpaint area
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENTS = ("original", "fill")
INPAINT_AREAS = ("Whole picture", "Only masked")
ONLY_MASKED_PADDING = 32  # A1111's "Only masked padding, pixels" as its form opens


@dataclass
class InitImage:
    """The picture a generation starts from, and the mask of what to repaint (white = repaint)."""

    path: str | Path
    strength: float = 0.75
    mask: str | Path | None = None
    mask_blur: int = 4
    #: repaint what the mask leaves black (A1111's "Inpaint not masked", ``inpainting_mask_invert``): the mask is
    #: kept as given and inverted where it is read (rows of older versions recorded ``mask_inverted`` with the mask
    #: kept inverted: Reuse repaints that mask as it is)
    invert_mask: bool = False
    only_masked_padding: int | None = None  # repaint a crop around the mask (this many px of margin) at full size
    fill_masked: bool = False  # start the masked part from the surrounding colours instead of what is there
    outpaint: Padding | None = None  # grow the canvas by (left, right, top, bottom) pixels and fill the new area


@dataclass
class TaskInput:
    """An :class:`InitImage` checked, read and sized for the plan."""

    task: str  # "img2img" or "inpaint"
    image: Image.Image  # the original at the output size: what an inpainted result is pasted onto
    mask: Image.Image | None
    strength: float
    source: InitImage
    start: Image.Image | None = None  # what the pipeline starts from, when not ``image`` (a filled mask)
    composite: Image.Image | None = None  # what the result is pasted through, when not ``mask``
    original: Image.Image | None = None  # the picture at its own size, when the result is scaled back onto it
    #: the part of ``original`` that ``image`` is (left, top, right, bottom): Only masked at the picture's own size
    box: tuple[int, int, int, int] | None = None


def open_picture(path: str | Path | BinaryIO, what: str) -> Image.Image:
    """A picture file (any Pillow reads, HEIC too) read whole, as it is seen: turned upright by its EXIF orientation
    (a phone photo), and a 16-bit one brought to 8 bits (a PNG whose text fields are too large for Pillow read
    without them); or :class:`InvalidInput` saying why not."""
    try:
        try:
            return _read_picture(path, what)
        except ValueError as error:
            if "MAX_TEXT_CHUNK" not in str(error):
                raise
            if isinstance(path, str | Path):
                data = Path(path).read_bytes()
            else:
                path.seek(0)
                data = path.read()
            return _read_picture(io.BytesIO(png_without_text(data)), what)
    except FileNotFoundError:
        raise InvalidInput(f"The {what} {Path(str(path)).name!r} does not exist.") from None
    except Image.DecompressionBombError:  # so large that Pillow will not even read its size
        raise InvalidInput(f"The {what} is too large; {TOO_LARGE}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if (missing := missing_reader(path)) is not None:
            raise InvalidInput(f"The {what} is {missing}.") from None
        # Pillow names the file it could not read: a path by its name only, an upload (a stream's repr) not at all
        reason = (str(error).replace(str(path), Path(str(path)).name) if isinstance(path, str | Path)
                  else str(error).replace(f" {path!r}", ""))
        raise InvalidInput(f"The {what} is not a readable image ({reason}).") from None


def _read_picture(path: str | Path | BinaryIO, what: str) -> Image.Image:
    read_heif()
    with Image.open(path) as picture:
        if picture.width * picture.height > MAX_PIXELS:
            raise InvalidInput(f"The {what} is too large ({picture.width}x{picture.height}); {TOO_LARGE}")
        picture.load()
        return eight_bit(ImageOps.exif_transpose(picture))


def upright_size(path: str | Path) -> tuple[int, int] | None:
    """The width and height the picture at ``path`` is seen at (a phone's portrait is stored sideways), from its
    header; None when it is no picture Pillow reads (:func:`open_picture` says why)."""
    read_heif()
    try:
        with Image.open(path) as header:
            width, height = header.size
            if header.getexif().get(ImageOps.ExifTags.Base.Orientation, 1) in ORIENTATION_SWAPS:
                return height, width
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None
    return width, height


def stands_upright(header: Image.Image) -> bool:
    """Whether an opened picture is seen as it is stored: no EXIF orientation turns it."""
    return header.getexif().get(ImageOps.ExifTags.Base.Orientation, 1) == 1


def seen_size(path: str | Path, what: str) -> tuple[int, int]:
    """:func:`upright_size`, or :class:`InvalidInput` saying why the picture cannot be read (naming it ``what``)."""
    return upright_size(path) or open_picture(path, what).size


def eight_bit(picture: Image.Image) -> Image.Image:
    """A 16-bit greyscale picture (``I;16``, or ``I`` holding 16-bit values) scaled to 8 bits: Pillow's own
    conversion would clip it to white."""
    high = picture.getextrema()[1] if picture.mode == "I" else 0  # one band: (lowest, highest)
    if picture.mode.startswith("I;16") or (isinstance(high, int | float) and high > 255):
        return picture.convert("I").point(lambda value: value / 257).convert("L")
    return picture


def init_size(init: InitImage, multiple: int, low: int, high: int, pixels: int | None = None) -> tuple[int, int]:
    """The init image's size, brought down to about ``pixels`` (the model's own size), into ``low..high`` and down
    to a multiple: the default output size; when outpainting, the size the grown canvas runs at
    (:func:`outpaint_size`)."""
    size = seen_size(init.path, "init image")
    if init.outpaint is not None:
        return outpaint_size(size, check_padding(init.outpaint), multiple, low, high, pixels)
    return picture_size(size, multiple, low, high, "init image", pixels)


def outpaint_size(size: tuple[int, int], padding: Padding, multiple: int, low: int = MIN_SIDE,
                  high: int = MAX_SIDE, pixels: int | None = None) -> tuple[int, int]:
    """The size outpainting a picture of ``size`` by ``padding`` runs at: the canvas it makes
    (:func:`canvas_size`) where that has at most ``pixels`` (the model's own size) and no side above ``high``;
    else the canvas's shape brought down to about ``pixels`` and within ``high`` (a phone photo's: the result is
    scaled back onto the canvas, the photo kept as it is). :class:`InvalidInput` in the picture's and padding's
    terms (the caller gave no size: a bare "Width must be…" would not say where the number came from) for a canvas
    with a side below ``low``, of more than 64 megapixels, or too long and thin for the sides an image may have."""
    width, height = canvas_size(size, padding, multiple)
    made = f"The picture ({size[0]}x{size[1]}) plus the outpaint padding makes a {width}x{height} canvas"
    if min(width, height) < low:
        raise InvalidInput(f"{made}, below the limit: each side of an image must be between {low} and {high} "
                           "pixels; pad more or scale the picture up first.")
    if width * height > MAX_PIXELS:
        raise InvalidInput(f"{made}, more than {MAX_PIXELS // 1_000_000} megapixels: pad less or scale the picture "
                           "down first.")
    if max(width, height) <= high and (pixels is None or width * height <= pixels):
        return width, height
    try:
        return picture_size((width, height), multiple, low, high, pixels=pixels)
    except InvalidInput:
        raise InvalidInput(f"{made}, too long and thin to run at: each side of an image must be between {low} and "
                           f"{high} pixels, and this shape does not fit them; pad less.") from None


def picture_size(size: tuple[int, int], multiple: int, low: int, high: int, what: str = "picture",
                 pixels: int | None = None) -> tuple[int, int]:
    """A picture's size scaled (both sides by one factor, so its shape is kept) down to about ``pixels`` where it
    has more (a model's own size: a 12 MP photo runs at about a megapixel, the size the model was trained at), into
    ``low..high`` and rounded down to a multiple (``low`` and ``high`` are multiples); :class:`InvalidInput` naming
    the ``what`` for a shape no size within the limits has."""
    width, height = size
    if pixels is not None and width * height > pixels:
        factor = math.sqrt(pixels / (width * height))
        width, height = max(1, int(width * factor)), max(1, int(height * factor))
    longest, shortest = max(width, height), min(width, height)
    if longest > high:  # whole-number arithmetic: the longest side lands on ``high`` exactly
        width, height = width * high // longest, height * high // longest
    elif shortest < low:
        width, height = -(-width * low // shortest), -(-height * low // shortest)
    if not (low <= min(width, height) and max(width, height) <= high):
        raise InvalidInput(f"The {what} is {size[0]}x{size[1]}: its shape does not fit the {low}-{high} pixels a "
                           f"side an image may have without distorting it; crop it closer to square first.")
    return width // multiple * multiple, height // multiple * multiple


def prepare(init: InitImage, width: int, height: int, fast: bool, multiple: int = 1,
            own_size: bool = False) -> TaskInput:
    """Check ``init`` and read it at the output size (resized, as A1111 does without a resize mode), or onto
    the grown canvas when outpainting (``multiple``: the model's size multiple); with ``own_size`` (the output
    size is the picture's default one) an inpainted result is pasted back onto the picture at its own size, an
    outpainted one scaled back onto the grown canvas at its own size."""
    if fast:
        raise InvalidInput("Fast is for text-to-image only: turn it off to start from an image.")
    strength = float(init.strength)
    if not MIN_STRENGTH <= strength <= 1:
        raise InvalidInput(f"The strength (denoising strength) must be at least {MIN_STRENGTH:g} and at most 1 "
                           f"(got {strength:g}).")
    if init.only_masked_padding is not None and not 0 <= int(init.only_masked_padding) <= MAX_SIDE_PADDING:
        raise InvalidInput(f"The padding around the mask must be 0-{MAX_SIDE_PADDING} pixels "
                           f"(got {init.only_masked_padding}).")
    if not 0 <= int(init.mask_blur) <= MAX_MASK_BLUR:
        raise InvalidInput(f"The mask blur must be between 0 and {MAX_MASK_BLUR} pixels (got {init.mask_blur}).")
    if init.outpaint is not None:
        return _prepare_outpaint(init, width, height, strength, multiple, own_size)
    size = (width, height)
    picture = to_rgb(open_picture(init.path, "init image"))  # transparency on white, as A1111 flattens it
    if init.mask is None:
        return TaskInput("img2img", picture.resize(size, Image.Resampling.LANCZOS), None, strength, init)
    if not own_size or picture.size == size:  # the result is pasted over the picture at the run size
        own_mask, box = None, None
        mask = _painted(init, _read_mask(init, picture.size, size))
    else:  # ... or scaled back onto it at its own size (only the part around the mask: Only masked)
        own_mask = _painted(init, _read_mask(init, picture.size, picture.size))
        box = None if init.only_masked_padding is None else _masked_part(init, own_mask, size)
        mask = resize_mask(own_mask if box is None else own_mask.crop(box), size)
    image = (picture if box is None else picture.crop(box)).resize(size, Image.Resampling.LANCZOS)
    start = fill_masked(image, mask) if init.fill_masked else None
    blur = int(init.mask_blur)
    blurred = mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask
    if own_mask is None:
        return TaskInput("inpaint", image, blurred, strength, init, start, feather(mask, blur))
    return TaskInput("inpaint", image, blurred, strength, init, start, feather(own_mask, blur), picture, box)


def _painted(init: InitImage, mask: Image.Image) -> Image.Image:
    """``mask``, refused when it repaints nothing."""
    if mask.getextrema()[1] == 0:
        raise InvalidInput("The mask is all white and Inpaint not masked repaints its black part: paint black where "
                           "the image should change." if init.invert_mask else
                           "The mask is all black: paint white where the image should change.")
    return mask


def _masked_part(init: InitImage, own_mask: Image.Image, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Only masked at the picture's own size: the part of the picture around the mask (its padding scaled to the
    picture, then grown to the run's shape, as diffusers crops) that is cut from the full picture and repainted at
    the run size, so a small part of a large photo is repainted at the model's resolution, not at the whole
    photo's scaled down."""
    from diffusers.image_processor import VaeImageProcessor

    padding = round(int(init.only_masked_padding or 0) * own_mask.width / size[0])
    return VaeImageProcessor.get_crop_region(own_mask, *size, pad=padding)


def _read_mask(init: InitImage, picture: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """The mask at ``size`` (inverted first where ``init`` says so); one of another shape than the ``picture`` (a
    size, not only a scale, apart) is refused rather than stretched over it."""
    if init.mask is None:
        raise ValueError("_read_mask needs an init image with a mask")
    mask = open_picture(init.mask, "mask")
    if abs(mask.width * picture[1] - mask.height * picture[0]) > MASK_SHAPE_TOLERANCE * mask.height * picture[0]:
        raise InvalidInput(f"The mask is {mask.width}x{mask.height} but the picture is {picture[0]}x{picture[1]}: "
                           "give a mask of the picture's shape (any size of it).")
    mask = mask.convert("L")
    return resize_mask(ImageOps.invert(mask) if init.invert_mask else mask, size)


def resize_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A greyscale ``mask`` at ``size``, covering the same part of the picture with no overshoot (Lanczos's ringing
    left faint non-zero pixels beside the painted part, and a detached ring, which
    :func:`~masuka.image.outpaint.feather` repaints: any value above 0 is masked). Shrunk, a pixel is masked where
    any of it is painted, at the strongest value painted there (a stroke thinner than a pixel at the picture's size
    stays); grown, where at least half of it is (bilinear, cut at the middle)."""
    if mask.size == size:
        return mask
    painted = mask.point(lambda value: 255 * (value > 0))
    if size[0] < mask.width:
        reach = 2 * math.ceil(max(mask.width / size[0], mask.height / size[1]) / 2) + 1  # odd, over a footprint
        strongest = mask.filter(ImageFilter.MaxFilter(reach)).resize(size, Image.Resampling.NEAREST)
        touched = painted.resize(size, Image.Resampling.BOX).point(lambda value: 255 * (value > 0))
        return ImageChops.multiply(strongest, touched)
    covered = painted.resize(size, Image.Resampling.BILINEAR).point(lambda value: 255 * (value >= 128))
    return ImageChops.multiply(mask.resize(size, Image.Resampling.BILINEAR), covered)


def _prepare_outpaint(init: InitImage, width: int, height: int, strength: float, multiple: int,
                      own_size: bool) -> TaskInput:
    """The picture on its grown canvas; the new area (and the picture's own mask) is repainted. A canvas run at its
    default size, smaller than itself (:func:`outpaint_size`), is run at that size and the result scaled back
    onto it, the picture as it is."""
    padding = check_padding(init.outpaint)
    picture = to_rgb(open_picture(init.path, "init image"))  # transparency on white, as A1111 flattens it
    full = canvas_size(picture.size, padding, multiple)
    if (width, height) != full and not own_size:
        outpaint_size(picture.size, padding, multiple)  # a canvas no size fits is refused in its own terms first
        raise InvalidInput(f"Outpainting makes a {full[0]}x{full[1]} image (the picture plus the padding, rounded "
                           f"up to a multiple of {multiple}); leave the width and height to it (got {width}x{height}).")
    own_mask = None if init.mask is None else _read_mask(init, picture.size, picture.size)
    canvas, repaint, box = outpaint_canvas(picture, own_mask, padding, multiple)
    blur = int(init.mask_blur)
    blurred = repaint.filter(ImageFilter.GaussianBlur(blur)) if blur else repaint
    composite = keep_original(blurred, own_mask, box, blur)
    if (width, height) == full:
        # the picture's colours smeared over the new area: what the pipeline starts from, and what the result
        # fades into beside the picture with a mask blur (the empty canvas's black drew a dark line along the seam)
        return TaskInput("inpaint", fill_masked(canvas, repaint), blurred, strength, init, None, composite)
    run_canvas, run_repaint = _scaled_canvas(picture, own_mask, box, full, (width, height))
    start = fill_masked(run_canvas, run_repaint)
    smeared = start.resize(full, Image.Resampling.LANCZOS)
    smeared.paste(picture, box[:2])
    run_mask = run_repaint.filter(ImageFilter.GaussianBlur(blur)) if blur else run_repaint
    return TaskInput("inpaint", start, run_mask, strength, init, None, composite, smeared)


def _scaled_canvas(picture: Image.Image, own_mask: Image.Image | None, box: tuple[int, int, int, int],
                   full: tuple[int, int], size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """The grown canvas and its repaint mask made at ``size`` rather than ``full``: the picture scaled onto an empty
    canvas of that size (a scaled canvas would blend the picture's edge with the empty area)."""
    scale = size[0] / full[0], size[1] / full[1]
    left, top = round(box[0] * scale[0]), round(box[1] * scale[1])
    inner = (min(size[0] - left, max(1, round(picture.width * scale[0]))),
             min(size[1] - top, max(1, round(picture.height * scale[1]))))
    small = picture.resize(inner, Image.Resampling.LANCZOS)
    mask = None if own_mask is None else resize_mask(own_mask, inner)
    padding = (left, size[0] - inner[0] - left, top, size[1] - inner[1] - top)
    canvas, repaint, _box = outpaint_canvas(small, mask, padding, 1)
    return canvas, repaint


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The masked part painted with ever less blurred copies of the rest, as A1111's ``inpainting_fill`` 0."""
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask))
    filled = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return Image.composite(filled.convert("RGB"), image, mask)


def fill_only(pipeline_class: str) -> bool:
    """Whether ``pipeline_class`` is a fill model's (FLUX.1 Fill): it inpaints and outpaints, and nothing else."""
    from masuka.models import architectures

    profile = architectures.for_pipeline(pipeline_class)
    return profile is not None and profile.fill_only(pipeline_class)


def check_fill(pipeline_class: str, model: str, task: TaskInput | None) -> None:
    """Refuse anything but inpainting and outpainting for a fill model."""
    if fill_only(pipeline_class) and (task is None or task.task != "inpaint"):
        raise InvalidInput(f"{model} is an inpaint model: give it a starting image and a mask to repaint (or "
                           "outpaint), or choose another model for this task.")


def check_task(pipeline_class: str, model: str, task: TaskInput | None, face_detail: bool = False) -> None:
    """Refuse what a model loaded as ``pipeline_class`` cannot do: anything but inpainting for a fill model; text
    to image for a folder saved as a task's class (the SDXL refiner); a task, or face detail's inpainting, its
    architecture has no pipeline for; "only masked" inpainting where the inpaint pipeline cannot crop."""
    check_fill(pipeline_class, model, task)
    check_starting_image(pipeline_class, model, task)
    fill = fill_only(pipeline_class)
    for name in [] if fill else ([task.task] if task else []) + (["inpaint"] if face_detail else []):
        task_class(pipeline_class, name, model)
    if task is not None and task.mask is not None and task.source.only_masked_padding is not None:
        check_crop(pipeline_class if fill else task_class(pipeline_class, "inpaint", model), model)


def check_starting_image(pipeline_class: str, model: str, task: TaskInput | None) -> None:
    """Refuse text-to-image for a model saved as an image-to-image or inpaint class: its pipeline needs a picture."""
    from masuka.models import architectures

    profile = architectures.for_pipeline(pipeline_class)
    needs = profile.task_only(pipeline_class) if profile else None
    if needs and task is None:
        mask = " and a mask of what to repaint" if needs == "inpaint" else ""
        raise InvalidInput(f"{model} is an {TASK_WORDS[needs]} model ({pipeline_class}): give it a starting "
                           f"image{mask}, or choose another model to make an image from text alone.")


def check_crop(pipeline_class: str | None, model: str) -> None:
    """Refuse "only masked" inpainting (a crop around the mask repainted at full size) on a pipeline whose call has
    no ``padding_mask_crop`` (Z-Image, FLUX.1 Fill); one of no known architecture is left to diffusers."""
    if pipeline_class is None:
        return
    import inspect

    import diffusers

    if "padding_mask_crop" not in inspect.signature(getattr(diffusers, pipeline_class).__call__).parameters:
        raise InvalidInput(f"{model} cannot repaint only the masked area: its inpaint pipeline ({pipeline_class}) "
                           "does not crop around the mask. Repaint the whole picture (inpaint_full_res off), or "
                           "choose another model.")


def task_class(pipeline_class: str, task: str, model: str = "") -> str | None:
    """The diffusers class that runs ``task`` on a model loaded as ``pipeline_class`` (``None`` for a class of no
    known architecture), or :class:`InvalidInput` saying what the model can do instead."""
    from masuka.models import architectures

    profile = architectures.for_pipeline(pipeline_class)
    if profile is None:
        return None
    name = profile.task_pipeline(pipeline_class, task)
    if name is not None:
        return name
    instead = []
    if task == "img2img" and profile.task_pipeline(pipeline_class, "inpaint"):
        instead.append("paint a mask over what to change (Inpaint/Outpaint)")
    if pipeline_class in profile.edit_pipelines:
        instead.append("give the picture as a reference and say what to change (Edit; --image on the command line)")
    raise InvalidInput(f"{model or pipeline_class} ({profile.label}) has no {TASK_WORDS[task]} pipeline in diffusers: "
                       f"{' or '.join(instead) or 'choose another model for this task'}.")


def task_pipeline(pipe: Any, task: TaskInput | None) -> Any:
    """The pipeline that runs ``task`` (``pipe`` itself for text-to-image, and for a fill model's inpainting),
    made once per loaded pipeline."""
    if task is None or fill_only(type(pipe).__name__):
        return pipe
    made = pipe.__dict__.setdefault("masuka_tasks", {})
    if task.task not in made:
        name = task_class(type(pipe).__name__, task.task) or auto_task_class(type(pipe).__name__, task.task)
        made[task.task] = sharing_weights(pipe, name)
    return made[task.task]


def auto_task_class(pipeline_class: str, task: str) -> str:
    """The class diffusers' AutoPipeline maps ``pipeline_class`` (of no known architecture) to for ``task``, looked
    up as its ``from_pipe`` does but without building a pipeline; :class:`InvalidInput` when it maps none."""
    from diffusers.pipelines import auto_pipeline

    mapping = auto_pipeline.AUTO_INPAINT_PIPELINES_MAPPING if task == "inpaint" else \
        auto_pipeline.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING
    try:
        return auto_pipeline._get_task_class(mapping, pipeline_class).__name__
    except ValueError as error:
        raise InvalidInput(f"This model has no {TASK_WORDS[task]} pipeline in diffusers ({error}).") from None


def task_steps(steps: int, strength: float) -> int:
    """``steps``, raised where a repaint at ``strength`` would run none: diffusers runs about ``steps × strength``
    of them and fails with fewer than one."""
    return max(steps, math.ceil(1 / strength))


def task_kwargs(task: TaskInput | None) -> dict:
    """The pipeline call's extra arguments for ``task``."""
    if task is None:
        return {}
    kwargs: dict[str, Any] = {"image": task.start or task.image, "strength": task.strength}
    if task.mask is not None:
        kwargs["mask_image"] = task.mask
        if task.source.only_masked_padding is not None and task.box is None:  # diffusers crops, repaints at
            kwargs["padding_mask_crop"] = int(task.source.only_masked_padding)  # full size, pastes back
    return kwargs


def finish(image: Image.Image, task: TaskInput | None) -> Image.Image:
    """An inpainted image pasted over the original through the mask (scaled back to the picture's own size first,
    or the part repainted put back in its place, when the task says so); anything else as it is."""
    if task is None or task.mask is None:
        return image
    through = task.mask if task.composite is None else task.composite
    if task.original is None:
        return Image.composite(image.convert("RGB"), task.image, through)
    if task.box is None:
        scaled = image.convert("RGB").resize(task.original.size, Image.Resampling.LANCZOS)
    else:  # the repainted part back in its place
        left, top, right, bottom = task.box
        scaled = task.original.copy()
        scaled.paste(image.convert("RGB").resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
    return Image.composite(scaled, task.original, through)


def task_record(studio: Studio, task: TaskInput | None) -> dict:
    """What a history row and the ``parameters`` text keep about the task."""
    if task is None:
        return {}
    record: dict[str, Any] = {"task": task.task, "strength": task.strength,
                              "init_image": studio.config.relative(Path(task.source.path).resolve())}
    if task.mask is not None:
        record["mask_blur"] = int(task.source.mask_blur)
        record.update(_inpaint_options(task.source))
    if task.source.mask is not None:
        record["mask"] = studio.config.relative(Path(task.source.mask).resolve())
    if task.source.outpaint is not None:
        record.update(task="outpaint", outpaint=list(task.source.outpaint))
    return record


def _inpaint_options(init: InitImage) -> dict[str, Any]:
    """The inpaint options an inpaint used beyond its mask and blur, under :class:`InitImage`'s names: its mask
    inverted, only the masked area repainted (its padding), the masked part filled from its surroundings."""
    options: dict[str, Any] = {}
    if init.invert_mask and init.mask is not None:
        options["invert_mask"] = True
    if init.only_masked_padding is not None:
        options["only_masked_padding"] = int(init.only_masked_padding)
    if init.fill_masked:
        options["fill_masked"] = True
    return options


def infotext_fields(task: TaskInput | None) -> dict[str, str]:
    """A1111's infotext fields for the task, named as A1111 writes them (its ``processing.py``): ``Mask mode``,
    ``Masked content``, ``Inpaint area`` and ``Masked area padding`` for the inpaint options used."""
    if task is None:
        return {}
    fields = {"Denoising strength": f"{task.strength:g}"}
    if task.mask is not None:
        fields["Mask blur"] = str(int(task.source.mask_blur))
        options = _inpaint_options(task.source)
        if options.get("invert_mask"):
            fields["Mask mode"] = MASK_MODES[1]
        if options.get("fill_masked"):
            fields["Masked content"] = MASKED_CONTENTS[1]
        if "only_masked_padding" in options:
            fields["Inpaint area"] = INPAINT_AREAS[1]
            fields["Masked area padding"] = str(options["only_masked_padding"])
    if task.source.outpaint is not None:
        fields["Outpaint"] = ",".join(str(side) for side in task.source.outpaint)
    return fields


def read_inpaint_options(fields: dict[str, str]) -> dict[str, Any]:
    """The inpaint options A1111's infotext ``fields`` name (those :func:`infotext_fields` writes), under
    :class:`InitImage`'s names as :func:`_inpaint_options` gives them; a ``Masked content`` other than fill is the
    original, a padding left out or not a whole number A1111's default."""
    said = {name: fields.get(name, "").strip().lower() for name in ("Mask mode", "Masked content", "Inpaint area")}
    options: dict[str, Any] = {}
    if said["Mask mode"] == MASK_MODES[1].lower():
        options["invert_mask"] = True
    if said["Masked content"] == MASKED_CONTENTS[1]:
        options["fill_masked"] = True
    if said["Inpaint area"] == INPAINT_AREAS[1].lower():
        padding = to_number(fields.get("Masked area padding", "").strip(), int)
        options["only_masked_padding"] = ONLY_MASKED_PADDING if padding is None else padding
    return options


def upscale(picture: Image.Image, method: str, factor: float = 2.0, size: tuple[int, int] | None = None
            ) -> Image.Image:
    """``picture`` resized by ``factor`` (or to ``size``) with Lanczos or Nearest, as A1111's built-in upscalers
    do; ``None`` keeps it as it is."""
    if size is None:
        if not 1 <= factor <= MAX_UPSCALE:
            raise InvalidInput(f"The upscale factor must be between 1 and {MAX_UPSCALE} (got {factor:g}).")
        size = (round(picture.width * factor), round(picture.height * factor))
    if not all(1 <= side <= 8192 for side in size):
        raise InvalidInput(f"The upscaled size must be 1-8192 pixels a side (got {size[0]}x{size[1]}).")
    if method in RESAMPLERS:
        picture = picture.resize(size, RESAMPLERS[method])
    return picture
