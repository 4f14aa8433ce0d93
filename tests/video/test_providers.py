"""Each provider client against its fake server: requests in the documented shapes, the video downloaded,
checked and recorded; retries that honour the provider's hints; failures shown with the provider's words."""

from __future__ import annotations

import json

import pytest

from masuka.errors import InvalidInput, ProviderError
from masuka.testing.video import KEY
from masuka.video.catalog import lifecycle, video_catalog
from masuka.video.jobs import cancel_video, start_video, wait_video
from masuka.video.media import check_mp4
from masuka.video.providers import provider_class, remote_providers
from masuka.video.providers.base import Provider
from masuka.video.request import VideoRequest


def first_text_model(provider: str) -> str:
    """The provider's first catalog model that makes a video from text, an active one where there is one (the fake
    still serves a retired model)."""
    models = [name for name, entry in video_catalog()[provider]["models"].items() if entry.get("text")]
    return next((name for name in models if not lifecycle(video_catalog()[provider]["models"][name]).retired),
                models[0])


#: every remote provider, so a new one gets each contract test below
MODELS = {provider: first_text_model(provider) for provider in remote_providers()}


def run(studio, provider: str, **kw) -> dict:
    values = dict(provider=provider, model=MODELS[provider], prompt="a paper boat on a rainy street")
    values.update(kw)
    job_id = start_video(studio, VideoRequest(**values))
    return wait_video(studio, job_id, timeout=60)


def video_of(studio, row: dict):
    return studio.config.absolute(row["result"]["video"])


@pytest.mark.parametrize("provider", list(MODELS))
def test_each_provider_makes_a_recorded_playable_video(studio, fake, provider):
    server = fake(provider)
    row = run(studio, provider, size="1280x720")
    assert row["status"] == "completed", row["error"]
    path = video_of(studio, row)
    check_mp4(path)
    assert path.is_relative_to(studio.config.outputs_dir / "videos")
    assert server.creates == 1 and row["external_id"]
    generation = studio.store.find("generations", "job_id = ?", [row["id"]])[0]
    assert (generation["kind"], generation["provider"], generation["model"]) == ("video", provider, MODELS[provider])
    assert generation["cost_usd"] == row["cost_usd"] > 0
    assert studio.config.absolute(generation["output_path"]) == path
    dump = json.dumps([row, generation], default=str)
    assert KEY not in dump and KEY[-4:] not in dump


def test_requests_follow_each_api_shape(studio, fake, first_frame):
    servers = {name: fake(name) for name in MODELS}
    run(studio, "openai", seconds=8, size="720x1280")
    run(studio, "gemini", model="veo-3.1-generate-preview", seconds=6, size="720x1280", negative_prompt="blurry")
    run(studio, "runway", model="gen4.5", seconds=5, size="1280x720", image=str(first_frame))
    run(studio, "fal", model="fal-ai/veo3", seconds=6, size="1920x1080")
    run(studio, "comet", model="veo3-fast", seconds=8, size="720x1280")
    sora = servers["openai"].jobs["job1"]["payload"]
    assert sora == {"model": "sora-2", "prompt": "a paper boat on a rainy street", "seconds": "8", "size": "720x1280"}
    # multipart/form-data also without an image, as the official openai SDK sends videos.create
    create = servers["openai"].requests_to("/v1/videos")[0]
    assert create.headers["content-type"].startswith("multipart/form-data; boundary=")
    veo = servers["gemini"].jobs["job1"]["payload"]
    assert veo["instances"] == [{"prompt": "a paper boat on a rainy street"}]
    assert veo["parameters"] == {"aspectRatio": "9:16", "durationSeconds": 6, "resolution": "720p",
                                 "negativePrompt": "blurry"}
    runway = servers["runway"].jobs["job1"]["payload"]
    assert (runway["route"], runway["ratio"], runway["duration"], runway["model"]) == (
        "/v1/image_to_video", "1280:720", 5, "gen4.5")
    assert runway["promptImage"].startswith("data:image/png;base64,")
    fal = servers["fal"].jobs["job1"]["payload"]
    assert (fal["model"], fal["duration"], fal["aspect_ratio"], fal["resolution"]) == (
        "fal-ai/veo3", "6s", "16:9", "1080p")
    assert servers["comet"].jobs["job1"]["payload"]["size"] == "9x16"


@pytest.mark.parametrize("provider", list(MODELS))
def test_video_urls_on_other_hosts_never_get_the_key(studio, fake, provider):
    """The fake serves a video on another host (``localhost``) where the provider does (Gemini, Runway, fal)."""
    server = fake(provider)
    assert run(studio, provider)["status"] == "completed"
    downloads = [s for s in server.requests if s.headers["host"].startswith("localhost")]
    assert all(".mp4" in s.path for s in downloads)
    assert all(KEY not in json.dumps(s.headers) for s in downloads)


@pytest.mark.parametrize("provider, headers, body", [
    ("openai", {"retry-after-ms": "30"}, None),
    ("runway", {"retry-after": "1"}, None),
    ("fal", {"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, None),
    ("gemini", {}, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
                              "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                           "retryDelay": "0.05s"}]}}),
])
def test_rate_limited_polls_are_retried_and_the_job_completes(studio, fake, provider, headers, body):
    server = fake(provider)
    server.fault("poll", 429, headers, body, times=2)
    row = run(studio, provider)
    assert row["status"] == "completed", row["error"]
    assert server.creates == 1
    assert len([s for s in server.requests if s.method == "GET" and "/files/" not in s.path]) >= 4


def test_server_errors_on_polls_are_retried(studio, fake):
    server = fake("openai")
    server.fault("poll", 500, times=2)
    server.fault("poll", 503, times=1)
    assert run(studio, "openai")["status"] == "completed"
    assert server.creates == 1


def test_rate_limited_create_is_retried_because_it_was_refused(studio, fake):
    server = fake("runway")
    server.fault("create", 429, {"retry-after-ms": "20"}, {"error": "You have exceeded the rate limit."}, times=2)
    row = run(studio, "runway")
    assert row["status"] == "completed"
    assert server.creates == 1 and len(server.requests_to("text_to_video")) == 3


RUNWAY_ERROR = {"error": "You have exceeded your rate limit."}  # Runway's error body: a plain string


@pytest.mark.parametrize("status", [429, 503])
def test_polls_refused_with_runways_string_error_are_retried_and_the_job_completes(studio, fake, status):
    server = fake("runway")
    server.fault("poll", status, body=RUNWAY_ERROR, times=2)
    row = run(studio, "runway")
    assert row["status"] == "completed", row["error"]
    assert server.creates == 1


def test_create_refused_with_runways_string_error_is_retried_then_falls_back(studio, fake):
    runway, fal = fake("runway"), fake("fal")
    runway.fault("create", 429, body=RUNWAY_ERROR, times=1)
    assert run(studio, "runway", model="veo3.1_fast", seconds=8)["status"] == "completed"
    assert runway.creates == 1 and len(runway.requests_to("text_to_video")) == 2
    runway.fault("create", 429, body=RUNWAY_ERROR, times=4)  # every try of the next job
    row = run(studio, "runway", model="veo3.1_fast", seconds=8, fallback=["fal:fal-ai/veo3"])
    assert row["status"] == "completed", row["error"]
    assert row["provider"] == "fal" and (runway.creates, fal.creates) == (1, 1)


def test_create_that_fails_on_the_server_is_not_sent_again(studio, fake):
    server = fake("openai")
    server.fault("create", 500, body={"error": {"message": "The server had an error processing your request."}})
    row = run(studio, "openai")
    assert row["status"] == "failed"
    assert "server had an error" in row["error"]
    assert len(server.requests_to("/v1/videos")) == 1


def test_create_without_answer_needs_attention_and_is_never_resent(studio, fake, monkeypatch):
    server = fake("openai")
    monkeypatch.setenv("MASUKA_VIDEO_TIMEOUT_S", "0.3")
    server.hang_create_s = 1.0
    row = run(studio, "openai")
    assert row["status"] == "interrupted"
    assert "Needs attention" in row["error"] and "dashboard" in row["error"]
    assert len(server.requests_to("/v1/videos")) == 1
    from masuka.video.jobs import Adopted, resume_video_jobs

    assert resume_video_jobs(studio) == Adopted()
    assert len(server.requests_to("/v1/videos")) == 1


@pytest.mark.parametrize("status", [504, 524])
def test_create_answered_by_a_gateway_timeout_needs_attention_and_is_never_resent(studio, fake, status):
    server = fake("comet")
    server.fault("create", status, body={"error": {"message": "A timeout occurred", "type": "upstream_error"}})
    row = run(studio, "comet")
    assert (row["status"], row["state"]["phase"]) == ("interrupted", "submitting")
    assert row["error"].startswith("Needs attention") and "dashboard" in row["error"]
    assert len(server.requests_to("/v1/videos")) == 1


@pytest.mark.parametrize("provider, words", [
    ("openai", "blocked by our moderation system"), ("gemini", "blocked by safety filters"),
    ("runway", "The content was flagged"), ("fal", "flagged by the content checker"),
])
def test_failed_provider_job_shows_the_provider_message(studio, fake, provider, words):
    server = fake(provider)
    server.fail_jobs = True
    row = run(studio, provider)
    assert row["status"] == "failed" and words in row["error"]
    assert studio.store.count("generations") == 0


def test_bad_key_is_refused_once_with_the_provider_message_and_never_echoed(studio, fake, monkeypatch):
    server = fake("openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-9876")
    row = run(studio, "openai")
    assert row["status"] == "failed" and "Incorrect API key provided" in row["error"] and "HTTP 401" in row["error"]
    assert len(server.requests) == 1 and "sk-wrong-key-9876" not in row["error"]


def test_missing_key_names_the_variable(studio, fake, monkeypatch):
    server = fake("gemini")
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ProviderError, match="GEMINI_API_KEY"):  # refused up front: no job can run without a key
        run(studio, "gemini")
    assert studio.store.count("jobs") == 0 and server.requests == []


@pytest.mark.parametrize("provider", list(MODELS))
def test_expired_video_url_is_fetched_fresh(studio, fake, provider):
    server = fake(provider)
    server.expire_urls = True
    row = run(studio, provider)
    assert row["status"] == "completed", row["error"]
    assert all(job.get("renewed") for job in server.jobs.values())  # the first download met the expired answer
    check_mp4(video_of(studio, row))


def test_broken_downloads_are_fetched_again_and_only_a_whole_video_is_kept(studio, fake):
    server = fake("openai")
    server.broken_downloads = 2
    row = run(studio, "openai")
    assert row["status"] == "completed", row["error"]
    assert len(server.requests_to("/content")) == 3
    assert video_of(studio, row).read_bytes() == server.video
    assert not list(studio.config.outputs_dir.rglob("*.part"))


@pytest.mark.parametrize("provider", list(MODELS))
def test_cancel_stops_the_job_and_cancels_at_the_provider(studio, fake, provider):
    """A provider whose API can cancel (its class overrides ``cancel``) is asked to, once; the job stops either way."""
    cancels = int(provider_class(provider).cancel is not Provider.cancel)
    server = fake(provider)
    server.release.clear()
    job_id = start_video(studio, VideoRequest(provider=provider, model=MODELS[provider], prompt="a long shot"))
    assert server.polled.wait(10)
    cancel_video(studio, job_id, "local")
    row = wait_video(studio, job_id, timeout=20)
    assert row["status"] == "cancelled"
    assert server.cancels == cancels
    assert studio.store.count("generations") == 0


@pytest.mark.parametrize("change, message", [
    ({"seconds": 5}, "makes clips of 4, 8, 12 seconds"),
    ({"size": "640x480"}, "makes 1280x720, 720x1280 videos"),
    ({"size": "big"}, "must look like 1280x720"),
    ({"prompt": "x" * 4001}, "too long"),
    ({"prompt": "  "}, "prompt is empty"),
    ({"seconds": 61}, "from 1 to 60"),
    ({"model": "sora-3"}, "has no model 'sora-3'"),
    ({"provider": "runway", "model": "gen4_turbo"}, "from an image only"),
    ({"provider": "runway", "model": "gen4.5", "prompt": "y" * 1001}, "at most 1000"),
    ({"provider": "gemini", "model": "veo-3.1-generate-preview", "size": "1920x1080", "seconds": 4},
     "clips of 8 seconds at 1920x1080"),
    ({"provider": "fal", "model": "fal-ai/kling-video/v2.1/master/text-to-video", "seconds": 7}, "5, 10"),
    ({"size": "1280x720", "aspect": "16:9"}, "not both"),
    ({"aspect": "4:3"}, "no 4:3 size"),
    ({"fallback": ["fal:fal-ai/kling-video/v2.1/master/text-to-video"]},
     r"^Fallback fal:\S+: Kling 2.1 Master \(fal\) makes 1920x1080, .* \(got 1280x720\)"),
    ({"fallback": ["openai"]}, "another remote provider"),
])
def test_invalid_combinations_are_refused_before_any_request(studio, fake, change, message):
    servers = [fake(name) for name in ("openai", "runway", "gemini", "fal")]
    values = {"provider": "openai", "model": "sora-2", "prompt": "a fox", **change}
    with pytest.raises(InvalidInput, match=message):
        start_video(studio, VideoRequest(**values))
    assert studio.store.count("jobs") == 0 and not any(s.requests for s in servers)


def test_too_large_first_frame_is_refused(studio, fake, tmp_path):
    import os

    from PIL import Image

    fake("runway")
    big = tmp_path / "big.png"
    Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3)).save(big)
    assert big.stat().st_size > 3_500_000
    with pytest.raises(InvalidInput, match="too large for Runway"):
        start_video(studio, VideoRequest(provider="runway", model="gen4_turbo", prompt="a fox", image=str(big)))


@pytest.mark.parametrize("headers, body, expected", [
    ({"retry-after-ms": "1500", "retry-after": "9"}, None, 1.5),
    ({"retry-after": "3"}, None, 3.0),
    ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, None, 0.0),
    ({}, {"error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                              "retryDelay": "34s"}]}}, 34.0),
    ({"retry-after": "600"}, None, 60.0),
])
def test_retry_delay_follows_the_provider_hint_capped(headers, body, expected):
    import httpx

    from masuka.remote.http import retry_delay
    from masuka.remote.timing import RemoteSettings

    response = httpx.Response(429, headers=headers, json=body) if body else httpx.Response(429, headers=headers)
    assert retry_delay(response, 0, RemoteSettings()) == expected


@pytest.mark.parametrize("body", [{"error": "Rate limited"}, ["a", "list"], "text", {"error": {"details": "34s"}},
                                  {"error": {"details": ["34s"]}}])
def test_error_bodies_of_any_other_shape_give_no_hint_but_the_back_off(body):
    import httpx

    from masuka.remote.http import retry_delay
    from masuka.remote.timing import RemoteSettings

    assert retry_delay(httpx.Response(503, json=body), 0, RemoteSettings(backoff_s=0.0)) == 0.0


def test_a_missing_key_tells_a_user_who_cannot_save_it_to_ask_an_admin(tmp_path, fake, monkeypatch):
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.video.providers import open_provider

    server = fake("gemini")
    monkeypatch.delenv("GEMINI_API_KEY")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="admin:pz-admin,alice:pa-alice"))
    try:
        with pytest.raises(ProviderError, match=r"no API key for gemini \(ask an admin to save the key in Settings\)"):
            run(studio, "gemini", owner="alice")
        with pytest.raises(ProviderError, match=r"\(set GEMINI_API_KEY or save the key in Settings\)"):
            run(studio, "gemini", owner="admin")
        with pytest.raises(InvalidInput, match=": ask an admin to save the key in Settings.$"):  # a job resumed
            open_provider(studio, "gemini", "alice")
        with pytest.raises(InvalidInput, match=": set GEMINI_API_KEY or save the key in Settings.$"):
            open_provider(studio, "gemini", "admin")
    finally:
        studio.close()
    assert server.requests == []


def test_the_video_tabs_cost_line_tells_an_admin_to_save_the_missing_key(tmp_path, monkeypatch):
    """The cost line is worded for the signed-in caller: an admin may save the key, another user asks one."""
    import gradio as gr

    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.ui.video import price

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="admin:pz-admin,alice:pa-alice"))
    try:
        lines = {user: price(studio, "gemini", "veo-3.1-generate-001", 8, "1280x720", None, [], "a fox",
                             request=gr.Request(username=user)) for user in ("admin", "alice")}
    finally:
        studio.close()
    assert "set GEMINI_API_KEY or save the key in Settings" in lines["admin"], lines
    assert "ask an admin" not in lines["admin"] and "ask an admin to save the key in Settings" in lines["alice"], lines


def test_provider_clients_share_one_tls_context(studio):
    """Each httpx client used to read the CA bundle again (about 40 ms of CPU; a job's client holds two, and a
    client is opened per job and per poll round): every provider client's keyed and bare clients use the one TLS
    context of the process."""
    from masuka.remote.health import HealthTracker
    from masuka.remote.timing import RemoteSettings
    from masuka.remote.tls import tls_context

    settings = RemoteSettings()
    for name in remote_providers():
        client = provider_class(name)(settings, HealthTracker(studio.store, settings), "key")
        assert client.client._transport._pool._ssl_context is tls_context(), name
        assert client.bare._transport._pool._ssl_context is tls_context(), name
