"""A1111-style ``parameters`` text: written into every image, read back from ours and other tools' files.

The format (as AUTOMATIC1111, Forge and Civitai read it)::

    a photo of a cat <lora:style:0.8>
    Negative prompt: blurry
    Steps: 28, Sampler: Euler, CFG scale: 3.5, Seed: 42, Size: 1024x1024, Model: flux-dev, Lora hashes: "style: 1a2b3c4d5e6f"

Values holding a comma, colon or newline are JSON strings, as A1111 writes and reads them (``json.dumps`` /
``json.loads``); unquoted JSON lists and objects (Civitai's ``Civitai resources: [...]``) are kept whole. Every
field MASUKA does not use itself (``Hires prompt``, ``Lora hashes``, ``Template``...) is kept in ``extra`` and
written back unchanged. LoRA tags take every form A1111 reads: ``<lora:name>`` (weight 1), ``<lora:name:0.8>``,
``<lora:name:0.6:0.9>`` (text encoder, denoiser) and ``<lora:name:te=0.6:unet=0.9>``; the denoiser's weight is the
one kept, since that is what a LoRA made here or for Flux, SD3 or SDXL changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from PIL import Image, PngImagePlugin

from masuka.errors import InvalidInput
from masuka.loras.tags import split_lora_tags

PARAM = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[\[{].*?[\]}](?=\s*(?:,\s*\w[\w \-/]*:\s|$))|[^,]*)'
                   r'(?:,|$)')
NEGATIVE = "Negative prompt:"


@dataclass
class Parameters:
    """What an image was made with, as far as its metadata tells."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    loras: list[tuple[str, float]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    #: fields given but unreadable (``Steps: 1e3``, ``Size: 512X512``) as written, by name; never written back
    unread: dict[str, str] = field(default_factory=dict)


def format_parameters(p: Parameters) -> str:
    """The ``parameters`` text for ``p`` (LoRAs as ``<lora:name:weight>`` tags in the prompt line)."""
    prompt = p.prompt + "".join(f" <lora:{name}:{format_weight(weight)}>" for name, weight in p.loras)
    lines = [prompt]
    if p.negative_prompt:
        lines.append(f"{NEGATIVE} {p.negative_prompt}")
    fields = {
        "Steps": p.steps, "Sampler": p.sampler, "CFG scale": None if p.guidance is None else f"{p.guidance:g}",
        "Seed": p.seed, "Size": f"{p.width}x{p.height}" if p.width and p.height else None, "Model": p.model,
        **p.extra,
    }
    lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in fields.items() if value is not None))
    return "\n".join(lines)


def format_weight(weight: float) -> str:
    """A LoRA weight as tags write it: ``0.8``, ``1``, ``0.00001`` (never ``1e-05``, which some readers miss)."""
    short = f"{weight:g}"
    return format(Decimal(short), "f") if "e" in short else short


def parse_parameters(text: str) -> Parameters:
    """Parse A1111-style text (ours or another tool's) back into :class:`Parameters`."""
    lines = text.strip().replace("\r\n", "\n").split("\n")
    settings: dict[str, str] = {}
    if lines and len(PARAM.findall(lines[-1])) >= 3:
        settings = {key.strip(): _unquote(value.strip()) for key, value in PARAM.findall(lines.pop())}
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith(NEGATIVE):
            in_negative = True
            line = line[len(NEGATIVE):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt, loras = split_lora_tags("\n".join(prompt_lines).strip())
    p = Parameters(prompt=prompt, negative_prompt="\n".join(negative_lines).strip(), loras=loras)
    p.steps = _number(settings, "Steps", int, p.unread)
    p.sampler = settings.pop("Sampler", None)
    p.guidance = _number(settings, "CFG scale", float, p.unread)
    p.seed = _number(settings, "Seed", int, p.unread)
    size = settings.pop("Size", None)
    if size and re.fullmatch(r"\d+x\d+", size):
        p.width, p.height = (int(v) for v in size.split("x"))
    elif size:
        p.unread["Size"] = size
    p.model = settings.pop("Model", None)
    p.extra = settings
    return p


def read_parameters(path: str | Path | BinaryIO) -> str | None:
    """The ``parameters`` text stored in an image (PNG text chunk, or EXIF UserComment for JPEG/WebP), NovelAI's,
    Fooocus's and SwarmUI's converted to it (see :func:`read_metadata`)."""
    return read_metadata(path).parameters


@dataclass
class ImageMetadata:
    """What an image's metadata holds, as far as MASUKA reads it."""

    #: A1111-style text: the image's own, or converted from NovelAI's, Fooocus's or SwarmUI's
    parameters: str | None = None
    #: the tool that made the image, where its metadata is of a kind not read here (ComfyUI, InvokeAI...)
    unreadable_tool: str | None = None
    #: the image's other text fields (as A1111's PNG Info lists them)
    items: dict[str, str] = field(default_factory=dict)

    def required(self, image: str = "This image") -> str:
        """The parameters, or :class:`InvalidInput` saying why ``image`` has none that can be read."""
        if self.parameters:
            return self.parameters
        if self.unreadable_tool:
            kind = "workflow" if self.unreadable_tool == "ComfyUI" else "metadata"
            raise InvalidInput(f"{image} was made with {self.unreadable_tool}: its {kind} can't be read here.")
        raise InvalidInput(f"{image} carries no generation parameters.")


#: text fields by which other tools' images are known, when their metadata is not read here
OTHER_TOOLS = {"workflow": "ComfyUI", "prompt": "ComfyUI", "invokeai_metadata": "InvokeAI",
               "sd-metadata": "InvokeAI", "dream": "InvokeAI"}
#: NovelAI's sampler names -> A1111's (as A1111's ``samplers_map``; another is read as Euler a, as A1111 does)
NOVELAI_SAMPLERS = {"k_euler": "Euler", "k_euler_ancestral": "Euler a", "k_dpmpp_2m": "DPM++ 2M",
                    "k_dpmpp_2s_ancestral": "DPM++ 2S a", "k_dpmpp_sde": "DPM++ SDE", "k_lms": "LMS",
                    "k_heun": "Heun", "ddim": "DDIM"}
TOO_LARGE = "The image's metadata is too large to read (a compressed text field over Pillow's limit)."


def read_metadata(path: str | Path | BinaryIO) -> ImageMetadata:
    """The image's parameters and other text fields; :class:`InvalidInput` for a text field too large to read.

    A PNG's text fields are read wherever they are (after the pixels too). A JSON object in ``parameters``
    (Fooocus, SwarmUI) and NovelAI's ``Comment`` become A1111 text, NovelAI's as A1111 converts it; metadata of
    another kind (JSON of an unknown shape, ComfyUI's workflow, InvokeAI's) names its tool instead."""
    try:
        with Image.open(path) as image:
            texts = _texts(image)
            size = image.size
    except ValueError as error:
        if "MAX_TEXT_CHUNK" in str(error):
            raise InvalidInput(TOO_LARGE) from None
        raise
    parameters = texts.pop("parameters", None)
    data = _json_object(parameters or "")
    if data is not None:
        converted = _from_json(data)
        return ImageMetadata(converted, None if converted else "another tool (JSON metadata)", texts)
    if not parameters and texts.get("Software") == "NovelAI" and "Comment" in texts:
        parameters = _from_novelai(texts, size)
    tool = None if parameters else next((name for key, name in OTHER_TOOLS.items() if key in texts), None)
    return ImageMetadata(parameters or None, tool, texts)


def _texts(image: Image.Image) -> dict[str, str]:
    """The image's text fields (a PNG's read to its end, where some tools put them), with the EXIF
    UserComment as ``parameters`` where it has none."""
    info: dict = dict(image.info)
    decode: Callable[[str], str] = str
    if isinstance(image, PngImagePlugin.PngImageFile):
        decode = _png_text
        if "parameters" not in info:
            info.update(image.text)
    texts = {str(key): decode(value) for key, value in info.items() if isinstance(value, str)}
    if not texts.get("parameters"):
        comment = _user_comment(image.getexif().get_ifd(0x8769).get(0x9286))
        if comment:
            texts["parameters"] = comment
    return texts


def _png_text(value: str) -> str:
    """A PNG text field as written: Latin-1 by the PNG standard (``tEXt``, ``zTXt``), but some tools put UTF-8
    there, read as such where it is (an ``iTXt`` field is UTF-8 already)."""
    if isinstance(value, PngImagePlugin.iTXt) or value.isascii():
        return str(value)
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _user_comment(comment: object) -> str | None:
    """An EXIF UserComment's text: 8 bytes naming the code (``UNICODE``: UTF-16, big-endian as A1111 writes it
    unless a byte order mark or the text says otherwise), then the text; a value of another type (numbers) is no
    comment."""
    if isinstance(comment, tuple) and all(isinstance(v, int) and 0 <= v < 256 for v in comment):
        comment = bytes(comment)  # written as BYTE by MASUKA before 0.x: still read
    if isinstance(comment, str):
        return comment.strip("\0") or None
    if not isinstance(comment, bytes):
        return None
    head, body = comment[:8], comment[8:]
    if not head.startswith(b"UNICODE"):
        return body.decode("utf-8", errors="replace").strip("\0") or None
    little = body[:2] == b"\xff\xfe" or (body[:2] != b"\xfe\xff" and _zero_high_bytes_after(body))
    text = body.decode("utf-16-le" if little else "utf-16-be", errors="replace")
    return text.lstrip("\ufeff").strip("\0") or None


def _zero_high_bytes_after(body: bytes) -> bool:
    """Whether UTF-16 text without a byte order mark reads as little-endian: more of its zero bytes (the high bytes
    of Latin characters: "Steps: 20" is in every generation's text) come second in their pair than first. One
    character alone cannot tell (``一`` is ``4E 00`` big-endian), the whole text can."""
    return body[1::2].count(0) > body[0::2].count(0)


def _json_object(text: str) -> dict | None:
    """``text`` as a JSON object, if it is one (A1111 text never is, even one starting ``{red|blue}``)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _from_json(data: dict) -> str | None:
    """Fooocus's or SwarmUI's JSON parameters as A1111 text; None for JSON of another shape."""
    swarm = data.get("sui_image_params")
    if isinstance(swarm, dict):
        fields = {key: swarm.get(name) for key, name in (
            ("prompt", "prompt"), ("negative", "negativeprompt"), ("steps", "steps"), ("guidance", "cfgscale"),
            ("seed", "seed"), ("width", "width"), ("height", "height"), ("model", "model"))}
    else:  # Fooocus: snake_case keys, or its labels ("Negative Prompt") in older versions
        data = {str(key).lower().replace(" ", "_"): value for key, value in data.items()}
        if "prompt" not in data:
            return None
        size = [int(v) for v in re.findall(r"\d+", str(data.get("resolution", "")))]
        fields = {"prompt": data.get("prompt"), "negative": data.get("negative_prompt"), "steps": data.get("steps"),
                  "guidance": data.get("guidance_scale"), "seed": data.get("seed"),
                  "width": size[0] if len(size) == 2 else None, "height": size[1] if len(size) == 2 else None,
                  "model": data.get("base_model")}
    if not isinstance(fields["prompt"], str):
        return None
    return format_parameters(Parameters(
        prompt=fields["prompt"], negative_prompt=str(fields["negative"] or ""),
        steps=to_number(_plain(fields["steps"]), int), guidance=to_number(_plain(fields["guidance"]), float),
        seed=to_number(_plain(fields["seed"]), int), width=to_number(_plain(fields["width"]), int),
        height=to_number(_plain(fields["height"]), int), model=_plain(fields["model"])))


def _from_novelai(texts: dict[str, str], size: tuple[int, int]) -> str | None:
    """NovelAI's ``Description`` and ``Comment`` as A1111 text, as A1111's ``read_info_from_image`` makes it."""
    try:
        info = json.loads(texts["Comment"])
        return format_parameters(Parameters(
            prompt=texts.get("Description") or str(info.get("prompt", "")), negative_prompt=str(info.get("uc", "")),
            steps=to_number(_plain(info.get("steps")), int),
            sampler=NOVELAI_SAMPLERS.get(str(info.get("sampler")), "Euler a"),
            guidance=to_number(_plain(info.get("scale")), float), seed=to_number(_plain(info.get("seed")), int),
            width=size[0], height=size[1], extra={"Clip skip": "2", "ENSD": "31337"}))
    except (ValueError, AttributeError):
        return None


def _plain(value: object) -> str | None:
    """A JSON value as infotext text: numbers and strings only."""
    return str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None


def save_image(image: Image.Image, path: str | Path | BinaryIO, parameters: str, image_format: str = "PNG",
               quality: int = 95) -> None:
    """Write ``image`` with its parameters: a PNG text chunk, or EXIF UserComment for WebP and JPEG.

    The UserComment is written as A1111 writes it (piexif, type UNDEFINED, ``UNICODE`` prefix, UTF-16), so
    A1111, Forge and anything using piexif read it back.
    """
    image_format = image_format.upper()
    if image_format == "PNG":
        image.save(path, format="PNG", pnginfo=png_info(parameters))
        return
    import piexif
    import piexif.helper

    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(parameters,
                                                                                           encoding="unicode")}})
    rgb = image.convert("RGB") if image_format == "JPEG" else image
    rgb.save(path, format=image_format, exif=exif, quality=quality)


def png_info(parameters: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    return info


def _quote(value: str) -> str:
    """As A1111's ``quote``: a JSON string when the value holds a comma, colon or newline; JSON lists and
    objects (Civitai resources) are written as they are."""
    if not any(c in value for c in ",:\n"):
        return value
    if value[:1] in "[{":
        try:
            json.loads(value)
            return value
        except ValueError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _unquote(value: str) -> str:
    """As A1111's ``unquote``: a quoted value is a JSON string."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value
    return value


def _number(settings: dict[str, str], name: str, kind: type, unread: dict[str, str]):
    """The field ``name`` taken from ``settings`` as ``kind``; one given but not a number goes to ``unread``."""
    raw = settings.pop(name, None)
    value = to_number(raw, kind)
    if value is None and raw:
        unread[name] = raw
    return value


def to_number(value: str | None, kind: type):
    """``value`` as ``kind`` (int or float); None when empty or not a number."""
    try:
        return kind(value) if value not in (None, "") else None
    except ValueError:
        return None
