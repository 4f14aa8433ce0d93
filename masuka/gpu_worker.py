"""How a GPU function's call crosses into a Hugging Face ZeroGPU worker and back.

``spaces.GPU`` runs the function in a worker process forked from the app (kept for the next call while idle)
and pickles the call's arguments to it and its result back (:func:`gpu_task`). What lives in the app since
start-up (the studio, its store, the Space's pipeline: :func:`shared`) crosses as a reference to the worker's
forked copy, which opens its own database connection; callbacks cross as recorders whose calls are replayed in
the app when the task returns; stop events do not cross (a job's stop flag in the database still reaches it).
A MASUKA error raised in the worker is raised again in the app with its message.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        if hasattr(found, "in_this_process"):  # a studio or store: a database connection (and locks) of its own
            found.in_this_process()
        return found
    if isinstance(value, _Job):
        return JobContext(_attached(value.store, record), value.job_id, watch=_attached(value.watch, record))
    if isinstance(value, _Callback):
        return record(value.index)
    return value


def _picklable(error: Exception) -> Exception:
    """``error``, or a RuntimeError with its text when it cannot be sent back as it is (a copy is made the way
    pickling makes one)."""
    try:
        if str(copy.deepcopy(error)) != str(error):
            raise TypeError("rebuilt with another message")
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error} (in the GPU worker, process {os.getpid()})")
    return error
