"""The model catalog (``assets/models.json``) and how a model field is resolved to something loadable.

A model field holds a catalog id (``flux-dev``), any diffusers repo id (``owner/name``) or a local pipeline
folder. Catalog entries are data: adding a model means adding an entry, not a code branch. A folder or a repo
outside the catalog is recognised by the pipeline class its ``model_index.json`` names, and takes the defaults
and memory figures of the catalog entry it most likely is (:func:`_likeliest_entry`), else its profile's.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from masuka.errors import InvalidInput, ModelUnavailable
from masuka.models import architectures
from masuka.models.architectures import Profile
from masuka.models.hub import hub_cache_dir, hub_reachable
from masuka.services import hub_endpoint

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "models.json"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")
#: what a catalog entry tells a folder or repo of the same model: its defaults and memory figures (whether a
#: negative prompt applies is its architecture's: a Z-Image folder may be the base, which takes one, not Turbo)
MODEL_FACTS = ("steps", "guidance", "width", "height", "max_sequence_length", "vram_gb", "memory_gb")


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
    def pixels(self) -> int:
        """The pixels of the model's own size: a larger starting picture runs brought down to about that many."""
        return self.width * self.height

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
    """Turn a model field into a :class:`ModelSpec` without loading weights or asking the network: a repo id
    outside the catalog is recognised from the ``model_index.json`` the Hugging Face cache holds, if any (see
    :func:`ask_hub` for one not downloaded)."""
    model = (model or "").strip()
    if not model:
        raise InvalidInput("Choose a model.")
    if not model.isprintable() or len(model) > 1024:
        raise InvalidInput("The model name contains control characters or is too long.")
    key = model if model in image_models() else next(
        (key for key, entry in image_models().items() if entry["repo"] == model), None)
    if key is not None:
        entry = image_models()[key]
        return _spec(key, entry["repo"], {**_figures(architectures.get(entry.get("architecture"))), **entry})
    path = _as_path(model)
    if path.is_dir():
        folder = path.resolve()
        found = _recognise(folder, pipeline_class(path), _snapshot_repo(folder))
        return _spec(str(folder), str(folder), {**found, "name": path.name})
    refuse_missing_folder(model)
    if REPO_ID.match(model):
        return _repo_spec(model, _cached_snapshot(model))
    raise InvalidInput(f"Unknown model {model!r}: use a catalog id ({', '.join(image_models())}), "
                       "a Hugging Face repo id such as owner/name, or a local pipeline folder.")


def ask_hub(spec: ModelSpec, token: str | None = None) -> ModelSpec:
    """``spec``, or for a repo id the cache could not tell the architecture of, the spec its ``model_index.json``
    on the Hub gives (that one small file, read when the Hub answers and not kept: the cache holds only what a
    download put there). Any failure (no such repo, gated, offline) leaves ``spec`` as it is: the download or
    the load says why. A repo whose index the cache holds was read from it already: nothing is asked."""
    if (spec.architecture or spec.is_local or not REPO_ID.match(spec.source) or _cached_snapshot(spec.source)
            or not hub_reachable()):
        return spec
    import httpx
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(prefix="masuka-index-") as folder:
        try:
            hf_hub_download(spec.source, "model_index.json", local_dir=folder, token=token, endpoint=hub_endpoint())
        except (OSError, ValueError, httpx.HTTPError):
            return spec
        return _repo_spec(spec.source, Path(folder))


def _recognise(folder: Path, class_name: str, repo: str | None = None) -> dict:
    """The spec fields of a pipeline folder (or a repo's snapshot) of ``class_name``: its profile, and the
    defaults and memory figures of the catalog entry it most likely is, else the profile's own."""
    profile = architectures.for_pipeline(class_name)
    found = {"pipeline": class_name, "architecture": profile.id if profile else None}
    if profile is None:
        return found
    key = _likeliest_entry(folder, class_name, repo)
    entry = image_models()[key] if key else {}
    return {**profile.defaults, "negative_prompt": profile.negative_prompt, **_figures(profile),
            **{fact: entry[fact] for fact in MODEL_FACTS if fact in entry}, **found}


def _likeliest_entry(folder: Path, class_name: str, repo: str | None = None) -> str | None:
    """The catalog id a pipeline folder of ``class_name`` most likely holds, among the entries of that class: the
    one of its ``repo``, else the one whose components (:func:`_conflicts`) it contradicts least, else the one whose
    repo has the folder's (or repo's) name, else the first (``None`` when the class has none)."""
    keys = [key for key, entry in image_models().items() if entry.get("pipeline") == class_name]
    index = json_object(folder / "model_index.json")
    name = (repo or folder.name).rpartition("/")[2].lower()

    def rank(key: str) -> tuple[bool, tuple[int, int], bool]:
        published = image_models()[key]["repo"]
        return published != repo, _conflicts(key, folder, index), published.rpartition("/")[2].lower() != name

    return min(keys, key=rank, default=None)


def _conflicts(model_id: str, folder: Path, index: dict) -> tuple[int, int]:
    """How far a pipeline folder (``index``: its ``model_index.json``) is from catalog entry ``model_id``'s published
    checkpoint (its profile's ``real_models``): how many components it lists with another class (Playground v2.5's
    scheduler is an EDM one, SDXL's is not), then how many config values of the others differ (FLUX.1 [schnell]'s
    transformer has no guidance embedding and its scheduler no shift; [klein] 9B's transformer is deeper than 4B's)."""
    profile = architectures.get(image_models()[model_id].get("architecture"))
    published = profile.real_models.get(model_id, {}) if profile else {}
    classes = values = 0
    for component, (class_name, config) in published.items():
        listed = index.get(component)
        if not isinstance(listed, list):
            continue
        if listed[-1:] != [class_name]:
            classes += 1
            continue
        found = json_object(folder / component / "config.json") or json_object(
            folder / component / "scheduler_config.json")
        values += sum(key in found and found[key] != json.loads(json.dumps(value)) for key, value in config.items())
    return classes, values


def _figures(profile: Profile | None) -> dict:
    """A profile's typical memory figures as spec fields (a catalog entry's own replace them)."""
    if profile is None:
        return {}
    return {"vram_gb": profile.memory_gb.get("full"),
            "memory_gb": {plan: gb for plan, gb in profile.memory_gb.items() if plan != "full"}}


def _repo_spec(repo: str, snapshot: Path | None) -> ModelSpec:
    """A repo id outside the catalog, recognised from the ``model_index.json`` in ``snapshot`` when there is one."""
    class_name = _index_class(snapshot) if snapshot else None
    found = _recognise(snapshot, class_name, repo) if snapshot and class_name else {"architecture": None}
    return _spec(repo, repo, {**found, "name": repo})


def _cached_snapshot(repo: str) -> Path | None:
    """The cached snapshot of ``repo`` holding its ``model_index.json``, if the Hugging Face cache has one."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, "model_index.json", cache_dir=hub_cache_dir())
    except ValueError:  # a name the Hub's rules refuse (``a/b..c``): loading says so
        return None
    return Path(found).parent if isinstance(found, str) else None


def _snapshot_repo(folder: Path) -> str | None:
    """``owner/name`` of a folder that is a snapshot in the Hugging Face cache (``models--owner--name/snapshots/…``)."""
    repo = folder.parent.parent.name
    if folder.parent.name != "snapshots" or not repo.startswith("models--"):
        return None
    return repo.removeprefix("models--").replace("--", "/", 1)


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
    if not (folder / "model_index.json").is_file():
        raise InvalidInput(f"{folder} is not a diffusers pipeline folder (it has no model_index.json).")
    class_name = _index_class(folder)
    if class_name is None:
        raise InvalidInput(f"The model_index.json of {folder} is not a diffusers pipeline index (a JSON object "
                           "with the pipeline's _class_name): the folder is damaged or was not saved with "
                           "save_pretrained.")
    return class_name


def _index_class(folder: Path) -> str | None:
    """The ``_class_name`` of a folder's ``model_index.json``; ``None`` when there is none."""
    class_name = json_object(folder / "model_index.json").get("_class_name")
    return class_name if isinstance(class_name, str) and class_name else None


def json_object(path: Path) -> dict:
    """A JSON object file; {} for a missing or unreadable one, or one that is not UTF-8 (a ValueError), JSON or an
    object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
