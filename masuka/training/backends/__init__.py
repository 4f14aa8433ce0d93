"""Where a LoRA trains: ``local`` (this machine's GPU) or a remote service that trains it on its own GPUs.

A remote backend is a module here named after its id (``fal``, ``replicate``) whose
:class:`~masuka.training.backends.base.RemoteTrainer` subclass declares its service (key, base URL); what each
offers (routes, base models, input defaults, prices) is catalog data in ``assets/remote_trainers.json``, so a
new trainer route is a catalog entry.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from masuka.errors import InvalidInput
from masuka.services import declared_classes

if TYPE_CHECKING:
    from masuka.training.backends.base import RemoteTrainer

LOCAL = "local"
CATALOG_PATH = Path(__file__).resolve().parents[3] / "assets" / "remote_trainers.json"


@functools.cache
def trainer_catalog() -> dict[str, dict]:
    """Backend id -> ``name``, ``poll_s`` and its ``trainers`` (keyed by the base model they train)."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


REMOTE_BACKENDS = tuple(trainer_catalog())
BACKENDS = (LOCAL, *REMOTE_BACKENDS)


@functools.cache
def remote_backends() -> dict[str, type[RemoteTrainer]]:
    """Backend id -> its :class:`RemoteTrainer` class, in catalog order."""
    from masuka.training.backends.base import RemoteTrainer

    # mypy refuses an abstract class as type[T] (python/mypy#4717); the abstract base is what is meant
    return declared_classes(__name__, REMOTE_BACKENDS, RemoteTrainer)  # type: ignore[type-abstract]


def check_backend(backend: str) -> str:
    backend = (backend or LOCAL).strip().lower()
    if backend not in BACKENDS:
        raise InvalidInput(f"Unknown training backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    return backend


def trainer_entry(backend: str, base: str) -> dict:
    """The catalog entry that trains ``base`` on ``backend``; :class:`InvalidInput` names the bases it offers."""
    trainers = trainer_catalog()[backend]["trainers"]
    if base not in trainers:
        raise InvalidInput(f"{trainer_catalog()[backend]['name']} trains LoRAs for {', '.join(trainers)} "
                           f"(got base {base!r}).")
    return trainers[base]


def estimate_usd(entry: dict, steps: int) -> float:
    """The catalog's estimated price of a run of ``steps`` steps."""
    return round(float(entry["price_per_step"]) * steps, 2)
