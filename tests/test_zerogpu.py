"""The ZeroGPU shim: a no-op off Spaces, ``spaces.GPU`` with a duration estimate on ZeroGPU."""

from __future__ import annotations

import sys
import types

from masuka.gpu import zerogpu


def work(steps: int) -> int:
    return steps * 2


def test_no_op_outside_zerogpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert zerogpu(duration=lambda steps: steps)(work) is work


def test_wraps_with_spaces_gpu_and_estimate_on_zerogpu(monkeypatch):
    seen = {}

    def gpu(duration):
        def decorate(func):
            def wrapped(*args):
                seen["duration"] = duration(*args) if callable(duration) else duration
                return func(*args)
            return wrapped
        return decorate

    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu, __spec__=object()))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    wrapped = zerogpu(duration=lambda steps: 10 + steps)(work)
    assert wrapped(7) == 14 and seen["duration"] == 17
