"""Fixtures of the speed area: tiny LoRAs, and compiling with a backend that only traces (seconds on a CPU)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory):
    """``tiny_lora("flux", seed, rank)`` -> a random LoRA file that fits the tiny pipeline of that architecture."""
    from masuka.models.synthetic import save_tiny_lora

    folder = tmp_path_factory.mktemp("tiny-loras")

    def make(architecture: str, seed: int = 1, rank: int = 4):
        path = folder / f"{architecture}-{seed}-r{rank}.safetensors"
        return path if path.exists() else save_tiny_lora(architecture, path, rank=rank, seed=seed)

    return make


@pytest.fixture
def tracing_compiler(monkeypatch):
    """``torch.compile`` through dynamo with the ``eager`` backend: the same graphs and guards (so recompiles
    are caught) without generating kernels, which takes minutes on a small CPU."""
    import torch


    monkeypatch.setenv("MASUKA_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
