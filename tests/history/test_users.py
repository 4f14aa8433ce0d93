"""Several users on one live app, through gradio_client: each sees and fetches only their own outputs."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client

from masuka.errors import GPUBusy
from masuka.keys import service
from masuka.models.manage import start_download

USERS = "alice:pa-alice,bob:pb-bob,admin:pz-admin"
HISTORY_ARGS = (1, "", [], "", "", "", "", "", 48)


def signed_in(url: str, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    assert client.post("/login", data={"username": user, "password": password}).status_code == 200
    return client


def history_keys(client: Client) -> list[str]:
    _gallery, table = client.predict(*HISTORY_ARGS, api_name="/history")
    return [row[0] for row in table["data"]]


@pytest.fixture(scope="module")
def app_with_image(tmp_path_factory, tiny_model):
    """One live app for the module, with one image made by alice."""
    from masuka.config import Config
    from masuka.server import launch
    from tests.conftest import free_port

    config = Config.from_env(data_dir=tmp_path_factory.mktemp("users") / "data", auth=USERS)
    running = launch(config, host="127.0.0.1", port=free_port(), block=False)
    alice = Client(running.url, auth=("alice", "pa-alice"), verbose=False, download_files=False)
    gallery, seeds, _status = alice.predict("a cabin in the woods", str(tiny_model("flux")), "", 2, 3.5, 64, 64, 9, 1,
                                            [], api_name="/generate_image")
    yield running, alice, gallery[0]["image"]["url"]
    running.close()


def test_each_user_sees_only_their_own_history(app_with_image):
    running, alice, _url = app_with_image
    bob = Client(running.url, auth=("bob", "pb-bob"), verbose=False)
    admin = Client(running.url, auth=("admin", "pz-admin"), verbose=False)
    keys = history_keys(alice)
    assert len(keys) == 1
    assert history_keys(bob) == []
    assert history_keys(admin) == keys
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(keys[0], api_name="/history_entry")
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(keys[0], api_name="/history_delete")
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(keys[0], api_name="/history_export")
    assert history_keys(alice) == keys


def test_another_users_file_url_is_refused(app_with_image):
    running, _alice, url = app_with_image
    path = url.split("/file=", 1)[1]
    assert "/outputs/alice/" in path and running.studio.config.outputs_dir.as_posix() in path
    assert signed_in(running.url, "alice", "pa-alice").get(url).status_code == 200
    assert signed_in(running.url, "admin", "pz-admin").get(url).status_code == 200
    refused = signed_in(running.url, "bob", "pb-bob").get(url)
    assert refused.status_code == 403 and refused.content[:4] != b"\x89PNG"
    assert httpx.get(url, timeout=30).status_code in (401, 403)


def test_reuse_fills_the_image_form_for_the_owner_only(app_with_image):
    running, alice, _url = app_with_image
    key = history_keys(alice)[0]
    reuse = alice.predict(key, api_name="/history_reuse")
    kind, fields = reuse["kind"], reuse["fields"]
    assert kind == "image" and fields["prompt"] == "a cabin in the woods"
    assert 9 in fields.values() and 64 in fields.values()
    bob = Client(running.url, auth=("bob", "pb-bob"), verbose=False)
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(key, api_name="/history_reuse")


def test_each_user_has_a_limit_on_queued_jobs(live_app):
    running = live_app(auth=USERS, max_queued_per_user=2)
    studio = running.studio
    for _ in range(2):
        studio.store.insert("jobs", {"owner": "bob", "kind": "train", "status": "queued", "title": "run"})
    with pytest.raises(GPUBusy, match="limit is 2 per user"):
        start_download(studio, "bob", "acme/model")
    refused = studio.store.find("jobs", "kind = 'download'")[0]
    assert refused["status"] == "failed" and "limit" in refused["error"]
    other = start_download(studio, "alice", "acme/model")  # alice's share is untouched
    assert studio.store.get("jobs", other)["owner"] == "alice"
    resumed = studio.store.insert("jobs", {"owner": "bob", "kind": "video", "status": "running", "title": "clip",
                                           "started_at": "2026-01-01T00:00:00+00:00"})
    studio.jobs.submit(resumed, lambda job: None)  # work started before a restart resumes whatever the count
    assert studio.jobs.wait(resumed, timeout=30)["status"] == "completed"


def test_only_admins_change_keys_and_keys_come_back_masked(app_with_image):
    running, alice, _url = app_with_image
    with pytest.raises(Exception, match="Only an admin"):
        alice.predict("openai", "sk-alice-tries-1111", api_name="/save_key")
    admin = Client(running.url, auth=("admin", "pz-admin"), verbose=False)
    message, cleared, table = admin.predict("openai", "sk-admin-key-2222", api_name="/save_key")
    assert "2222" in message and "sk-admin" not in message and cleared == ""
    assert "sk-admin" not in str(table) and running.studio.keys.get(service("openai")) == "sk-admin-key-2222"


def test_file_ownership_by_folder_and_by_row(tmp_path):
    from masuka.access import may_read
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.users import output_dir, user_folder_name

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:1,a b:2,a_b:3,../x:4"))
    try:
        assert len({user_folder_name(u) for u in ("a b", "a_b", "../x")}) == 3
        # a user named like a folder every user's files share (remote videos, their input copies) gets another one
        assert {user_folder_name(u) for u in ("videos", "images")}.isdisjoint({"videos", "images"})
        assert output_dir(studio.config, "../x").parent == studio.config.outputs_dir
        anns = output_dir(studio.config, "ann") / "images" / "1.png"
        sneaky = output_dir(studio.config, "a_b") / ".." / user_folder_name("ann") / "images" / "1.png"
        legacy = studio.config.outputs_dir / "images" / "old.png"
        studio.store.insert("generations", {"owner": "a b", "kind": "image", "output_path": "outputs/images/old.png"})
        assert may_read(studio, "ann", anns) and not may_read(studio, "a_b", anns)
        assert not may_read(studio, "a_b", sneaky)
        assert may_read(studio, "a b", legacy) and not may_read(studio, "ann", legacy)
        assert not may_read(studio, None, anns)
    finally:
        studio.close()


@pytest.mark.slow
def test_each_user_has_a_limit_on_waiting_image_requests(live_app, tiny_model):
    import time

    running = live_app(auth=USERS, max_queued_per_user=1)
    kw = dict(model=str(tiny_model("flux")), negative_prompt="", guidance=1.0, width=128, height=128, batch=1,
              loras=[], api_name="/generate_image")
    alice = Client(running.url, auth=("alice", "pa-alice"), verbose=False)
    jobs = []
    for seed in range(3):  # the first runs, the second waits, the third is one too many
        jobs.append(alice.submit(prompt="slow", steps=200, seed=seed, **kw))
        time.sleep(0.3)
    bob = Client(running.url, auth=("bob", "pb-bob"), verbose=False)
    assert bob.predict(prompt="bob's turn", steps=1, seed=1, **kw)[2].startswith("Done"), "bob's share is his own"
    refusals = []
    for job in jobs:
        try:
            job.result(timeout=180)
        except Exception as error:  # the refused request: 429 with the reason
            refusals.append(error.response.json()["detail"])
    assert refusals and all("the most one user may queue" in text for text in refusals)
    assert len(refusals) < 3
