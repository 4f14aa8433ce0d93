"""Settings → Storage → Former users: an admin sees the users taken off the sign-in list who still own things and
forgets one, confirmed first; nobody else sees them or forgets anyone."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from masuka.config import Config
from masuka.datasets.library import create_dataset
from masuka.server import launch
from masuka.studio import Studio
from masuka.ui import settings
from tests.conftest import free_port

ADMIN, BOB = gr.Request(username="admin"), gr.Request(username="bob")


@pytest.fixture
def team(tmp_path):
    data = tmp_path / "data"
    before = Studio.open(Config.from_env(data_dir=data, auth="admin:pw-admin,bob:pw-bob,alice:pw-alice"))
    try:
        create_dataset(before, "faces", "alice")
        create_dataset(before, "faces", "bob")
    finally:
        before.close()
    studio = Studio.open(Config.from_env(data_dir=data, auth="admin:pw-admin,bob:pw-bob"))  # alice taken off
    yield studio
    studio.close()


def test_an_admin_forgets_a_former_user_after_confirming_and_others_cannot(team):
    assert settings.former_users_view(team, BOB).choices == []
    assert settings.former_users_view(team, ADMIN).choices == [("alice (1 item(s))", "alice")]
    with pytest.raises(gr.Error, match="Only an admin can forget a user"):
        settings.ask_forget(team, "alice", BOB)
    with pytest.raises(gr.Error, match="Only an admin can forget a user"):
        settings.confirm_forget(team, "alice", None, BOB)
    with pytest.raises(gr.Error, match="Pick a user"):
        settings.ask_forget(team, "", ADMIN)
    with pytest.raises(gr.Error, match="'bob' owns nothing here or is on the sign-in list"):
        settings.ask_forget(team, "bob", ADMIN)
    shown, question, named = settings.ask_forget(team, "alice", ADMIN)
    assert shown.visible and "Delete everything **alice** owns (1 item(s))" in question and named == "alice"
    with pytest.raises(gr.Error, match="This confirmation was for 'alice', who is no longer picked"):
        settings.confirm_forget(team, "bob", named, ADMIN)
    assert team.store.count("datasets") == 2
    assert settings.confirm_forget(team, "alice", named, ADMIN) == "Forgot **alice**: deleted 1 dataset."
    assert [row["owner"] for row in team.store.find("datasets")] == ["bob"]
    assert settings.former_users_view(team, ADMIN).choices == []


def test_through_the_api_only_an_admin_forgets_a_former_user(team):
    app = launch(team.config, "127.0.0.1", free_port(), block=False)
    try:
        with pytest.raises(AppError, match="Only an admin can forget a user"):
            Client(app.url, auth=("bob", "pw-bob"), verbose=False).predict("alice", api_name="/forget_user")
        admin = Client(app.url, auth=("admin", "pw-admin"), verbose=False)
        assert admin.predict("alice", api_name="/forget_user") == "Forgot **alice**: deleted 1 dataset."
        assert [row["owner"] for row in app.studio.store.find("datasets")] == ["bob"]
    finally:
        app.close()
