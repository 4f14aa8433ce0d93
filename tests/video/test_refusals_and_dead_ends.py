"""What a refused or odd answer leaves behind: only the provider's own "this model is gone" is remembered (for a
day, and forgotten when the key is saved or tested again); a task done without a video ends the job; a failed or
cancelled video job can be reused; a rate limit and a download that keeps breaking say what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from masuka.history.actions import reuse_parameters
from masuka.keys import key_renewed
from masuka.testing.video import KEY
from masuka.video.availability import mark_unavailable, unavailable
from masuka.video.jobs import cancel_video, start_video, wait_video
from masuka.video.request import VideoRequest

PROMPT = "a paper boat on a rainy street"
FAL_MODEL = "fal-ai/veo3"


def run(studio, provider: str, model: str, **kw) -> dict:
    return wait_video(studio, start_video(studio, VideoRequest(provider=provider, model=model, prompt=PROMPT, **kw)),
                      timeout=60)


# -- 1. only the provider's own "no such model" marks a model ----------------------------------------------------
#: 404s that say nothing of the model: a wrong base URL (a trailing /v1) reaching a web server or the API's own
#: "no such route" answer
ROUTE_NOT_FOUND = [
    ("fal", FAL_MODEL, {"detail": "Not Found"}),
    ("openai", "sora-2", {"error": {"message": "Invalid URL (POST /v1/v1/videos)", "type": "invalid_request_error",
                                    "param": None, "code": None}}),
    ("gemini", "veo-3.1-generate-001", None),  # the fake's plain {"error": {"message": "injected 404"}}
]


@pytest.mark.parametrize("provider, model, body", ROUTE_NOT_FOUND)
def test_a_404_that_does_not_name_the_model_is_not_remembered(studio, fake, provider, model, body):
    server = fake(provider)
    server.fault("create", 404, body=body)
    refused = run(studio, provider, model)
    assert refused["status"] == "failed" and "HTTP 404" in refused["error"]
    assert "not available to this" not in refused["error"]
    assert unavailable(studio.store, provider, model, KEY) is None
    made = run(studio, provider, model)  # the base URL put right: the model is asked for again
    assert made["status"] == "completed", made["error"]


def test_a_parameter_error_is_not_taken_for_a_gone_model(studio, fake, first_frame):
    """Gemini's 400 for a size its model does not make from a first frame: the words "model" and "not supported"
    of its message and of the raw body together once read as "the model is not supported"."""
    gemini = fake("gemini")
    gemini.fault("create", 400, body={"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                                "The aspect ratio 9:16 is not supported for this model with a "
                                                "first frame."}})
    refused = run(studio, "gemini", "veo-3.1-generate-001", size="720x1280", image=str(first_frame))
    assert refused["status"] == "failed" and "aspect ratio 9:16" in refused["error"]
    assert unavailable(studio.store, "gemini", "veo-3.1-generate-001", KEY) is None
    made = run(studio, "gemini", "veo-3.1-generate-001", size="1280x720")
    assert made["status"] == "completed", made["error"]


@pytest.mark.parametrize("status", [400, 403])
def test_a_model_that_is_only_temporarily_unavailable_is_not_remembered(studio, fake, status):
    runway = fake("runway")
    runway.fault("create", status, body={"error": "Model gen4.5 is temporarily not available, try again later."})
    assert run(studio, "runway", "gen4.5", seconds=5)["status"] == "failed"
    assert unavailable(studio.store, "runway", "gen4.5", KEY) is None


@pytest.mark.parametrize("provider, model", [("fal", FAL_MODEL), ("gemini", "veo-3.1-generate-001"),
                                             ("openai", "sora-2")])
def test_the_providers_own_no_such_model_404_is_still_remembered(studio, fake, provider, model):
    server = fake(provider)
    server.gone_models.add(model)
    row = run(studio, provider, model)
    assert row["status"] == "failed" and f"{model} is not available to this" in row["error"]
    assert "Settings" in row["error"] and unavailable(studio.store, provider, model, KEY)


def test_a_mark_lasts_a_day(studio):
    mark_unavailable(studio.store, "openai", "sora-2", KEY, "sora-2 is not available to this OpenAI key.")
    assert unavailable(studio.store, "openai", "sora-2", KEY)
    [mark] = studio.store.find("model_availability")
    yesterday = (datetime.now(UTC) - timedelta(days=1, minutes=1)).isoformat(timespec="milliseconds")
    studio.store.update("model_availability", mark["id"], created_at=yesterday)
    assert unavailable(studio.store, "openai", "sora-2", KEY) is None
    mark_unavailable(studio.store, "openai", "sora-2", KEY, "refused again")  # a new refusal: a new day
    assert unavailable(studio.store, "openai", "sora-2", KEY) == "refused again"
    assert studio.store.count("model_availability") == 1


def test_testing_or_saving_the_key_in_settings_forgets_its_marks(studio, fake):
    from masuka.ui.settings import save_api_key, test_api_key

    fake("openai")
    for model in ("sora-2", "sora-2-pro"):
        mark_unavailable(studio.store, "openai", model, KEY, f"{model} is not available to this OpenAI key.")
    mark_unavailable(studio.store, "openai", "sora-2", "another-key-0000", "not for that key")
    mark_unavailable(studio.store, "gemini", "veo-3.1-generate-001", KEY, "not for the Gemini key")
    assert test_api_key(studio, "openai", None).startswith("✅")
    assert unavailable(studio.store, "openai", "sora-2", KEY) is None
    assert unavailable(studio.store, "openai", "sora-2-pro", KEY) is None
    assert unavailable(studio.store, "openai", "sora-2", "another-key-0000") == "not for that key"
    assert unavailable(studio.store, "gemini", "veo-3.1-generate-001", KEY)  # another service's key: kept
    mark_unavailable(studio.store, "openai", "sora-2", KEY, "refused again")
    save_api_key(studio, "openai", KEY, None)
    assert unavailable(studio.store, "openai", "sora-2", KEY) is None
    assert key_renewed(studio.store, studio.keys, "huggingface") == 0  # no video provider: nothing to forget


def test_keys_test_in_the_cli_forgets_the_marks_too(studio, fake, capsys):
    from masuka.cli import main

    fake("openai")
    mark_unavailable(studio.store, "openai", "sora-2", KEY, "sora-2 is not available to this OpenAI key.")
    assert main(["keys", "test", "openai", "--data-dir", str(studio.config.data_dir)]) == 0
    assert "accepted the key" in capsys.readouterr().out
    assert unavailable(studio.store, "openai", "sora-2", KEY) is None


# -- 2. a task done without a video ends the job ------------------------------------------------------------------
@pytest.mark.parametrize("task", [{"status": "SUCCEEDED", "output": []}, {"status": "SUCCEEDED"},
                                  {"status": "SUCCEEDED", "output": [""]}])
def test_a_runway_task_that_succeeded_without_a_video_fails_the_job(studio, fake, task):
    runway = fake("runway")
    runway.fault("poll", 200, body={"id": "any", "createdAt": "2026-11-21T00:00:00.000Z", **task}, times=1)
    row = run(studio, "runway", "gen4.5", seconds=5)
    assert row["status"] == "failed" and "Runway returned no video" in row["error"]
    assert runway.creates == 1


def test_any_providers_done_status_without_an_output_fails_the_job(studio, fake, monkeypatch):
    """A provider client that reports ``completed`` with nothing to download (none of ours does now): the job
    fails instead of polling for ever."""
    from masuka.remote.http import open_client
    from masuka.video import jobs
    from masuka.video.providers.base import Status
    from masuka.video.providers.runway import RunwayTasks

    class Hollow(RunwayTasks):
        def poll(self, ref: dict) -> Status:
            status = super().poll(ref)
            return Status(status.state, status.progress) if status.state == "completed" else status

    monkeypatch.setattr(jobs, "open_provider", lambda studio_, _name, owner: open_client(studio_, Hollow, owner))
    fake("runway")
    row = run(studio, "runway", "gen4.5", seconds=5)
    assert row["status"] == "failed" and "returned no video" in row["error"]


# -- 3. Reuse of a video job that made no video ----------------------------------------------------------------
def test_reuse_of_a_failed_video_job_fills_the_video_form_from_its_request(studio, fake, first_frame):
    from masuka.ui.history import history_reuse

    runway = fake("runway")
    runway.fault("create", 400, body={"error": "promptText is too long"})
    row = run(studio, "runway", "gen4_turbo", image=str(first_frame), seconds=5, size="1280x720",
              fallback=["fal"])
    assert row["status"] == "failed"
    kind, fields = reuse_parameters(studio, "local", False, f"j{row['id']}")
    assert kind == "video"
    assert {name: fields[name] for name in ("prompt", "provider", "model", "seconds", "size", "negative", "sound")} \
        == {"prompt": PROMPT, "provider": "runway", "model": "gen4_turbo", "seconds": 5, "size": "1280x720",
            "negative": "", "sound": "default"}
    assert fields["image"] and studio.config.absolute(fields["image"]).read_bytes() == first_frame.read_bytes()
    assert (fields["last_frame"], fields["source_video"], fields["references"]) == (None, None, [])
    assert fields["fallback"] == ["fal"]
    assert history_reuse(studio, f"j{row['id']}")["fields"]["model"] == "gen4_turbo"  # what the History tab calls


def test_reuse_of_a_cancelled_video_job_and_refusal_of_other_jobs(studio, fake):
    from masuka.errors import InvalidInput
    from tests.video.conftest import wait_until

    server = fake("openai")
    server.release.clear()  # the job never finishes at the provider
    job_id = start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT, seconds=8))
    assert wait_until(lambda: server.polls > 0)
    cancel_video(studio, job_id, "local")
    assert wait_video(studio, job_id, timeout=30)["status"] == "cancelled"
    kind, fields = reuse_parameters(studio, "local", False, f"j{job_id}")
    assert (kind, fields["provider"], fields["model"], fields["seconds"]) == ("video", "openai", "sora-2", 8)
    train = studio.store.insert("jobs", {"kind": "train", "owner": "local", "status": "failed", "title": "run"})
    with pytest.raises(InvalidInput, match=f"Entry j{train} is a train job: Reuse fills the Image or Video form"):
        reuse_parameters(studio, "local", False, f"j{train}")


# -- 4. messages that say what to do -----------------------------------------------------------------------------
def test_a_create_that_keeps_getting_429_says_it_is_rate_limiting(studio, fake):
    runway = fake("runway")
    runway.fault("create", 429, body={"error": "You have exceeded your rate limit."}, times=10)
    row = run(studio, "runway", "gen4.5", seconds=5)
    assert row["status"] == "failed" and "not answering" not in row["error"]
    assert "runway is rate-limiting" in row["error"] and "exceeded your rate limit" in row["error"]
    assert "Wait a few minutes" in row["error"] and "fallback provider" in row["error"]


def test_a_download_that_keeps_breaking_says_the_video_may_still_be_fetched(studio, fake):
    runway = fake("runway")
    runway.broken_downloads = 1000
    row = run(studio, "runway", "gen4.5", seconds=5)
    assert row["status"] == "failed" and "could not be downloaded whole" in row["error"]
    assert "may still be fetchable from Runway" in row["error"] and row["external_id"] in row["error"]
    assert "does not retry this job by itself" in row["error"]


def test_a_download_that_is_a_web_page_is_the_providers_fault_and_leaves_no_clip_folder(studio, fake):
    """A 200 answering with HTML failed as "cut short (a box runs past the end of the file)", a network fault, after
    fetching it again and again, and left an empty clip folder behind."""
    fal = fake("fal")
    fal.video = b"<html>oops</html>"
    row = run(studio, "fal", FAL_MODEL, seconds=4)
    assert row["status"] == "failed" and row["error"].startswith(
        "fal.ai answered the download of the video with an HTML page, not an MP4 video: the fault is fal.ai's, not "
        "the network's. fal.ai made this video (and bills it)"), row["error"]
    assert "cut short" not in row["error"] and "does not retry this job by itself" in row["error"]
    assert len(fal.requests_to("/files/")) == 2  # once, and once more from a fresh link: never again and again
    assert not (studio.config.outputs_dir / "videos" / "clips" / f"{row['id']:06d}").exists()
