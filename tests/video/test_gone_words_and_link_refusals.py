"""A model is remembered as gone on the provider's words about the model itself (its "no such model" code first,
a retirement followed by "retry with Y"), never on a parameter refusal that names it or a maintenance; the reason
kept for every user of the key leaves out who can ask again, which each is told in their own words; a video link
refused by a storage host that never saw the key fails the job saying where to fetch the video (no endless wait)."""

from __future__ import annotations

import pytest

from masuka.testing.video import KEY
from masuka.video.availability import unavailable
from masuka.video.jobs import cancel_video, start_video, wait_video
from masuka.video.request import VideoRequest
from tests.video.conftest import wait_until

PROMPT = "a paper boat on a rainy street"


def run(studio, provider: str, model: str, **kw) -> dict:
    return wait_video(studio, start_video(studio, VideoRequest(provider=provider, model=model, prompt=PROMPT, **kw)),
                      timeout=60)


@pytest.mark.parametrize("said", [
    "Model gen4.5 is not supported: it was retired.",
    "Model gen4.5 was retired on 2026-11-01; use gen5 or later.",
    "Model gen4.5 has been retired. Please retry with gen4_turbo.",
])
def test_a_retired_model_goes_to_the_fallback_whatever_the_next_clause_says(studio, fake, said):
    runway, fal = fake("runway"), fake("fal")
    runway.fault("create", 400, body={"error": said})
    row = run(studio, "runway", "gen4.5", seconds=5, fallback=["fal"])
    assert (row["status"], row["provider"], fal.creates) == ("completed", "fal", 1), row["error"]
    assert said in unavailable(studio.store, "runway", "gen4.5", KEY)


@pytest.mark.parametrize("code", ["model_not_found", "unsupported_model"])
def test_the_no_such_model_code_decides_whatever_its_text_says(studio, fake, code):
    openai = fake("openai")
    openai.fault("create", 400, body={"error": {"code": code, "type": "invalid_request_error", "message":
                                                "The model sora-2 is not available; retry later."}})
    row = run(studio, "openai", "sora-2")
    assert row["status"] == "failed" and "sora-2 is not available to this OpenAI key" in row["error"]
    assert unavailable(studio.store, "openai", "sora-2", KEY)


@pytest.mark.parametrize("said", [
    "Model gen4.5 takes 5 or 10 seconds: a duration of 7 is not supported",
    "Model gen4.5 is not available right now (scheduled maintenance)",
    "Model gen4.5 is currently unavailable due to high demand.",
])
def test_a_parameter_refusal_or_a_maintenance_is_not_remembered(studio, fake, said):
    runway = fake("runway")
    runway.fault("create", 400, body={"error": said})
    row = run(studio, "runway", "gen4.5", seconds=5)
    assert row["status"] == "failed" and said in row["error"] and "not available to this" not in row["error"]
    assert unavailable(studio.store, "runway", "gen4.5", KEY) is None
    assert run(studio, "runway", "gen4.5", seconds=5)["status"] == "completed"  # asked again, and made


def test_the_kept_reason_leaves_who_can_ask_again_to_each_user(tmp_path, fake):
    from masuka.config import Config
    from masuka.errors import ProviderError
    from masuka.studio import Studio

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "multi", auth="admin:pw1,bob:pw2"))
    try:
        fake("openai").gone_models.add("sora-2")
        made = wait_video(studio, start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT,
                                                                   owner="admin")), timeout=60)
        assert made["status"] == "failed" and "Saving or testing the key in Settings" in made["error"]
        assert "keys test openai" in made["error"]
        kept = unavailable(studio.store, "openai", "sora-2", KEY)
        assert kept and "Settings" not in kept and "admin" not in kept
        with pytest.raises(ProviderError) as bob:
            start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT, owner="bob"))
        assert "An admin saving or testing the key in Settings asks again at once" in str(bob.value)
        assert "Saving or testing the key in Settings" not in str(bob.value)
        with pytest.raises(ProviderError, match="Saving or testing the key in Settings"):
            start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT, owner="admin"))
    finally:
        studio.close()


def test_a_link_refused_by_the_storage_host_fails_the_job_saying_where_to_fetch_it(studio, fake):
    """Runway's video is on a storage host that never saw the key: its 403 is an expired link, not a refused key
    (the job used to wait and poll for ever)."""
    runway = fake("runway")
    runway.fault("download", 403, body={"Code": "AccessDenied", "Message": "Request has expired"}, times=10_000)
    row = run(studio, "runway", "gen4.5", seconds=5)
    assert row["status"] == "failed", (row["status"], row["error"])
    assert "HTTP 403" in row["error"] and "expired" in row["error"]
    assert "may still be fetchable from Runway" in row["error"] and row["external_id"] in row["error"]
    assert "Still trying" not in row["error"]


def test_a_download_refused_by_the_providers_own_api_still_waits_for_a_key(studio, fake):
    """OpenAI serves the video from its keyed API: a 403 there is the key's, and the accepted job waits."""
    openai = fake("openai")
    openai.fault("download", 403, body={"error": {"message": "Your key was revoked."}}, times=10_000)
    job_id = start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT))
    assert wait_until(lambda: wait_video(studio, job_id, timeout=0)["state"].get("phase") == "waiting")
    row = wait_video(studio, job_id, timeout=0)
    assert row["status"] == "running" and "HTTP 403" in row["error"] and "Still trying" in row["error"]
    cancel_video(studio, job_id, "local")
    assert wait_video(studio, job_id, timeout=30)["status"] == "cancelled"
