"""A stand-in for Hugging Face's ``spaces`` package (ZeroGPU), for tests: ``GPU`` runs the function in-process on
pickled copies of its arguments (the real one sends them to a forked worker) and records each call with the
duration it asked for, and the Gradio request it was made in (:data:`requests`); ``gradio_auto_wrap`` returns each
event's function as it is; ``aoti_capture`` / ``aoti_compile`` / ``aoti_apply`` do what the real ones do on the CPU
(the captured call is cancelled; the "compiled" model is the exported program, saved and loaded by ``torch.export``
without AOTInductor's C++ build; ``aoti_apply`` empties the module's own weights as the real one does)."""

from __future__ import annotations

import functools
import io
import pickle
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import Any

#: One dict per event: {"event": "gpu", "function": name, "duration": seconds} or {"event": "aoti_compile"}, …
calls: list[dict[str, Any]] = []
#: One entry per GPU call: the Gradio request of the thread that made it (``gradio.context.LocalContext.request``),
#: None outside one. The real ``GPU`` reads the same variable in the calling thread (spaces 0.51.3,
#: ``spaces.zero.wrappers.regular_function_wrapper``: ``request_var.get(None)``) and sends that request's
#: ``X-IP-Token`` header with the schedule call, so the call is charged to the visitor's quota; without a request
#: it sends none.
requests: list[Any] = []


def GPU(func=None, *, duration: Any = 60):  # the real package's name
    """As the real one: the arguments are pickled to the worker and the result back (here a round trip through
    the same pickler, in this process: what cannot cross fails here too, and the function works on copies)."""
    def decorate(target):
        @functools.wraps(target)
        def run(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            calls.append({"event": "gpu", "function": target.__name__, "duration": seconds})
            requests.append(_gradio_request())
            args, kwargs = _crossed((args, kwargs))
            return _crossed(target(*args, **kwargs))

        return run

    return decorate(func) if func is not None else decorate


def _gradio_request():
    from gradio.context import LocalContext

    return LocalContext.request.get(None)


def gradio_auto_wrap(function):
    """Gradio passes each event's function through this when ``SPACE_ID`` is set (``gradio.block_function``); the
    real one adds ZeroGPU's error reporting around it."""
    return function


def _crossed(value):
    return pickle.loads(ForkingPickler.dumps(value))


@dataclass
class Call:
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class _Captured(Exception):
    pass


@contextmanager
def aoti_capture(module):
    """Catch the first call of ``module``: its inputs go to ``call.args`` / ``call.kwargs``; the call is cancelled."""
    call = Call()

    def capture(*args, **kwargs):
        call.args, call.kwargs = args, kwargs
        raise _Captured

    module.forward = capture
    try:
        yield call
    except _Captured:
        pass
    finally:
        del module.forward
    calls.append({"event": "aoti_capture", "kwargs": sorted(call.kwargs)})


class CompiledModel:
    """What ``aoti_compile`` returns, as the real one's: picklable (the program and its weights as bytes), loaded
    on its first call in the process that calls it."""

    def __init__(self, archive: bytes):
        self.archive = archive
        self._program = None

    def __call__(self, *args, **kwargs):
        if self._program is None:
            import torch

            self._program = torch.export.load(io.BytesIO(self.archive)).module()
        return self._program(*args, **kwargs)

    def __reduce__(self):
        return CompiledModel, (self.archive,)


def aoti_compile(exported):
    import torch

    calls.append({"event": "aoti_compile", "dynamic": bool(exported.range_constraints)})
    archive = io.BytesIO()
    torch.export.save(exported, archive)
    return CompiledModel(archive.getvalue())


def aoti_apply(compiled, module):
    """As the real one: the compiled program becomes the module's ``forward`` and the module's own weights are
    emptied (the program carries them)."""
    import torch

    calls.append({"event": "aoti_apply", "module": type(module).__name__})
    module.forward = compiled
    for parameter in module.parameters():
        parameter.data = torch.empty(0, dtype=parameter.dtype)
