"""An unreachable Hub is found out once, by one fast probe remembered for a minute, and loading fails in
seconds with the usual message; HF_HUB_OFFLINE means no probe at all."""

from __future__ import annotations

import pytest

from masuka.errors import ModelUnavailable
from masuka.gpu import device_plan
from masuka.image.pipelines import load_pipeline
from masuka.models.catalog import resolve_image_model
from masuka.models.hub import hub_reachable
from masuka.testing.http import FakeServer, Reply
from tests.conftest import free_port


@pytest.fixture
def online(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_a_reachable_hub_is_probed_once_a_minute(online, monkeypatch):
    with FakeServer(lambda request: Reply(200, [])) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert hub_reachable() and hub_reachable() and hub_reachable()
        assert len(hub.requests) == 1


def test_an_unreachable_hub_fails_a_load_at_once_with_the_usual_message(online, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert not hub_reachable()
    spec = resolve_image_model("acme/not-downloaded")
    with pytest.raises(ModelUnavailable, match="not downloaded and the Hugging Face Hub cannot be reached"):
        load_pipeline(spec, device_plan())


def test_hf_hub_offline_means_no_probe(monkeypatch):
    with FakeServer(lambda request: Reply(200, [])) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert not hub_reachable()  # HF_HUB_OFFLINE=1 in every test
        assert hub.requests == []
