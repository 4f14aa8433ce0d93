"""Settings → API tokens: each of a user's tokens has its own name, and Revoke says which token it ended."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.api.auth import create_token, list_tokens, revoke_token, token_user
from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.studio import Studio
from masuka.ui import settings


@pytest.fixture
def team(tmp_path):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:pa,bob:pb"))
    yield studio
    studio.close()


def test_a_name_the_user_already_has_is_refused(team):
    create_token(team, "ann", "laptop")
    with pytest.raises(InvalidInput, match="You already have an API token named 'laptop'"):
        create_token(team, "ann", " laptop ")
    assert token_user(team, create_token(team, "bob", "laptop")) == "bob", "another user's names are theirs"
    assert team.store.count("api_tokens", "owner = 'ann'") == 1
    for _ in range(2):  # a token made without a name gets a free one
        create_token(team, "ann")
    assert [row["name"] for row in list_tokens(team, "ann")] == ["laptop", "token-1", "token-2"]


def test_revoke_says_which_token_went_and_empties_the_new_token_box(team):
    ann = gr.Request(username="ann")
    token, _name, _table = settings.create_api_token(team, "krita", ann)
    message, ref, new_token, table = settings.revoke_api_token(team, "krita", ann)
    assert (message, ref, new_token, table) == ("Revoked token 1 (krita).", "", "", [])
    assert token_user(team, token) is None


def test_tokens_that_share_a_name_from_before_are_revoked_by_id(team):
    for _ in range(2):  # as an older MASUKA let them be made
        team.store.insert("api_tokens", {"owner": "ann", "name": "old", "token_hash": "x", "prefix": "msk_abc"})
    with pytest.raises(InvalidInput, match=r"2 of your API tokens go by 'old' \(ids 1, 2\): revoke one by its id"):
        revoke_token(team, "ann", "old")
    assert revoke_token(team, "ann", "2")["id"] == 2 and revoke_token(team, "ann", "old")["id"] == 1
