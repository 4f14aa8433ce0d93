"""``models download --json`` reports a model the cache already holds as a finished download does: its path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masuka.cli import main
from tests.models.fake_hub import hub_online
from tests.models.test_download import repos


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with hub_online(monkeypatch, repos(), tmp_path / "hf-cache") as fake:
        yield fake


def test_downloading_a_complete_model_again_reports_its_snapshot_path_like_the_download(studio, hub, monkeypatch,
                                                                                         capsys):
    from huggingface_hub import constants

    command = ["models", "download", "acme/tiny-pipe", "--json", "--data-dir", str(studio.config.data_dir)]
    assert main(command) == 0
    downloaded = json.loads(capsys.readouterr().out)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the cache alone answers
    assert main(command) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == downloaded
    assert again["model"] == "acme/tiny-pipe" and again["downloaded"] is True and again["size_bytes"] > 0
    assert (Path(again["path"]) / "transformer" / "model.safetensors").is_file()
    assert len(studio.store.find("jobs")) == 1, "the second made no job"
