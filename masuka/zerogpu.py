"""Hugging Face ZeroGPU Spaces: the GPU time each request asks for, and how a GPU function's call crosses into
the GPU worker.

On ZeroGPU a function decorated with ``spaces.GPU`` runs in a worker process forked from the app (kept for the
next call while idle) that gets a GPU slice for the duration it asks for; the visitor's quota is checked
against that duration before it starts. So each request asks for what it needs (:func:`request_seconds`:
steps, size, images, task), and a request that needs more than one call may take (``MASUKA_ZEROGPU_MAX_S``) is
refused before it runs, with the reason. The Space's model is placed at start-up by
:mod:`masuka.image.space_model`.

``spaces`` pickles the call's arguments to the worker and its result back (:func:`gpu_task`). What lives in
the app since start-up (the studio, its store, the Space's pipeline: :func:`shared`) crosses as a reference
to the worker's forked copy, which opens its own database connection; callbacks cross as recorders whose calls
are replayed in the app when the task returns; stop events do not cross (a job's stop flag in the database
still reaches it). A MASUKA error raised in the worker is raised again in the app with its message.
"""

from __future__ import annotations

import functools
import os
import pickle
import threading
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from masuka.config import on_zerogpu, space_model, zerogpu_aoti, zerogpu_max_seconds
from masuka.errors import InvalidInput

#: The longest GPU call MASUKA asks for by default (ZeroGPU's default is 60 s; visitors' daily quotas are minutes).
DEFAULT_MAX_SECONDS = 120
#: Seconds per denoising step per megapixel on ZeroGPU's H200 slice, with a margin over published figures
#: (FLUX.1-dev 1024² 28 steps in about 5 s on an H200; SDXL 30 steps in about 2 s).
STEP_SECONDS = {"flux": 0.25, "sd3": 0.25, "sdxl": 0.08}
#: Fixed seconds of a task: moving the weights in, text encoding, VAE decode and saving.
FIXED_SECONDS = 10
#: A caption pass: loading the captioner inside the GPU task, then seconds per image.
CAPTION_LOAD_SECONDS, CAPTION_SECONDS = 30, 2
#: A model other than the Space's loads inside the GPU task: seconds per GB of its weights (none known: 20 GB).
LOAD_SECONDS_PER_GB, UNKNOWN_MODEL_GB = 1.0, 20.0


def max_seconds() -> int:
    return zerogpu_max_seconds(DEFAULT_MAX_SECONDS)


def request_seconds(task: str, *, steps: int = 0, width: int = 0, height: int = 0, images: int = 1,
                    architecture: str | None = None, load_gb: float = 0.0) -> int:
    """The GPU seconds a request asks ZeroGPU for (``load_gb``: weights loaded inside the task, for a model that
    is not the Space's); raises :class:`InvalidInput` when one call may not take that long, so the request is
    refused before any GPU time is spent (or quota checked)."""
    if task == "image":
        megapixels = width * height / 2**20
        seconds = (FIXED_SECONDS + load_gb * LOAD_SECONDS_PER_GB
                   + images * steps * max(megapixels, 0.25) * STEP_SECONDS.get(architecture or "", 0.25))
        remedy = "use fewer steps, a smaller size or fewer images" + (", or the Space's own model" if load_gb else "")
    elif task == "caption":
        seconds = CAPTION_LOAD_SECONDS + images * CAPTION_SECONDS
        remedy = "caption fewer images at a time"
    else:
        raise ValueError(f"unknown ZeroGPU task {task!r}")
    seconds, limit = int(seconds + 0.999), max_seconds()
    if seconds > limit:
        raise InvalidInput(f"This request needs about {seconds} s of GPU time, more than the {limit} s one ZeroGPU "
                           f"call may take on this Space: {remedy}.")
    return seconds


def is_space_model(model_id: str) -> bool:
    """Whether ``model_id`` is the model the Space loaded at start-up (``MASUKA_SPACE_MODEL``)."""
    from masuka.models.catalog import resolve_image_model

    named = space_model()
    return bool(named) and resolve_image_model(named).id == model_id


def image_load_gb(model_id: str, vram_gb: float | None) -> float:
    """GB of weights an image request loads inside its GPU task on ZeroGPU: none for the Space's model."""
    return 0.0 if is_space_model(model_id) else vram_gb or UNKNOWN_MODEL_GB


def check_space_request(model_id: str, fast: bool, memory_plan: str, loras: bool) -> None:
    """On ZeroGPU, refuse what the Space cannot do: the Fast path and memory plans (a ZeroGPU slice runs the
    model as placed at start-up, uncompiled by ``torch.compile``), and LoRAs on a transformer compiled ahead of
    time (its compiled program does not run the LoRA layers)."""
    if not on_zerogpu():
        return
    if fast or memory_plan not in ("auto", "full"):
        raise InvalidInput("On this ZeroGPU Space the model runs as ZeroGPU places it: turn Fast off and leave the "
                           "memory plan on auto.")
    if loras and zerogpu_aoti() and is_space_model(model_id):
        raise InvalidInput("LoRAs do not apply to this Space's model: its transformer is compiled ahead of time "
                           "(MASUKA_ZEROGPU_AOTI=1). Use a Space without it for LoRAs.")


def caption_chunks(todo: list) -> list[list]:
    """A caption pass's images in the groups one GPU call each captions: all at once off ZeroGPU; on ZeroGPU as
    many as one call may caption (a dataset of any size is captioned in several calls)."""
    size = max(1, (max_seconds() - CAPTION_LOAD_SECONDS) // CAPTION_SECONDS) if on_zerogpu() else len(todo) or 1
    return [todo[start:start + size] for start in range(0, len(todo), size)]


# -- crossing into the GPU worker ------------------------------------------------------------------------------
_SHARED: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
#: what crosses as a callback (a pipeline is callable too, but is not one)
CALLBACKS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)


def shared(value: Any) -> Any:
    """Mark ``value`` (made in the app before any GPU call: the studio, the Space's pipeline) to cross into GPU
    tasks as a reference to the worker's own forked copy instead of being pickled; returns it."""
    _SHARED[id(value)] = value
    return value


@dataclass(frozen=True)
class _Shared:
    key: int


@dataclass(frozen=True)
class _Callback:
    index: int


@dataclass(frozen=True)
class _Job:
    store: _Shared
    job_id: int
    watch: _Callback | None


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    calls: list[tuple[int, tuple]] = field(default_factory=list)


def gpu_task(func: Callable, duration: int | Callable[..., int]) -> Callable:
    """``func`` run by ``spaces.GPU`` for the seconds ``duration`` gives (computed here, in the app, so a
    refusal costs nothing), its arguments and result made to cross the process boundary."""
    import spaces

    def in_worker(_seconds: int, args: tuple, kwargs: dict) -> _Outcome:
        outcome = _Outcome()

        def record(index: int) -> Callable:
            return lambda *values: outcome.calls.append((index, values))

        try:
            outcome.value = func(*(_attached(a, record) for a in args),
                                 **{k: _attached(v, record) for k, v in kwargs.items()})
        except Exception as error:
            outcome.error = _picklable(error)
        return outcome

    in_worker.__name__ = in_worker.__qualname__ = func.__name__
    on_gpu = spaces.GPU(duration=lambda seconds, *_args, **_kwargs: seconds)(in_worker)

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        seconds = duration(*args, **kwargs) if callable(duration) else duration
        callbacks: list[Callable] = []
        outcome = on_gpu(seconds, tuple(_detached(a, callbacks) for a in args),
                         {k: _detached(v, callbacks) for k, v in kwargs.items()})
        for index, values in outcome.calls:
            callbacks[index](*values)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    return call


def _detached(value: Any, callbacks: list[Callable]) -> Any:
    """``value`` as it crosses into the worker (in the app)."""
    from masuka.jobs import JobContext

    if id(value) in _SHARED and _SHARED.get(id(value)) is value:
        return _Shared(id(value))
    if isinstance(value, threading.Event):
        return None
    if isinstance(value, JobContext):
        return _Job(_detached(value.store, callbacks), value.job_id, _detached(value.watch, callbacks))
    if isinstance(value, CALLBACKS):
        callbacks.append(value)
        return _Callback(len(callbacks) - 1)
    return value


def _attached(value: Any, record: Callable[[int], Callable]) -> Any:
    """``value`` as the function sees it (in the worker)."""
    from masuka.jobs import JobContext

    if isinstance(value, _Shared):
        found = _SHARED.get(value.key)
        if found is None:
            raise RuntimeError("This GPU worker was started before the app had finished starting: try again.")
        _own_connection(found)
        return found
    if isinstance(value, _Job):
        return JobContext(_attached(value.store, record), value.job_id, watch=_attached(value.watch, record))
    if isinstance(value, _Callback):
        return record(value.index)
    return value


def _own_connection(value: Any) -> None:
    """A studio or store reached from a forked worker uses a database connection of its own."""
    store = getattr(value, "store", value)
    if hasattr(store, "reconnect_after_fork"):
        store.reconnect_after_fork()


def _picklable(error: Exception) -> Exception:
    """``error``, or a RuntimeError with its text when it cannot be sent back."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error} (in the GPU worker, process {os.getpid()})")
    return error
