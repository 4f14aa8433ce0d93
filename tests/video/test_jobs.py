"""Video jobs: chains of clips joined into one MP4, provider health and fallback, resuming after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from masuka.errors import ProviderError
from masuka.remote.health import HealthTracker
from masuka.remote.timing import RemoteSettings
from masuka.testing.video import KEY
from masuka.video.jobs import estimate, start_video, video_jobs, wait_video
from masuka.video.media import check_mp4
from masuka.video.request import VideoRequest
from tests.conftest import ROOT
from tests.video.conftest import wait_until


def frame_count(path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_long_video_chains_clips_from_last_frames_and_joins_them(studio, fake, sample_mp4):
    server = fake("openai")
    request = VideoRequest(provider="openai", model="sora-2", prompt="a train crossing a valley", seconds=20)
    plan = estimate(request)
    assert plan.primary.segments == [12, 8] and plan.primary.cost_usd == 2.0
    row = wait_video(studio, start_video(studio, request), timeout=60)
    assert row["status"] == "completed", row["error"]
    assert server.creates == 2
    first, second = server.jobs["job1"]["payload"], server.jobs["job2"]["payload"]
    assert (first["seconds"], second["seconds"]) == ("12", "8")
    assert "input_reference" not in first and second["input_reference"].startswith(b"\x89PNG")
    video = studio.config.absolute(row["result"]["video"])
    check_mp4(video)
    single = studio.config.tmp_dir / "single.mp4"
    single.write_bytes(sample_mp4)
    assert frame_count(video) == 2 * frame_count(single)
    generation = studio.store.find("generations", "job_id = ?", [row["id"]])[0]
    assert generation["cost_usd"] == 2.0 and generation["params"]["segments"] == [12, 8]
    assert len(generation["params"]["provider_job_ids"]) == 2


def test_chain_over_sixty_seconds_or_without_image_input_is_refused(studio):
    import pytest

    from masuka.errors import InvalidInput

    with pytest.raises(InvalidInput, match="from 1 to 60"):
        estimate(VideoRequest(provider="openai", model="sora-2", prompt="x", seconds=90))
    with pytest.raises(InvalidInput, match="cannot chain"):
        estimate(VideoRequest(provider="local", model="wan2.1-t2v-1.3b", prompt="x", seconds=20))


def test_unhealthy_provider_is_skipped_for_the_fallback_and_said_so(studio, fake, monkeypatch):
    monkeypatch.setenv("MASUKA_VIDEO_UNHEALTHY_AFTER", "2")
    openai, comet = fake("openai"), fake("comet")
    openai.fault("create", 500, times=2)
    for _ in range(2):
        assert wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox")))["status"] == "failed"
    report = HealthTracker(studio.store, RemoteSettings.from_env()).report()
    assert "openai" in report and "unhealthy" in report["openai"]
    jobs_before = studio.store.count("jobs")
    with pytest.raises(ProviderError, match="marked unhealthy"):
        start_video(studio, VideoRequest("openai", "sora-2", "a fox"))
    assert studio.store.count("jobs") == jobs_before  # refused before any job was written
    row = wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox", fallback=["comet:sora-2"])),
                     timeout=30)
    assert row["status"] == "completed" and row["provider"] == "comet"
    assert openai.creates == 0 and comet.creates == 1


def test_unreachable_provider_falls_back_without_double_submitting(studio, fake, monkeypatch):
    from tests.conftest import free_port

    runway = fake("runway")
    monkeypatch.setenv("MASUKA_OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")
    row = wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox", seconds=4,
                                                              fallback=["runway:veo3.1_fast"])), timeout=30)
    assert row["status"] == "completed", row["error"]
    assert (row["provider"], row["model"]) == ("runway", "veo3.1_fast") and runway.creates == 1
    assert row["cost_usd"] == 0.6


def test_unreachable_provider_during_polling_keeps_the_paid_job(studio, fake):
    server = fake("fal")
    server.fault("poll", 503, times=6)  # more than one round of retries
    row = wait_video(studio, start_video(studio, VideoRequest("fal", "fal-ai/veo3", "a fox")), timeout=60)
    assert row["status"] == "completed" and server.creates == 1


def _video_cli(data_dir, *extra):
    return [sys.executable, "-m", "masuka", "video", "--data-dir", str(data_dir), "--json", *extra]


def test_killed_mid_poll_then_resumed_completes_with_one_create(tmp_path, fake):
    server = fake("runway")
    server.release.clear()
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(_video_cli(data, "--provider", "runway", "--model", "gen4.5", "--prompt",
                                        "a lighthouse in a storm", "--seconds", "5"),
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.polled.wait(30), first.stderr.read1().decode() if first.poll() is not None else "no poll"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert server.creates == 1
    server.release.set()
    second = subprocess.run([sys.executable, "-m", "masuka", "jobs", "resume", "--data-dir", str(data), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    [result] = json.loads(second.stdout)["jobs"]
    assert result["status"] == "completed" and result["provider_job_id"] == "job1"
    check_mp4(__import__("pathlib").Path(result["video"]))
    assert server.creates == 1
    listed = subprocess.run([sys.executable, "-m", "masuka", "jobs", "--data-dir", str(data), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    jobs = json.loads(listed.stdout)["jobs"]
    assert [(j["id"], j["kind"], j["status"], j["external_id"]) for j in jobs] == [
        (result["job"], "video", "completed", "job1")]


def test_cli_video_waits_with_progress_and_prints_json(tmp_path, fake):
    server = fake("gemini")
    server.polls_to_finish = 4
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASUKA_VIDEO_POLL_S": "0.3"}  # phases the progress lines see
    done = subprocess.run(_video_cli(tmp_path / "data", "--provider", "gemini", "--model",
                                     "veo-3.1-fast-generate-preview", "--prompt", "waves", "--seconds", "6",
                                     "--aspect", "9:16"), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["provider_job_id"].startswith("models/veo-3.1-fast")
    assert result["cost_usd"] == 0.9
    assert "estimated $0.90" in done.stderr and "job 1: running" in done.stderr
    assert done.stderr.strip().endswith("job 1: completed 100%")
    assert server.jobs["job1"]["payload"]["parameters"]["aspectRatio"] == "9:16"


def test_cli_refuses_bad_input_with_exit_code_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(_video_cli(tmp_path / "data", "--provider", "openai", "--model", "sora-2", "--prompt",
                                     "waves", "--seconds", "5"), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "error: Sora 2 makes clips of 4, 8, 12 seconds" in done.stderr


LOCAL = ("--provider", "local", "--model", "wan2.1-t2v-1.3b")


@pytest.mark.parametrize("extra, words", [
    ((*LOCAL, "--steps", "-3"), "Steps must be between 1 and 200 (got -3)."),
    ((*LOCAL, "--fps", "-4"), "The frame rate (fps) must be between 1 and 60 (got -4)."),
    ((*LOCAL, "--fps", "1000"), "The frame rate (fps) must be between 1 and 60 (got 1000)."),
    (("--provider", "openai", "--model", "sora-2", "--seconds", "0"),
     "Seconds must be a whole number from 1 to 60 (got 0)."),
])
def test_cli_estimate_refuses_numbers_out_of_range_in_one_line(tmp_path, extra, words):
    done = subprocess.run(_video_cli(tmp_path / "data", "--prompt", "waves", "--estimate", *extra), cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (2, f"error: {words}\n", "")


def test_the_forms_zero_seconds_is_refused_and_only_an_empty_choice_means_the_default(studio):
    from masuka.ui.video import _request, price

    assert price(studio, "openai", "sora-2", 0, "1280x720", None, [], "a fox") == (
        "⚠️ Seconds must be between 1 and 60 (got 0).")
    assert estimate(_request("openai", "sora-2", "a fox", "", None, None, "", [])).seconds == 4


def test_jobs_list_shows_owner_rows_and_status(studio, fake):
    fake("fal")
    job_id = start_video(studio, VideoRequest("fal", "fal-ai/veo3/fast", "a fox", seconds=8))
    wait_video(studio, job_id)
    rows = video_jobs(studio, "local")
    assert rows[0]["id"] == job_id and rows[0]["video"].is_file() and rows[0]["phase"] == "completed"
    assert video_jobs(studio, "someone-else") == []


def test_killed_while_the_create_request_was_in_flight_needs_attention_and_is_not_resent(tmp_path, fake):
    server = fake("openai")
    server.hang_create_s = 4.0
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(_video_cli(data, "--provider", "openai", "--model", "sora-2", "--prompt", "a harbour"),
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: server.requests_to("/v1/videos"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert len(server.requests_to("/v1/videos")) == 1
    resumed = subprocess.run([sys.executable, "-m", "masuka", "jobs", "resume", "--data-dir", str(data)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "resuming 0 video job(s)" in resumed.stderr
    listed = subprocess.run([sys.executable, "-m", "masuka", "jobs", "--data-dir", str(data), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    job = json.loads(listed.stdout)["jobs"][0]
    assert job["status"] == "interrupted" and job["error"].startswith("Needs attention")
    assert len(server.requests_to("/v1/videos")) == 1


def _still_trying(studio, job_id):
    """Wait until the job says it is kept and waiting; returns its row."""
    from masuka import jobs

    assert wait_until(lambda: "Still trying; the job is kept." in (jobs.get(studio.store, job_id).error or ""),
                      timeout=30), jobs.get(studio.store, job_id)
    row = jobs.get(studio.store, job_id)
    assert row.status == "running" and video_jobs(studio, "local")[0]["phase"] == "waiting"
    return row


def test_a_paid_job_resumed_without_its_key_waits_for_it(tmp_path, fake, monkeypatch):
    """The app starts again without the key of a provider that accepted a job: the job waits, saying why, and
    completes once the key is back; it is never sent twice."""
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.video.jobs import resume_video_jobs

    server = fake("runway")
    server.release.clear()
    data = tmp_path / "data"
    first = subprocess.Popen(_video_cli(data, "--provider", "runway", "--model", "gen4.5", "--prompt", "a lighthouse",
                                        "--seconds", "5"), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.polled.wait(60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    monkeypatch.delenv("RUNWAYML_API_SECRET")
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        [job_id] = resume_video_jobs(studio).resumed
        row = _still_trying(studio, job_id)
        assert "No API key for Runway" in row.error
        monkeypatch.setenv("RUNWAYML_API_SECRET", KEY)
        server.release.set()
        row = wait_video(studio, job_id, timeout=30)
        assert (row.status, row.error, server.creates) == ("completed", None, 1)
    finally:
        studio.close()


def test_a_key_refused_while_polling_keeps_the_paid_job(studio, fake):
    server = fake("fal")
    server.fault("poll", 401, body={"detail": "Invalid key"}, times=20)  # a key rotated at the provider
    job_id = start_video(studio, VideoRequest("fal", "fal-ai/veo3", "a fox"))
    assert "HTTP 401" in _still_trying(studio, job_id).error
    server.faults.clear()
    row = wait_video(studio, job_id, timeout=30)
    assert row["status"] == "completed" and server.creates == 1


def test_an_unreachable_download_keeps_the_paid_job(studio, fake):
    server = fake("runway")
    server.fault("download", 503, times=50)
    job_id = start_video(studio, VideoRequest("runway", "gen4.5", "a fox", seconds=5))
    assert "not answering" in _still_trying(studio, job_id).error
    server.faults.clear()
    row = wait_video(studio, job_id, timeout=30)
    assert row["status"] == "completed" and server.creates == 1
    check_mp4(studio.config.absolute(row["result"]["video"]))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the first app's poller
def test_an_app_opened_again_in_the_same_process_resumes_and_cancels_the_job(config, fake):
    """Each studio's runner marks its own jobs: a job the first one left (its poller ends with its closed
    database) is the second one's to resume, and to cancel."""
    from masuka.studio import Studio
    from masuka.video.jobs import cancel_video, resume_video_jobs

    server = fake("openai")
    server.release.clear()
    first = Studio.open(config)
    job_id = start_video(first, VideoRequest("openai", "sora-2", "a fox"))
    assert server.polled.wait(30)
    first.close()
    second = Studio.open(config)
    try:
        assert resume_video_jobs(second).resumed == [job_id]
        assert cancel_video(second, job_id, "local").status in ("running", "cancelled")
        row = wait_video(second, job_id, timeout=30)
        assert row.status == "cancelled" and server.cancels == 1
    finally:
        second.close()


def test_clips_are_joined_when_the_data_dir_has_an_apostrophe(tmp_path, fake):
    from masuka.config import Config
    from masuka.studio import Studio

    fake("openai")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "John's Drive" / "data", auth=""))
    try:
        row = wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox", seconds=16)),
                         timeout=60)
        assert row["status"] == "completed", row["error"]
        check_mp4(studio.config.absolute(row["result"]["video"]))
    finally:
        studio.close()


def test_a_failed_job_shows_failed_as_its_phase(studio, fake):
    server = fake("openai")
    server.broken_downloads = 20
    row = wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox")), timeout=60)
    assert row["status"] == "failed" and "downloaded whole" in row["error"]
    assert video_jobs(studio, "local")[0]["phase"] == "failed"


def test_a_job_no_provider_took_lists_no_price_and_a_paid_one_keeps_its_estimate(studio, fake):
    """A create refused until the job fails (422) cost nothing, so its list row shows no price; a job the
    provider took and that failed later (its download) keeps the price estimated at the start."""
    server = fake("openai")
    server.fault("create", 422, body={"error": {"message": "That prompt is not allowed."}})
    refused = wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox")), timeout=60)
    server.broken_downloads = 20
    paid = wait_video(studio, start_video(studio, VideoRequest("openai", "sora-2", "a fox")), timeout=60)
    assert refused["status"] == paid["status"] == "failed" and refused["cost_usd"] > 0
    listed = {row["id"]: row["cost_usd"] for row in video_jobs(studio, "local")}
    assert listed == {refused["id"]: None, paid["id"]: paid["cost_usd"]}


def test_a_video_over_the_per_user_limit_leaves_no_row_nor_input_copy(tmp_path, fake, first_frame):
    from masuka.config import Config
    from masuka.errors import GPUBusy
    from masuka.studio import Studio
    from masuka.video.jobs import cancel_video

    fake("openai").release.clear()  # the first two stay running at the provider
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:pw", max_queued_per_user=2))
    inputs = studio.config.outputs_dir / "videos" / "inputs"
    try:
        def request() -> VideoRequest:
            return VideoRequest("openai", "sora-2", "a fox", image=str(first_frame), owner="ann")

        first, second = start_video(studio, request()), start_video(studio, request())
        with pytest.raises(GPUBusy, match="already have 2 jobs queued or running"):
            start_video(studio, request())
        assert [row["id"] for row in studio.store.find("jobs", order_by="id")] == [first, second]
        assert len(list(inputs.iterdir())) == 2
        for job_id in (first, second):  # their pollers end before the database closes
            cancel_video(studio, job_id, "ann")
            assert wait_video(studio, job_id, timeout=30).status == "cancelled"
    finally:
        studio.close()
