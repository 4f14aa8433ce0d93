"""The model catalog (``assets/models.json``) and how a model field is resolved to something loadable.

A model field holds a catalog id (``flux-dev``), any diffusers repo id (``owner/name``) or a local pipeline
folder. Catalog entries are data: adding a model means adding an entry, not a code branch.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from masuka.errors import InvalidInput, ModelUnavailable
from masuka.models import architectures
from masuka.models.architectures import Profile

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "models.json"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")


@dataclass(frozen=True)
class ModelSpec:
    """A model ready to load: where it is and what defaults suit it."""

    id: str
    source: str
    architecture: str | None
    name: str = ""
    pipeline: str = "DiffusionPipeline"
    steps: int = 30
    guidance: float = 5.0
    width: int = 1024
    height: int = 1024
    negative_prompt: bool = True
    max_sequence_length: int | None = None
    vram_gb: float | None = None
    memory_gb: dict[str, float] = field(default_factory=dict)
    gated: bool = False
    license: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def profile(self) -> Profile | None:
        return architectures.get(self.architecture)

    @property
    def size_multiple(self) -> int:
        return self.profile.size_multiple if self.profile else 8

    @property
    def memory_needs_gb(self) -> dict[str, float | None]:
        """Peak GPU memory per memory plan: ``vram_gb`` for the full plan, ``memory_gb`` for the others."""
        return {"full": self.vram_gb, **self.memory_gb}

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


@functools.cache
def catalog() -> dict[str, dict[str, dict]]:
    """All catalog sections (``image``, and those later tabs add), keyed by model id."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


def image_models() -> dict[str, dict]:
    return catalog()["image"]


def trainable_models() -> dict[str, dict]:
    """Catalog models a LoRA can be trained on here (their profile trains, and no preset is too small for them)."""
    def trains(entry: dict) -> bool:
        training = getattr(architectures.get(entry.get("architecture")), "training", None)
        return training is not None and entry.get("pipeline") not in training.untrainable

    return {key: entry for key, entry in image_models().items() if trains(entry)}


def resolve_image_model(model: str) -> ModelSpec:
    """Turn a model field into a :class:`ModelSpec` without loading weights."""
    model = (model or "").strip()
    if not model:
        raise InvalidInput("Choose a model.")
    if not model.isprintable() or len(model) > 1024:
        raise InvalidInput("The model name contains control characters or is too long.")
    entry = image_models().get(model)
    if entry is not None:
        profile = architectures.get(entry.get("architecture"))
        figures = {"vram_gb": profile.memory_gb.get("full"), "memory_gb": {
            plan: gb for plan, gb in profile.memory_gb.items() if plan != "full"}} if profile else {}
        return _spec(model, entry["repo"], {**figures, **entry})
    path = _as_path(model)
    if path.is_dir():
        class_name = pipeline_class(path)
        profile = architectures.for_pipeline(class_name)
        defaults = profile.defaults | {"negative_prompt": profile.negative_prompt} if profile else {}
        return _spec(str(path.resolve()), str(path.resolve()), {**defaults, "pipeline": class_name,
                     "architecture": architecture_of(class_name), "name": path.name})
    refuse_missing_folder(model)
    if REPO_ID.match(model):
        return _spec(model, model, {"architecture": None, "name": model})
    raise InvalidInput(f"Unknown model {model!r}: use a catalog id ({', '.join(image_models())}), "
                       "a Hugging Face repo id such as owner/name, or a local pipeline folder.")


def _as_path(model: str) -> Path:
    """The model field as a path, ``~`` and ``~user`` expanded; a ``~user`` with no home folder is refused."""
    try:
        return Path(model).expanduser()
    except RuntimeError:  # ~nosuchuser/...
        raise InvalidInput(f"The folder {model} does not exist: there is no user {model.split('/')[0][1:]!r} "
                           "whose home folder ~ could stand for.") from None


def pipeline_class(folder: Path) -> str:
    """The pipeline class a diffusers pipeline folder names in its ``model_index.json``; :class:`InvalidInput`
    when the file is missing or is not a JSON object with a ``_class_name``."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise InvalidInput(f"{folder} is not a diffusers pipeline folder (it has no model_index.json).")
    try:
        config = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8 (UnicodeDecodeError is a ValueError), not JSON
        config = None
    class_name = config.get("_class_name") if isinstance(config, dict) else None
    if not isinstance(class_name, str) or not class_name:
        raise InvalidInput(f"The model_index.json of {folder} is not a diffusers pipeline index (a JSON object "
                           "with the pipeline's _class_name): the folder is damaged or was not saved with "
                           "save_pretrained.")
    return class_name


def refuse_missing_folder(model: str) -> None:
    """A field written as a path (``./x``, ``/x``, ``~/x``) that is not a folder: say so, not "unknown model"."""
    if model.startswith((".", "/", "~")) or "\\" in model:
        path = _as_path(model)
        what = "is a file, not a model folder" if path.is_file() else "does not exist"
        raise InvalidInput(f"The folder {model} {what}: give a model folder saved with save_pretrained, a "
                           "catalog id or a Hugging Face repo id (owner/name).")


def architecture_of(pipeline_class: str) -> str | None:
    """The profile id of a diffusers pipeline class, by its exact name."""
    profile = architectures.for_pipeline(pipeline_class)
    return profile.id if profile else None


def _spec(model_id: str, source: str, entry: dict) -> ModelSpec:
    known = {f for f in ModelSpec.__dataclass_fields__ if f not in ("id", "source", "extra")}
    values = {k: v for k, v in entry.items() if k in known and k != "repo"}
    extra = {k: v for k, v in entry.items() if k not in known}
    return ModelSpec(id=model_id, source=source, extra=extra, **values)


def check_requirements(spec: ModelSpec) -> None:
    """Refuse, before any weight is read, a pipeline whose extra package (FLUX.2 [dev]: torchvision) is missing."""
    profile = spec.profile or architectures.for_pipeline(spec.pipeline)
    package = profile.requires.get(spec.pipeline) if profile else None
    if profile is None or package is None:
        return
    try:
        importlib.import_module(package)
    except Exception as error:  # missing, or a wheel that does not import (the CPU torch build's torchvision)
        raise ModelUnavailable(f"Model {spec.id!r} is unavailable: it needs {package} ({type(error).__name__}). "
                               f"{profile.notes}") from None


def explain_load_error(spec: ModelSpec, error: BaseException) -> ModelUnavailable:
    """Turn a loading failure into a message that says which repo and why (gated, no token, offline…)."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    where = spec.source
    if any(isinstance(e, GatedRepoError) for e in chain):
        why = (f"{where} is gated: accept its licence on https://huggingface.co/{where} and set a Hugging "
               "Face token in Settings (HF_TOKEN).")
    elif any(isinstance(e, RepositoryNotFoundError) for e in chain):
        why = f"{where} was not found on the Hugging Face Hub (or it is private and no token is set)."
    elif any(isinstance(e, LocalEntryNotFoundError) for e in chain) or any(
            hint in str(error).lower() for hint in ("offline", "not fully cached", "connect", "outgoing traffic")):
        why = (f"{where} is not downloaded and the Hugging Face Hub cannot be reached (offline?). Download "
               "it in the Models tab on a connected machine, or give a local pipeline folder.")
    elif any(word in str(e).lower() for e in chain for word in ("torchvision", "pixtral")):
        note = spec.profile.notes if spec.profile and spec.profile.notes else \
            "pip install torchvision (the build matching your torch)."
        why = f"{where} needs the torchvision package, which is not installed: {note}"
    elif spec.is_local:
        why = f"the pipeline folder {where} could not be loaded: {error}"
    else:
        why = f"{where} could not be loaded: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return ModelUnavailable(f"Model {spec.id!r} is unavailable: {why}")
