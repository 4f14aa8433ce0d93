"""Dataset fixtures: tiny captioners saved offline, and a dataset factory on the test studio."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_captioner(tmp_path_factory):
    """``tiny_captioner("florence2"|"blip2")`` -> folder of a tiny random captioner saved with save_pretrained."""
    from tests.datasets.tiny_captioners import save_tiny_blip2, save_tiny_florence2

    builders = {"florence2": save_tiny_florence2, "blip2": save_tiny_blip2}
    built = {}

    def make(family: str):
        if family not in built:
            built[family] = builders[family](tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return make


@pytest.fixture
def make_dataset(studio):
    """``make_dataset(name, trigger=..., **options)`` -> a new dataset row in the test studio."""
    from masuka.datasets.library import create_dataset
    from masuka.store import LOCAL_USER

    def make(name: str = "subject", trigger: str = "sks", template: str | None = None, **options):
        return create_dataset(studio, name, LOCAL_USER, trigger, template, options)

    return make
