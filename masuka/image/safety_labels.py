"""Which classifiers can be the safety check's: one with an unsafe label among its ``id2label``, checked from its
``config.json`` when it is saved in Settings and before a generation, and again when it loads."""

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
    """Refuse (:class:`InvalidInput`) a classifier without an unsafe label, read from its ``config.json`` when it is
    a folder or in the download cache, without loading it; one not downloaded yet is checked when it loads."""
    from masuka.models.hub import cached_file

    folder = Path(source).expanduser()
    try:
        config = folder / "config.json" if folder.is_dir() else cached_file(source, "config.json")
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
