"""Veo 3.1 on the Gemini API: long videos by extending Veo's own clips (checked against google-genai), 1080p
chains that fall back to last frames, 4k, and no sound switch where the SDK refuses one."""

from __future__ import annotations

import json

import pytest

from masuka.errors import InvalidInput
from masuka.testing.video import KEY
from masuka.video.jobs import estimate, start_video, wait_video
from masuka.video.request import VideoRequest
from tests.video.test_jobs import frame_count

PROMPT = "a kite over the dunes"


def veo(**kw) -> VideoRequest:
    return VideoRequest(provider="gemini", model="veo-3.1-generate-001", prompt=PROMPT, **kw)


def test_long_veo_video_extends_the_previous_clip_instead_of_chaining_frames(studio, fake, sample_mp4):
    server = fake("gemini")
    plan = estimate(veo(seconds=20, size="1280x720"))
    assert plan.primary.segments == [8, 7, 7] and plan.primary.extends
    assert plan.primary.cost_usd == pytest.approx(0.40 * 22)
    row = wait_video(studio, start_video(studio, veo(seconds=20, size="1280x720")), timeout=60)
    assert row["status"] == "completed", row["error"]
    bodies = [json.loads(r.body) for r in server.requests_to(":predictLongRunning")]
    assert len(bodies) == 3 and server.creates == 3
    assert "video" not in bodies[0]["instances"][0]
    for index in (1, 2):  # each extension continues Veo's own previous output, never a still frame
        instance = bodies[index]["instances"][0]
        assert instance["video"]["uri"] == f"{server.base}/v1beta/files/job{index}:download?alt=media"
        assert "image" not in instance and bodies[index]["parameters"] == {"resolution": "720p"}
    single = studio.config.tmp_dir / "single.mp4"
    single.write_bytes(sample_mp4)  # the last answer is the whole video: kept as it is, not joined again
    assert frame_count(studio.config.absolute(row["result"]["video"])) == frame_count(single)
    generation = studio.store.find("generations", "job_id = ?", [row["id"]])[0]
    assert generation["params"]["segments"] == [8, 7, 7]


def test_veo_extension_request_matches_google_genai(studio, fake):
    from google import genai  # installed by requirements-test.txt: a broken SDK fails here, loudly
    server = fake("gemini")
    wait_video(studio, start_video(studio, veo(seconds=15, size="1280x720", negative_prompt="rain")), timeout=60)
    ours = server.requests_to(":predictLongRunning")[1]
    client = genai.Client(api_key=KEY, http_options=genai.types.HttpOptions(base_url=server.base))
    client.models.generate_videos(
        model="veo-3.1-generate-001", prompt=PROMPT,
        video=genai.types.Video(uri=json.loads(ours.body)["instances"][0]["video"]["uri"]),
        config=genai.types.GenerateVideosConfig(resolution="720p", negative_prompt="rain"))
    theirs = server.requests_to(":predictLongRunning")[2]
    assert ours.path == theirs.path and json.loads(ours.body) == json.loads(theirs.body)


def test_1080p_has_no_extension_so_long_videos_chain_last_frames(studio, fake):
    server = fake("gemini")
    plan = estimate(veo(seconds=16, size="1920x1080"))
    assert plan.primary.segments == [8, 8] and not plan.primary.extends
    row = wait_video(studio, start_video(studio, veo(seconds=16, size="1920x1080")), timeout=60)
    assert row["status"] == "completed", row["error"]
    second = json.loads(server.requests_to(":predictLongRunning")[1].body)["instances"][0]
    assert second["image"]["mimeType"] == "image/png" and "video" not in second


def test_4k_clip_is_asked_for_as_4k_and_priced_as_such(studio, fake):
    server = fake("gemini")
    assert estimate(veo(size="3840x2160")).primary.cost_usd == pytest.approx(0.60 * 8)
    row = wait_video(studio, start_video(studio, veo(size="3840x2160")), timeout=60)
    assert row["status"] == "completed", row["error"]
    parameters = json.loads(server.requests_to(":predictLongRunning")[0].body)["parameters"]
    assert (parameters["resolution"], parameters["aspectRatio"], parameters["durationSeconds"]) == ("4k", "16:9", 8)
    with pytest.raises(InvalidInput, match="clips of 8 seconds at 3840x2160"):
        estimate(veo(size="3840x2160", seconds=4))


def test_veo_on_the_gemini_api_offers_no_sound_switch(studio):
    with pytest.raises(InvalidInput, match="no sound on/off choice"):
        estimate(veo(audio=False))


def test_stand_in_refuses_to_extend_a_video_veo_did_not_make(fake):
    import httpx

    server = fake("gemini")
    answer = httpx.post(f"{server.base}/v1beta/models/veo-3.1-generate-001:predictLongRunning",
                        headers={"x-goog-api-key": KEY},
                        json={"instances": [{"prompt": PROMPT, "video": {"uri": "https://elsewhere/clip.mp4"}}],
                              "parameters": {"resolution": "720p"}})
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_killed_while_an_extension_runs_resumes_it_without_sending_anything_again(tmp_path, fake):
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.video.conftest import wait_until
    from tests.video.test_jobs import _video_cli

    server = fake("gemini")
    server.finishing = 1  # the first clip finishes; its extension stays running
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(_video_cli(tmp_path / "data", "--provider", "gemini", "--model", "veo-3.1-generate-001",
                                        "--prompt", PROMPT, "--seconds", "15", "--size", "1280x720"),
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: server.creates == 2 and server.jobs["job2"]["polls"] >= 1, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    server.finishing = None
    resumed = subprocess.run([sys.executable, "-m", "masuka", "jobs", "resume", "--data-dir", str(tmp_path / "data"),
                              "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    [result] = json.loads(resumed.stdout)["jobs"]
    assert result["status"] == "completed" and server.creates == 2
    extension = json.loads(server.requests_to(":predictLongRunning")[1].body)["instances"][0]
    assert extension["video"]["uri"].endswith("/files/job1:download?alt=media")
