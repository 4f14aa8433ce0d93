"""One app per module for the reliability suite, with canary secrets it must never echo."""

from __future__ import annotations

import pytest

CANARIES = {"OPENAI_API_KEY": "sk-canary-openai-7f3a9c", "HF_TOKEN": "hf_canaryTOKEN5521",
            "FAL_KEY": "fal-canary-0b1e"}


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    """Instead of no keys at all: canary keys only, so a leak would show in any response or log."""
    from masuka.keys import services

    for names in (declared.key_env for declared in services().values()):
        for name in names:
            monkeypatch.delenv(name, raising=False)
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory, tiny_model):
    """The real app with auth off, canary keys set, and a tiny Flux model; yields (running, model path)."""
    from masuka.config import Config
    from masuka.server import launch
    from tests.conftest import free_port

    monkeypatch = pytest.MonkeyPatch()
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    root = tmp_path_factory.mktemp("hostile")
    running = launch(Config.from_env(data_dir=root / "data", auth=""), port=free_port(), block=False)
    yield running, tiny_model("flux")
    running.close()
    monkeypatch.undo()
