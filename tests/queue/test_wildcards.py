"""Wildcards edited as Settings does: create, list, read, use in a prompt batch, delete; bad names and other
users refused."""

from __future__ import annotations

import pytest
from gradio_client import Client

from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.image.generate import ImageRequest
from masuka.image.wildcards import delete_wildcard, list_wildcards, read_wildcard, save_wildcard
from masuka.queue.jobs import queue_images
from masuka.studio import Studio


def test_create_list_use_in_a_batch_and_delete(studio, tiny_model):
    assert save_wildcard(studio, "local", "animal", "fox\r\n# a comment\n\ncat\n") == 2
    assert save_wildcard(studio, "local", "__colours/warm__", "red\norange") == 2
    assert list_wildcards(studio) == [{"name": "animal", "values": 2}, {"name": "colours/warm", "values": 2}]
    assert read_wildcard(studio, "animal") == "fox\n# a comment\n\ncat\n"

    request = ImageRequest(prompt="", model=str(tiny_model("flux")), seed=1)
    (job,) = queue_images(studio, request, "a __colours/warm__ __animal__")
    items = studio.store.get("queue", job)["params"]["items"]
    assert sorted(item["prompt"] for item in items) == ["a orange cat", "a orange fox", "a red cat", "a red fox"]

    delete_wildcard(studio, "local", "animal")
    assert [row["name"] for row in list_wildcards(studio)] == ["colours/warm"]
    with pytest.raises(NotFound):
        read_wildcard(studio, "animal")


@pytest.mark.parametrize("name", ["../secrets", "a b", "", ".hidden", "x/../../y", "name.txt", "a" * 65])
def test_bad_names_are_refused(studio, name):
    with pytest.raises(InvalidInput, match="not a wildcard name"):
        save_wildcard(studio, "local", name, "fox")
    assert not any(studio.config.data_dir.parent.rglob("secrets.txt"))


def test_empty_values_and_non_admins_are_refused(tmp_path):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="admin:pw1234567,bob:pw1234567"))
    try:
        with pytest.raises(InvalidInput, match="at least one value"):
            save_wildcard(studio, "admin", "animal", "# only a comment\n")
        with pytest.raises(InvalidInput, match="only an admin"):
            save_wildcard(studio, "bob", "animal", "fox")
        save_wildcard(studio, "admin", "animal", "fox")
        with pytest.raises(InvalidInput, match="only an admin"):
            delete_wildcard(studio, "bob", "animal")
        assert read_wildcard(studio, "animal") == "fox\n"  # everyone's prompts may read it
    finally:
        studio.close()


def test_settings_edit_wildcards_through_the_api(live_app):
    client = Client(live_app().url, verbose=False)
    assert "3 values" in client.predict("__animal__", "fox\ncat\nowl", api_name="/save_wildcard")
    assert client.predict(api_name="/wildcards")["data"] == [["animal", 3]]
    assert client.predict("animal", api_name="/wildcard") == "fox\ncat\nowl\n"
    with pytest.raises(Exception, match="not a wildcard name"):
        client.predict("../x", "fox", api_name="/save_wildcard")
    client.predict("animal", api_name="/delete_wildcard")
    assert client.predict(api_name="/wildcards")["data"] == []
