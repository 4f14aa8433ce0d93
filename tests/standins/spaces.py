"""A stand-in for Hugging Face's ``spaces`` package (ZeroGPU), for tests: ``GPU`` runs the function in-process and
records each call with the duration it asked for; ``aoti_capture`` / ``aoti_compile`` / ``aoti_apply`` do what
the real ones do on the CPU (the captured call is cancelled; the "compiled" model is the exported program's
module, without AOTInductor's C++ build)."""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: One dict per event: {"event": "gpu", "function": name, "duration": seconds} or {"event": "aoti_compile"}, …
calls: list[dict[str, Any]] = []


def GPU(func=None, *, duration: Any = 60):  # the real package's name
    def decorate(target):
        @functools.wraps(target)
        def run(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            calls.append({"event": "gpu", "function": target.__name__, "duration": seconds})
            return target(*args, **kwargs)

        return run

    return decorate(func) if func is not None else decorate


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


def aoti_compile(exported):
    calls.append({"event": "aoti_compile", "dynamic": bool(exported.range_constraints)})
    return exported.module()


def aoti_apply(compiled, module):
    calls.append({"event": "aoti_apply", "module": type(module).__name__})
    vars(module)["forward"] = compiled  # an instance attribute: nn.Module would file a Module value as a child
