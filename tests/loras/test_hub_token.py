"""The Hugging Face token when the key file cannot be read: a gated repo's import says so (a token may be saved
there), and the warning that work goes on without the token comes again after the file was read once more."""

from __future__ import annotations

import logging

import pytest
from safetensors.numpy import save

from masuka.errors import ModelUnavailable
from masuka.key_store import KeyStore
from masuka.loras.imports import import_from_hub
from masuka.services import HUGGINGFACE
from tests.loras.test_imports import flux_lora
from tests.models.fake_hub import TOKEN, FakeRepo, hub_online


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch):
    for env in HUGGINGFACE.key_env:
        monkeypatch.delenv(env, raising=False)


def test_a_gated_import_with_an_unreadable_key_file_names_the_file_not_a_missing_token(studio, monkeypatch):
    studio.keys.set(HUGGINGFACE, TOKEN)
    studio.keys.path.write_text("{not json", encoding="utf-8")
    with hub_online(monkeypatch, {"someone/gated": FakeRepo({"lora.safetensors": save(**flux_lora("zxc"))},
                                                           gated=True)}):
        with pytest.raises(ModelUnavailable) as refused:
            import_from_hub(studio, "local", "someone/gated", "lora.safetensors")
    message = str(refused.value)
    assert "someone/gated is gated" in message and f"key file {studio.keys.path} cannot be read" in message
    assert "it is not valid JSON" in message and "no Hugging Face token is set" not in message


def test_a_gated_import_with_no_key_file_still_says_no_token_is_set(studio, monkeypatch):
    with hub_online(monkeypatch, {"someone/gated": FakeRepo({"lora.safetensors": save(**flux_lora("zxc"))},
                                                           gated=True)}):
        with pytest.raises(ModelUnavailable, match="no Hugging Face token is set"):
            import_from_hub(studio, "local", "someone/gated", "lora.safetensors")


def test_the_unreadable_key_file_is_warned_about_again_once_it_was_read_in_between(tmp_path, caplog):
    keys = KeyStore(tmp_path)
    assert keys.unreadable() is None  # no file yet: nothing wrong
    keys.path.write_text("[1, 2]", encoding="utf-8")
    assert keys.unreadable().startswith(f"The key file {keys.path} cannot be read")

    def warnings() -> int:
        return sum("cannot be read" in record.getMessage() for record in caplog.records)

    with caplog.at_level(logging.WARNING, logger="masuka.key_store"):
        assert keys.optional(HUGGINGFACE) is None and keys.optional(HUGGINGFACE) is None
        assert warnings() == 1  # once, not at every model load
        keys.set(HUGGINGFACE, TOKEN)  # moved aside, a new file saved
        assert keys.optional(HUGGINGFACE) == TOKEN and keys.unreadable() is None
        keys.path.write_text("{broken", encoding="utf-8")
        assert keys.optional(HUGGINGFACE) is None
        assert warnings() == 2, "broken again after it was read: warned again"
