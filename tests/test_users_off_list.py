"""A user taken off the sign-in list: as the app starts again, their API tokens are deleted (a user added back
under the same name does not inherit them) and their work that no provider has accepted is cancelled, while a
remote job a provider accepted is still collected; a job queued later by a command with an older list is cancelled
when the app's worker would take it."""

from __future__ import annotations

import logging

import httpx
import pytest

from masuka import jobs
from masuka.api.auth import create_token
from masuka.config import Config
from masuka.image.generate import ImageRequest
from masuka.off_list import retire_off_list
from masuka.queue.jobs import claim, control_job, queue_images
from masuka.server import launch
from masuka.studio import Studio
from masuka.users import OFF_LIST
from tests.conftest import free_port

BOTH = "alice:pw-alice,bob:pw-bob"
BOB = "bob:pw-bob"


def config(data, auth: str) -> Config:
    return Config.from_env(data_dir=data, auth=auth)


def image_job(studio: Studio, model, owner: str, prompt: str = "a red fox") -> int:
    request = ImageRequest(prompt=prompt, model=str(model), steps=1, width=64, height=64, seed=3, owner=owner)
    return queue_images(studio, request, allow_any_path=True)[0]


def queue_row(studio: Studio, job_id: int) -> tuple[str, str | None]:
    row = studio.store.existing("queue", job_id)
    return row["status"], row["error"]


def job_row(studio: Studio, job_id: int) -> tuple[str, str | None]:
    row = jobs.get(studio.store, job_id)
    return row.status, row.error


def test_the_app_restarted_without_a_user_deletes_their_tokens_and_cancels_their_queue(tmp_path, tiny_model,
                                                                                       caplog):
    """The reviewer's case: alice is taken off the list and the app restarted; later a new alice (a new password)
    is added. Her old token opens nothing, and her image job and queued download never ran."""
    data = tmp_path / "data"
    before = Studio.open(config(data, BOTH))
    try:
        tokens = {user: create_token(before, user, "laptop") for user in ("alice", "bob")}
        alices_image = image_job(before, tiny_model("flux"), "alice")
        alices_download = jobs.create(before.store, "download", "alice", title="Download acme/none",
                                      model="acme/none", params={"repo": "acme/none", "without": []},
                                      lane="download", queued_at="2026-01-01T00:00:00")
    finally:
        before.close()

    caplog.set_level(logging.WARNING, logger="masuka.users")
    app = launch(config(data, BOB), "127.0.0.1", free_port(), block=False)
    try:
        owners = [row["owner"] for row in app.studio.store.find("api_tokens")]
        assert owners == ["bob"]
        assert queue_row(app.studio, alices_image) == ("cancelled", OFF_LIST)
        assert job_row(app.studio, alices_download) == ("cancelled", OFF_LIST)
        assert app.studio.store.find("generations") == []
        assert "1 API token(s) deleted, 1 queued image job(s) [1] and 1 background job(s)" in caplog.text
    finally:
        app.close()

    app = launch(config(data, "alice:a-new-password,bob:pw-bob"), "127.0.0.1", free_port(), block=False)
    try:
        def options(authorization: str) -> int:
            return httpx.get(f"{app.url}sdapi/v1/options", headers={"Authorization": authorization},
                             timeout=30).status_code

        assert options(f"Bearer {tokens['alice']}") == 401  # the new alice never made it
        assert options(f"Bearer {tokens['bob']}") == 200
        assert httpx.get(f"{app.url}sdapi/v1/options", auth=("alice", "a-new-password"), timeout=30).status_code \
            == 200
        assert queue_row(app.studio, alices_image)[0] == "cancelled"  # not taken up by the new alice's app either
    finally:
        app.close()


def test_start_up_cancels_only_work_no_provider_accepted_and_no_live_process_runs(tmp_path, tiny_model):
    data = tmp_path / "data"
    before = Studio.open(config(data, BOTH))
    model = tiny_model("flux")
    try:
        queued, paused, bobs = (image_job(before, model, "alice", "one"), image_job(before, model, "alice", "two"),
                                image_job(before, model, "bob"))
        control_job(before, "alice", "pause", paused)
        store = before.store
        local_run = jobs.create(store, "train", "alice", status="interrupted", params={"backend": "local"})
        unsent_video = jobs.create(store, "video", "alice", status="running", provider="runway",
                                   state={"phase": "queued", "segments": []})
        paid_video = jobs.create(store, "video", "alice", status="running", provider="runway", external_id="job1",
                                 state={"phase": "running", "segments": [{"ref": {"id": "job1"}}]})
        paid_run = jobs.create(store, "train", "alice", status="interrupted", external_id="r1",
                               params={"backend": "fal"}, state={"backend": "fal", "ref": {"id": "r1"}})
        bobs_run = jobs.create(store, "train", "bob", status="interrupted", params={"backend": "local"})
    finally:
        before.close()
    cli = Studio.open(config(data, BOTH))  # a command with the old list, running alice's caption pass now
    after = Studio.open(config(data, BOB))
    try:
        running_here = cli.runner().create("caption", "alice", status="running")
        retire_off_list(after)
        assert [queue_row(after, job) for job in (queued, paused, bobs)] == [
            ("cancelled", OFF_LIST), ("cancelled", OFF_LIST), ("queued", None)]
        assert [job_row(after, job) for job in (local_run, unsent_video, running_here)] == [
            ("cancelled", OFF_LIST), ("cancelled", OFF_LIST), ("running", None)]
        # a provider charges for these: they are followed and collected, not thrown away
        assert [jobs.get(after.store, job).status for job in (paid_video, paid_run)] == ["running", "interrupted"]
        assert job_row(after, bobs_run)[0] == "interrupted"
    finally:
        after.close()
        cli.close()


def test_only_the_app_s_worker_cancels_a_job_its_sign_in_list_does_not_name(tmp_path, tiny_model):
    data = tmp_path / "data"
    both = Studio.open(config(data, BOTH))  # a shell (or an app) whose MASUKA_AUTH names alice and bob
    bob_only = Studio.open(config(data, BOB))  # one that names bob alone
    try:
        alices = image_job(both, tiny_model("flux"), "alice")
        # `queue run` with bob alone on its list: it does not know alice, so it neither takes nor cancels her job
        assert claim(bob_only) is None and queue_row(both, alices) == ("queued", None)
        # the app started with alice taken off the list, her job queued by a command with the old list: its worker
        # takes bob's and cancels hers
        bobs = image_job(both, tiny_model("flux"), "bob")
        taken = claim(bob_only, cancel_off_list=True)
        assert taken is not None and taken["id"] == bobs and taken["owner"] == "bob"
        assert queue_row(both, alices) == ("cancelled", OFF_LIST)
        assert claim(bob_only, cancel_off_list=True) is None and claim(both) is None
    finally:
        bob_only.close()
        both.close()


def test_nothing_changes_without_sign_in_and_the_shared_owner_s_work_stays_when_it_is_turned_on(tmp_path, tiny_model):
    data = tmp_path / "data"
    single = Studio.open(config(data, ""))
    try:
        create_token(single, "local", "script")
        job = image_job(single, tiny_model("flux"), "local")
        retire_off_list(single)
        assert queue_row(single, job) == ("queued", None) and len(single.store.find("api_tokens")) == 1
    finally:
        single.close()
    team = Studio.open(config(data, BOTH))
    try:
        create_token(team, "bob", "laptop")
        # sign-in turned on: ``local`` is the shared owner (a command without --user queues as it), not a user
        # taken off the list: its queued job runs, and its token stays, opening nothing while sign-in is on
        retire_off_list(team)
        assert sorted(row["owner"] for row in team.store.find("api_tokens")) == ["bob", "local"]
        assert queue_row(team, job) == ("queued", None)
        taken = claim(team)
        assert taken is not None and taken["id"] == job
    finally:
        team.close()


@pytest.mark.parametrize("auth", ["", BOTH])
def test_tokens_and_jobs_of_listed_users_are_kept(tmp_path, tiny_model, auth):
    studio = Studio.open(config(tmp_path / "data", auth))
    owner = "bob" if auth else "local"
    try:
        create_token(studio, owner, "laptop")
        job = image_job(studio, tiny_model("flux"), owner)
        retire_off_list(studio)
        assert len(studio.store.find("api_tokens")) == 1
        taken = claim(studio)
        assert taken is not None and taken["id"] == job
    finally:
        studio.close()
