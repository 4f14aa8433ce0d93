"""The video model catalog (``assets/video_models.json``): providers, their models and what each allows.

Each model lists allowed durations (seconds), sizes (``WxH``), optional per-size durations and prices, and
whether it takes a text prompt and/or a first-frame image. Adding a model means adding an entry.

A remote model also carries its ``lifecycle``: ``active``, ``deprecated`` (with the announced removal date in
``ends``) or ``retired`` (``ends`` is when it went), the ``source`` of that fact, when it was ``checked`` and a
``note``. Retired models stay in the catalog so old jobs and History keep their names; forms hide them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from math import gcd, log
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "video_models.json"
LOCAL = "local"
#: a local model that is not in the catalog (repo id or folder) accepts these, where its configs say nothing else
LOCAL_ANY: dict[str, Any] = {"durations": list(range(1, 11)), "sizes": [], "fps": 16, "steps": 30, "guidance": 5.0,
             "price_per_second": 0, "text": True, "image": True}


@functools.cache
def video_catalog() -> dict[str, dict]:
    """Provider id -> provider entry (``name``, limits, ``models``)."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


#: every video provider id, in catalog order, and the remote ones (each a module in ``video/providers``)
PROVIDERS = tuple(video_catalog())
REMOTE_PROVIDERS = tuple(name for name in PROVIDERS if name != LOCAL)


def provider_entry(provider: str) -> dict:
    entry = video_catalog().get(provider)
    if entry is None:
        raise InvalidInput(f"Unknown video provider {provider!r}: choose one of {', '.join(PROVIDERS)}.")
    return entry


@dataclass(frozen=True)
class Lifecycle:
    """Where a model stands at its provider, and who said so when."""

    state: str = "active"  # active | deprecated | retired
    ends: str | None = None  # YYYY-MM-DD: announced removal (deprecated) or removal (retired)
    source: str = ""
    checked: str = ""
    note: str = ""

    @property
    def retired(self) -> bool:
        return self.state == "retired"

    def warning(self, name: str) -> str:
        """A line for the form and the CLI; empty for an active model."""
        source = f" (source: {self.source}, checked {self.checked})" if self.source else ""
        if self.state == "deprecated":
            return f"{name} is deprecated: ends {self.ends or 'soon'}{source}."
        if self.retired:
            return (f"{name} was retired on {self.ends or 'an unannounced date'}{source}; the provider is "
                    "expected to refuse it.")
        return ""


LIFECYCLE_STATES = ("active", "deprecated", "retired")


def lifecycle(entry: dict) -> Lifecycle:
    return Lifecycle(**entry.get("lifecycle", {}))


def listed_models(provider: str, show_retired: bool = False) -> dict[str, dict]:
    """The provider's models a form offers: retired ones only when asked for."""
    return {key: model for key, model in provider_entry(provider)["models"].items()
            if show_retired or not lifecycle(model).retired}


def model_entry(provider: str, model: str, fps: int | None = None) -> dict:
    """The catalog entry of ``model``; for ``local``, any repo id or pipeline folder gets :data:`LOCAL_ANY`
    overridden by a folder's own limits (:func:`~masuka.video.limits.folder_limits`: its lengths are those its
    rotary table allows at ``fps``, the default frame rate when None; whether it takes an image, its profile's)."""
    models = provider_entry(provider)["models"]
    model = (model or "").strip()
    if model in models:
        return models[model]
    if provider == LOCAL and model:
        from masuka.models.catalog import REPO_ID

        folder = Path(model).expanduser()
        if folder.is_dir() and not (folder / "model_index.json").is_file():
            raise InvalidInput(f"{model} is not a diffusers pipeline folder (it has no model_index.json).")
        if folder.is_dir() or REPO_ID.match(model):
            from masuka.video.limits import folder_limits

            limits = folder_limits(folder, fps or LOCAL_ANY["fps"]) if folder.is_dir() else {}
            return {"name": model, "repo": model, **LOCAL_ANY, **limits}
    raise InvalidInput(f"{provider_entry(provider)['name']} has no model {model!r}; choose one of "
                       f"{', '.join(models)}" + (", a diffusers repo id or a local folder." if provider == LOCAL
                                                 else "."))


def route(entry: dict, model: str, image: bool) -> str:
    """Where a clip of ``model`` (catalog ``entry``) is sent: its image-to-video route (``image_model``, fal) for a
    clip made from a frame, else the model itself."""
    return entry.get("image_model", model) if image else model


def durations_for(entry: dict, size: str | None = None) -> list[int]:
    return list((entry.get("size_durations") or {}).get(size or "", entry["durations"]))


def price_per_second(entry: dict, size: str, audio: bool | None = None) -> float:
    """List price per second at ``size``; with sound off, the model's ``silent_*`` prices where it has them."""
    if audio is False and "silent_price_per_second" in entry:
        return float((entry.get("silent_size_prices") or {}).get(size, entry["silent_price_per_second"]))
    return float((entry.get("size_prices") or {}).get(size, entry["price_per_second"]))


def parse_size(size: str) -> tuple[int, int]:
    """``1280x720`` -> (1280, 720)."""
    width, sep, height = (size or "").lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise InvalidInput(f"Size must look like 1280x720 (got {size!r}).")
    return int(width), int(height)


def aspect_of(size: str) -> str:
    """``1280x720`` -> ``16:9``."""
    width, height = parse_size(size)
    divisor = gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def size_for_shape(sizes: list[str], width: int, height: int, kept: str | None = None) -> str:
    """Of ``sizes``, the one of the shape closest to ``width`` x ``height`` (a first frame's): a portrait photo
    makes a portrait video. Of shapes as close (a square picture between landscape and portrait), ``kept`` if it
    is one, else the first."""
    def distance(size: str) -> tuple[float, bool]:
        size_width, size_height = parse_size(size)
        return round(abs(log(size_width / size_height) - log(width / height)), 6), size != kept

    return min(sizes, key=distance)


def resolution_of(size: str) -> str:
    """``1280x720`` -> ``720p`` (the short side); ``3840x2160`` -> ``4k`` as Veo and fal name it."""
    short = min(parse_size(size))
    return "4k" if short == 2160 else f"{short}p"


def size_for_aspect(entry: dict, aspect: str) -> str:
    """The first size of a model with the aspect ratio ``16:9`` (for ``--aspect``)."""
    wanted = aspect.strip().replace("x", ":")
    for size in entry["sizes"]:
        if aspect_of(size) == wanted:
            return size
    ratios = sorted({aspect_of(size) for size in entry["sizes"]})
    raise InvalidInput(f"{entry['name']} has no {aspect} size; it offers {', '.join(ratios) or 'any WxH size'}.")
