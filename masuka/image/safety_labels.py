"""Which classifiers can be the safety check's: an image classifier with an unsafe label among its ``id2label``,
checked from its files (``config.json``; a local folder's ``preprocessor_config.json`` too) when it is saved in
Settings and before a generation, and again when it loads."""

from __future__ import annotations

import json
from pathlib import Path

from masuka.errors import InvalidInput

UNSAFE_LABELS = frozenset({"nsfw", "porn", "hentai", "sexy", "explicit", "unsafe"})


def unsafe_labels(source: str, id2label: dict) -> list[int]:
    """The indices of the unsafe labels among a classifier's ``id2label``; :class:`InvalidInput` when it has none."""
    labels = {int(i): str(label) for i, label in id2label.items()}
    unsafe = [i for i, label in labels.items() if label.lower() in UNSAFE_LABELS]
    if not unsafe:
        raise InvalidInput(f"The safety model {source} has no unsafe label (it has {', '.join(labels.values())}): "
                           f"choose an NSFW classifier in Settings.")
    return unsafe


def check_safety_model(source: str) -> None:
    """Refuse (:class:`InvalidInput`) what cannot be the safety check's classifier, without loading it: a local
    folder that is not a transformers image classifier (:func:`folder_labels`), or a classifier without an unsafe
    label, read from its ``config.json`` in the folder or in the download cache; one not downloaded yet is checked
    when it loads."""
    from masuka.models.hub import cached_file

    folder = Path(source).expanduser()
    if folder.is_dir():
        unsafe_labels(source, folder_labels(source, folder))
        return
    try:
        config = cached_file(source, "config.json")
    except ValueError:  # neither a folder nor a repo id: loading it says so
        return
    if config is None or not Path(config).is_file():
        return
    try:
        id2label = json.loads(Path(config).read_text(encoding="utf-8")).get("id2label")
    except (OSError, ValueError, AttributeError):
        return  # not readable here: loading it says why
    if isinstance(id2label, dict):
        unsafe_labels(source, id2label)


def folder_labels(source: str, folder: Path) -> dict:
    """The ``id2label`` of the image classifier saved in ``folder`` (``config.json`` with its labels, and a
    ``preprocessor_config.json``); :class:`InvalidInput` saying what is missing when the folder is not one (a
    diffusers pipeline's, say): a checked image would otherwise be made, then thrown away, every time."""
    config, processor = folder / "config.json", folder / "preprocessor_config.json"
    try:
        id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") if config.is_file() else None
    except (OSError, ValueError, AttributeError):
        id2label = None
    labels = id2label if isinstance(id2label, dict) else {}
    missing = [what for what, there in (("config.json with its labels (id2label)", bool(labels)),
                                        ("preprocessor_config.json", processor.is_file())) if not there]
    if missing:
        pipeline = " but a diffusers pipeline (model_index.json)" if (folder / "model_index.json").is_file() else ""
        raise InvalidInput(f"The safety model {source} is not an image classifier{pipeline}: its folder has no "
                           f"{' and no '.join(missing)}. Choose an NSFW image classifier (such as "
                           "Falconsai/nsfw_image_detection, or a folder saved by transformers' save_pretrained) in "
                           "Settings → Generation aids (`settings aids --safety-model` from the command line).")
    return labels
