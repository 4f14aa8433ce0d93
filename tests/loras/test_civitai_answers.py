"""A CivitAI model version whose parts have other shapes than documented is refused as a non-object answer is."""

from __future__ import annotations

import pytest

from masuka.errors import ProviderError
from masuka.loras.imports import import_from_civitai
from masuka.loras.library import list_loras
from masuka.testing.http import FakeServer, Reply


@pytest.mark.parametrize("details", [
    {"model": "Neon", "files": [{"name": "a.safetensors", "primary": True}]},
    {"model": {"name": "ink"}, "files": {"name": "a.safetensors"}},
    {"model": {"name": "ink"}, "files": ["a.safetensors"]},
    {"model": {"name": "ink"}, "files": [{"name": "a.safetensors", "metadata": "SafeTensor"}]},
    {"model": {"name": "ink"}, "files": [{"name": "a.safetensors", "primary": True}], "trainedWords": [1, 2]},
    {"model": {"name": "ink"}, "files": [], "trainedWords": "neon"},
    {"model": {"name": "ink"}, "files": [], "baseModel": {"name": "Flux.1 D"}},
])
def test_a_version_with_parts_of_other_shapes_is_a_provider_error(studio, monkeypatch, details):
    with FakeServer(lambda request: Reply(200, details)) as server:
        monkeypatch.setenv("MASUKA_CIVITAI_BASE_URL", server.url)
        with pytest.raises(ProviderError, match="CivitAI answered with something other than a JSON object"):
            import_from_civitai(studio, "local", "5")
    assert list_loras(studio, "local") == []
