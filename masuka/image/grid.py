"""X/Y/Z grids: one parameter per axis, every cell its own image and history row, and one labelled grid image.

An axis is ``name=v1,v2,…``. ``prompt=a,b,c`` is a search/replace (as AUTOMATIC1111's "Prompt S/R"): the first
value is searched in the prompt and each value replaces it in turn. Every cell is checked (the way Generate
checks a request) before any image is made, so a value the model refuses fails at once, naming the axis.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masuka.errors import Cancelled, InvalidInput
from masuka.image.generate import (
    MAX_SEED,
    ImageRequest,
    ImageResult,
    StepCallback,
    generate_images,
    plan_request,
    prompt_loras,
)
from masuka.studio import Studio
from masuka.users import output_dir
from masuka.validation import weighted

MAX_CELLS = 64  # more needs an explicit yes
ALLOW_LARGE = f"Allow more than {MAX_CELLS} cells"  # the app's box that gives that yes (the CLI's is --yes)
LIMIT_CELLS = 1024  # the most a grid may have, even with a yes
MAX_LABEL = 48  # characters of a value shown on the grid
#: axis name -> label on the grid
AXES = {"steps": "Steps", "guidance": "CFG scale", "seed": "Seed", "size": "Size", "model": "Model", "lora": "LoRA",
        "lora_weight": "LoRA weight", "prompt": "Prompt S/R", "sampler": "Sampler"}
NO_LORA = "none"


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[str, ...]

    @property
    def title(self) -> str:
        return AXES[self.name]


@dataclass
class Cell:
    """One image of the grid: where it sits (x, y, z indexes), its request and its labels."""

    position: tuple[int, int, int]
    request: ImageRequest
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class GridResult:
    grid: Path
    images: list[ImageResult]


def given_axes(texts: Sequence[str | None]) -> list[Axis]:
    """The X, Y and Z axes as written (None or blank where one is not), each kept in its own slot: a Y axis without
    an X (a Z without a Y) is refused, not slid into the empty slot's place."""
    given = [bool(text and text.strip()) for text in texts]
    for index in range(1, len(given)):
        if given[index] and not given[index - 1]:
            name, before = "XYZ"[index], "XYZ"[index - 1]
            raise InvalidInput(f"The {name} axis is filled but the {before} axis is empty: a grid's axes fill in "
                               f"order (X, then Y, then Z), so give the {name} axis's values as the {before} axis.")
    return [parse_axis(text) for text, filled in zip(texts, given) if filled and text]


def parse_axis(text: str) -> Axis:
    """``steps=4,8,16`` → an :class:`Axis`; unknown names and empty values are refused."""
    name, sep, values = (text or "").partition("=")
    name = name.strip().lower().replace("-", "_")
    if name in ("sr", "prompt_sr"):
        name = "prompt"
    if not sep or name not in AXES:
        raise InvalidInput(f"Unknown grid axis {text!r}: write name=value1,value2 with a name among "
                           f"{', '.join(AXES)}.")
    parsed = tuple(value.strip() for value in values.split(","))
    if not parsed or any(not value for value in parsed):
        raise InvalidInput(f"The {name} axis has an empty value: write {name}=value1,value2.")
    return Axis(name, parsed)


def plan_grid(studio: Studio, base: ImageRequest, axes: list[Axis], allow_any_path: bool = False,
              confirm_large: bool = False) -> list[Cell]:
    """Every cell's request, checked; X varies fastest, then Y, then Z. More than :data:`MAX_CELLS` cells need
    ``confirm_large``; more than :data:`LIMIT_CELLS` are refused before any cell is planned."""
    if not axes or len(axes) > 3:
        raise InvalidInput("A grid has one to three axes (x, y, z).")
    names = [axis.name for axis in axes]
    if len(set(names)) != len(names):
        raise InvalidInput("Each parameter may be on one axis only.")
    if {"lora", "lora_weight"} & set(names):  # a tag's LoRA is a LoRA of the cell like any other
        prompt, tagged = prompt_loras(base.prompt, strict=True)
        base = replace(base, prompt=prompt, loras=[*base.loras, *tagged])
    if "lora_weight" in names and not base.loras and "lora" not in names:
        raise InvalidInput("The lora_weight axis needs a LoRA: add --lora, a <lora:name:weight> tag or a lora axis.")
    base, swept = _swept_loras(next((axis for axis in axes if axis.name == "lora"), None), base)
    count = math.prod(len(axis.values) for axis in axes)
    if count > LIMIT_CELLS:
        raise InvalidInput(f"This grid has {count} cells: a grid has at most {LIMIT_CELLS}. Make it in smaller "
                           "grids (fewer values per axis).")
    if count > MAX_CELLS and not confirm_large:
        raise InvalidInput(f"This grid has {count} cells (more than {MAX_CELLS}): confirm the large grid to make it "
                           f"(--yes on the command line, the '{ALLOW_LARGE}' box in the app).")
    seed = base.seed if base.seed not in (None, -1) else plan_request(studio, replace(base, batch=1)).seeds[0]
    base = replace(base, seed=seed, batch=1)
    padded = list(axes) + [Axis("", ("",))] * (3 - len(axes))
    cells = []
    for z, y, x in itertools.product(*(range(len(axis.values)) for axis in reversed(padded))):
        request, labels = base, {}
        # a LoRA file is set before its weight, whatever axes they are on
        for axis, index in sorted(zip(padded, (x, y, z)), key=lambda pair: pair[0].name == "lora_weight"):
            if axis.name:
                request = _apply(axis, axis.values[index], request, base, swept)
                labels[axis.name] = axis.values[index]
        try:
            plan_request(studio, request, allow_any_path)
        except InvalidInput as error:
            where = ", ".join(f"{name}={value}" for name, value in labels.items())
            raise InvalidInput(f"Grid cell {where}: {error}") from None
        cells.append(Cell((x, y, z), replace(request, notes={"grid": labels}), labels))
    return cells


def run_grid(studio: Studio, axes: list[Axis], cells: list[Cell], *, on_step: StepCallback | None = None,
             on_image: Callable[[ImageResult], None] | None = None, stop: threading.Event | None = None,
             allow_any_path: bool = False) -> GridResult:
    """Make every cell (each a history row), then the labelled grid image next to them. A ``stop`` raises
    :class:`Cancelled` saying how many cells were made (they stay in History; no grid image is drawn), or, before
    the first cell's first step (the grid still waiting for the GPU), that it stopped before it started."""
    images: list[ImageResult] = []
    stepped = threading.Event()

    def step(index: int, at: int, total: int) -> None:
        stepped.set()
        if on_step:
            on_step(index, at, total)

    for done, cell in enumerate(cells):
        try:
            images.extend(generate_images(studio, cell.request, on_step=step, on_image=on_image, stop=stop,
                                          allow_any_path=allow_any_path))
        except Cancelled as stopped:
            if not stepped.is_set():
                raise Cancelled(by=stopped.by, at="before it started") from None
            raise Cancelled("the cells made are kept in History", by=stopped.by,
                            at=f"after {done} of {len(cells)} cells") from None
    return GridResult(save_grid(studio, axes, cells, [Path(r.path) for r in images], images[0].id), images)


def save_grid(studio: Studio, axes: list[Axis], cells: list[Cell], paths: list[Path], first_id: int) -> Path:
    """Draw the grid of the cells' images (``paths``, in cell order) into the owner's ``grids`` folder."""
    folder = output_dir(studio.config, cells[0].request.owner) / "grids"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"grid-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{first_id:06d}.png"
    draw_grid(axes, cells, paths).save(path)
    return path


def draw_grid(axes: list[Axis], cells: list[Cell], paths: list[Path]) -> Any:
    """One image: X values as column headings, Y as row headings, one block per Z value with its heading. The cells
    are read one at a time as they are pasted (only their sizes first), so memory holds the grid and one cell."""
    from PIL import Image, ImageDraw, ImageFont

    sizes_of = []
    for path in paths:
        with Image.open(path) as tile:
            sizes_of.append(tile.size)
    width, height = max(w for w, _h in sizes_of), max(h for _w, h in sizes_of)
    font = ImageFont.load_default(size=max(14, min(width, height) // 14))
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow was built without FreeType, which the grid's labels need")
    sizes = [len(axis.values) for axis in axes] + [1] * (3 - len(axes))
    heading = int(font.size) + 12
    column_labels = [_label(axes[0], v) for v in axes[0].values]
    row_labels = [_label(axes[1], v) for v in axes[1].values] if len(axes) > 1 else [""]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max(probe.textlength(label, font=font) for label in row_labels) + 16 if len(axes) > 1 else 0
    column_width = max(width, max(int(probe.textlength(label, font=font)) + 12 for label in column_labels))
    block_height = heading + sizes[1] * height + (heading if len(axes) > 2 else 0)
    canvas = Image.new("RGB", (int(left) + sizes[0] * column_width, sizes[2] * block_height), "white")
    draw = ImageDraw.Draw(canvas)
    for z in range(sizes[2]):
        top = z * block_height
        if len(axes) > 2:
            draw.text((8, top + 4), _label(axes[2], axes[2].values[z]), fill="black", font=font)
            top += heading
        for x, label in enumerate(column_labels):
            draw.text((left + x * column_width + column_width / 2, top + heading / 2), label, fill="black",
                      font=font, anchor="mm")
        for y, label in enumerate(row_labels):
            draw.text((8, top + heading + y * height + height / 2), label, fill="black", font=font, anchor="lm")
    for cell, path in zip(cells, paths):
        x, y, z = cell.position
        top = z * block_height + (heading if len(axes) > 2 else 0) + heading
        with Image.open(path) as tile:
            canvas.paste(tile.convert("RGB"), (int(left) + x * column_width + (column_width - tile.width) // 2,
                                               top + y * height))
    return canvas


def _label(axis: Axis, value: str) -> str:
    """``Steps: 8``; files (LoRAs, model folders) by their name only."""
    shown = Path(value).name if axis.name in ("lora", "model") and ("/" in value or "\\" in value) else value
    return f"{axis.title}: {shown if len(shown) <= MAX_LABEL else shown[:MAX_LABEL - 1] + '…'}"


def _swept_loras(axis: Axis | None, base: ImageRequest) -> tuple[ImageRequest, dict[str, list[tuple[str, float]]]]:
    """The lora axis's LoRA per value (none for ``none``), and ``base`` without those LoRAs: the others given stay in
    every cell. A value's weight is its own (``style:0.8``), else the weight the same LoRA was given, else 1."""
    if axis is None:
        return base, {}
    given = dict(base.loras)
    swept = {}
    for value in axis.values:
        ref, weight = weighted(value, "LoRA", lambda name: name.endswith(".safetensors"))
        swept[value] = [] if ref.lower() == NO_LORA else [(ref, given.get(ref, 1.0) if weight is None else weight)]
    names = {ref for loras in swept.values() for ref, _weight in loras}
    return replace(base, loras=[(ref, weight) for ref, weight in base.loras if ref not in names]), swept


def _apply(axis: Axis, value: str, request: ImageRequest, base: ImageRequest,
           swept: dict[str, list[tuple[str, float]]]) -> ImageRequest:
    """``request`` with one axis value set (``swept``: the lora axis's LoRAs per value)."""
    try:
        if axis.name == "steps":
            return replace(request, steps=int(value))
        if axis.name == "guidance":
            return replace(request, guidance=float(value))
        if axis.name == "seed":
            seed = int(value)
            if not 0 <= seed <= MAX_SEED:
                raise ValueError
            return replace(request, seed=seed)
        if axis.name == "size":
            width, _, height = value.lower().partition("x")
            return replace(request, width=int(width), height=int(height))
        if axis.name == "lora_weight":
            weight = float(value)
            return replace(request, loras=[(ref, weight) for ref, _w in request.loras])
    except ValueError:
        raise InvalidInput(f"{value!r} is not a value for the {axis.name} axis.") from None
    if axis.name == "model":
        return replace(request, model=value)
    if axis.name == "sampler":
        return replace(request, sampler=value)
    if axis.name == "lora":
        return replace(request, loras=[*request.loras, *swept[value]])
    search = axis.values[0]
    if search not in base.prompt:
        raise InvalidInput(f"Prompt S/R: {search!r} (the first value) is not in the prompt.")
    return replace(request, prompt=request.prompt.replace(search, value))
