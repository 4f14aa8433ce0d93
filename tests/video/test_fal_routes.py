"""fal routes are catalog data: each route's entry lists the fields it takes, so Kling 2.5 Turbo and Veo 3.1
are sent only what fal's pages list, on the image-to-video route when a first frame is given; the request
matches what fal's own client sends."""

from __future__ import annotations

import json

import pytest

from masuka.testing.video import KEY
from masuka.video.jobs import estimate, start_video, wait_video
from masuka.video.request import VideoRequest

KLING = "fal-ai/kling-video/v2.5-turbo/pro/text-to-video"
PROMPT = "a heron lifting off a misty lake"


def run(studio, **kw) -> dict:
    row = wait_video(studio, start_video(studio, VideoRequest(provider="fal", prompt=PROMPT, **kw)), timeout=60)
    assert row["status"] == "completed", row["error"]
    return row


def creates(server, route: str) -> list:
    return [r for r in server.requests_to(route) if r.method == "POST"]


def test_kling_25_turbo_gets_only_its_fields_on_each_route(studio, fake, first_frame):
    server = fake("fal")
    assert estimate(VideoRequest(provider="fal", model=KLING, prompt=PROMPT, seconds=10)).primary.cost_usd == 0.7
    run(studio, model=KLING, seconds=5, size="1080x1920", negative_prompt="blur")
    run(studio, model=KLING, seconds=10, image=str(first_frame))
    posts = creates(server, "/fal-ai/kling-video/")
    text, image = (json.loads(r.body) for r in posts)
    assert posts[0].path == f"/{KLING}"
    assert text == {"prompt": PROMPT, "duration": "5", "aspect_ratio": "9:16", "negative_prompt": "blur"}
    assert posts[1].path == "/fal-ai/kling-video/v2.5-turbo/pro/image-to-video"
    assert set(image) == {"prompt", "duration", "image_url"} and image["duration"] == "10"
    assert image["image_url"].startswith("data:image/png;base64,")


def test_veo31_on_fal_at_4k_without_sound_is_asked_and_priced_so(studio, fake):
    server = fake("fal")
    request = dict(model="fal-ai/veo3.1", size="3840x2160", seconds=8, audio=False)
    assert estimate(VideoRequest(provider="fal", prompt=PROMPT, **request)).primary.cost_usd == pytest.approx(3.2)
    with_sound = {**request, "audio": None}
    assert estimate(VideoRequest(provider="fal", prompt=PROMPT, **with_sound)).primary.cost_usd == pytest.approx(4.8)
    run(studio, **request)
    sent = json.loads(creates(server, "/fal-ai/veo3.1")[0].body)
    assert sent == {"prompt": PROMPT, "aspect_ratio": "16:9", "duration": "8s", "resolution": "4k",
                    "generate_audio": False}


def test_fal_video_request_matches_fal_client(studio, fake, monkeypatch):
    import fal_client
    server = fake("fal")
    run(studio, model="fal-ai/veo3.1/fast", seconds=6, size="720x1280")
    ours = creates(server, "/fal-ai/veo3.1/fast")[0]
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", server.base + "/")
    fal_client.SyncClient(key=KEY).submit("fal-ai/veo3.1/fast", arguments=json.loads(ours.body))
    theirs = creates(server, "/fal-ai/veo3.1/fast")[-1]
    assert (ours.method, ours.path, ours.headers["authorization"]) == (
        theirs.method, theirs.path, theirs.headers["authorization"])
    assert json.loads(ours.body) == json.loads(theirs.body)
