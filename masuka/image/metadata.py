"""A1111-style ``parameters`` text: written into every image, read back from ours and other tools' files.

The format (as AUTOMATIC1111, Forge and Civitai read it)::

    a photo of a cat <lora:style:0.8>
    Negative prompt: blurry
    Steps: 28, Sampler: Euler, CFG scale: 3.5, Seed: 42, Size: 1024x1024, Model: flux-dev, Lora hashes: "style: 1a2b3c4d5e"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, PngImagePlugin

LORA_TAG = re.compile(r"<lora:([^:>]+):([-+]?\d*\.?\d+)>")
PARAM = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
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


def format_parameters(p: Parameters) -> str:
    """The ``parameters`` text for ``p`` (LoRAs as ``<lora:name:weight>`` tags in the prompt line)."""
    prompt = p.prompt + "".join(f" <lora:{name}:{weight:g}>" for name, weight in p.loras)
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


def parse_parameters(text: str) -> Parameters:
    """Parse A1111-style text (ours or another tool's) back into :class:`Parameters`."""
    lines = text.strip().replace("\r\n", "\n").split("\n")
    settings: dict[str, str] = {}
    if lines and len(PARAM.findall(lines[-1])) >= 3:
        settings = {key.strip(): _unquote(value.strip()) for key, value in PARAM.findall(lines.pop())}
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith(NEGATIVE):
            in_negative = True
            line = line[len(NEGATIVE):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines).strip()
    loras = [(name, float(weight)) for name, weight in LORA_TAG.findall(prompt)]
    p = Parameters(prompt=LORA_TAG.sub("", prompt).strip(), negative_prompt="\n".join(negative_lines).strip(),
                   loras=loras)
    p.steps = _number(settings.pop("Steps", None), int)
    p.sampler = settings.pop("Sampler", None)
    p.guidance = _number(settings.pop("CFG scale", None), float)
    p.seed = _number(settings.pop("Seed", None), int)
    size = settings.pop("Size", None)
    if size and re.fullmatch(r"\d+x\d+", size):
        p.width, p.height = (int(v) for v in size.split("x"))
    p.model = settings.pop("Model", None)
    p.extra = settings
    return p


def read_parameters(path: str | Path) -> str | None:
    """The ``parameters`` text stored in an image (PNG text chunk, or EXIF UserComment for JPEG/WebP)."""
    with Image.open(path) as image:
        text = image.info.get("parameters")
        if text:
            return str(text)
        comment = image.getexif().get_ifd(0x8769).get(0x9286)
    if isinstance(comment, bytes):
        head, body = comment[:8], comment[8:]
        return body.decode("utf-16-be" if head.startswith(b"UNICODE") else "utf-8", errors="replace").strip("\0")
    return comment or None


def save_image(image: Image.Image, path: str | Path, parameters: str, image_format: str = "PNG") -> None:
    """Write ``image`` with its parameters: a PNG text chunk, or EXIF UserComment for WebP and JPEG."""
    image_format = image_format.upper()
    if image_format == "PNG":
        image.save(path, format="PNG", pnginfo=png_info(parameters))
        return
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + parameters.encode("utf-16-be")
    rgb = image.convert("RGB") if image_format == "JPEG" else image
    rgb.save(path, format=image_format, exif=exif.tobytes(), quality=95)


def png_info(parameters: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    return info


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if ("," in value or ":" in value) else value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _number(value: str | None, kind: type):
    try:
        return kind(value) if value not in (None, "") else None
    except ValueError:
        return None
