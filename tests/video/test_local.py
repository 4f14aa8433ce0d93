"""The local provider: a tiny random Wan pipeline loaded through from_pretrained, run as a video job."""

from __future__ import annotations

import os
import re

import pytest

from masuka.errors import InvalidInput
from masuka.video.jobs import cancel_video, start_video, wait_video
from masuka.video.media import check_mp4
from masuka.video.request import VideoRequest, plan_video
from tests.video.conftest import wait_until


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory):
    """``tiny_wan(image_to_video)`` -> folder of a tiny random Wan pipeline."""
    from masuka.models.synthetic import save_tiny_video_pipeline

    built = {}

    def make(image_to_video: bool = False):
        if image_to_video not in built:
            built[image_to_video] = save_tiny_video_pipeline(tmp_path_factory.mktemp("tiny-wan"), image_to_video)
        return built[image_to_video]

    return make


def local(model, **kw) -> VideoRequest:
    values = dict(provider="local", model=str(model), prompt="a red fox running", seconds=1, size="32x32", fps=8,
                  steps=2, seed=5)
    values.update(kw)
    return VideoRequest(**values)


def frames_and_size(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"])


def test_local_text_to_video_is_recorded_with_progress(studio, tiny_wan):
    job_id = start_video(studio, local(tiny_wan()))
    row = wait_video(studio, job_id, timeout=120)
    assert row["status"] == "completed", row["error"]
    video = studio.config.absolute(row["result"]["video"])
    check_mp4(video)
    assert frames_and_size(video) == (9, (32, 32))
    assert (row["step"], row["total"], row["progress"], row["cost_usd"]) == (2, 2, 1.0, 0)
    generation = studio.store.find("generations", "job_id = ?", [job_id])[0]
    assert (generation["provider"], generation["seed"], generation["steps"]) == ("local", 5, 2)
    again = wait_video(studio, start_video(studio, local(tiny_wan(), seed=6)), timeout=120)
    assert again["status"] == "completed" and studio.models.loads == 1


def test_local_image_to_video_from_a_first_frame(studio, tiny_wan, first_frame):
    row = wait_video(studio, start_video(studio, local(tiny_wan(True), image=str(first_frame))), timeout=120)
    assert row["status"] == "completed", row["error"]
    assert frames_and_size(studio.config.absolute(row["result"]["video"])) == (9, (32, 32))


@pytest.mark.parametrize("model", ["folder", "wan2.1-t2v-1.3b"])
def test_a_text_only_local_model_refuses_a_first_frame_before_any_job_or_model_load(studio, tiny_wan, first_frame,
                                                                                     model):
    """The estimate priced it and the job failed only once the pipeline had loaded."""
    model = str(tiny_wan()) if model == "folder" else model
    request = local(model, image=str(first_frame), size=None if model == "wan2.1-t2v-1.3b" else "32x32")
    name = "Wan 2.1 T2V 1.3B" if model == "wan2.1-t2v-1.3b" else model
    words = rf"^{re.escape(name)} takes no first frame: remove it, or choose a model that takes one\.$"
    with pytest.raises(InvalidInput, match=words):
        plan_video(request)
    with pytest.raises(InvalidInput, match=words):
        start_video(studio, request)
    assert studio.store.count("jobs") == 0 and studio.models.loads == 0


def test_cancel_stops_a_local_video_between_steps(studio, tiny_wan):
    job_id = start_video(studio, local(tiny_wan(), steps=50))
    assert wait_until(lambda: (studio.store.get("jobs", job_id)["step"] or 0) >= 1, timeout=120)
    cancel_video(studio, job_id, "local")
    row = wait_video(studio, job_id, timeout=120)
    assert row["status"] == "cancelled" and row["step"] < 50
    assert studio.store.count("generations") == 0


def test_bad_local_size_is_refused(studio, tiny_wan):
    from masuka.errors import InvalidInput

    with pytest.raises(InvalidInput, match="multiples of 16"):
        start_video(studio, local(tiny_wan(), size="30x30"))


def test_sizes_and_clip_lengths_come_from_the_models_config(studio, tiny_wan):
    from masuka.errors import InvalidInput
    from masuka.video.catalog import model_entry

    entry = model_entry("local", str(tiny_wan()))
    # VAE x8 and patch 2 -> multiples of 16; rope table of 32 -> 32 patches a side, 32 latent frames
    assert (entry["size_multiple"], entry["max_side"], entry["frame_multiple"]) == (16, 512, 4)
    assert entry["suggested_sizes"][0] == "512x512" and "1280x720" not in entry["suggested_sizes"]
    assert entry["durations"] == [1, 2, 3, 4, 5, 6, 7]  # 7 s at 16 fps is 113 frames, within (32 - 1) * 4 + 1
    with pytest.raises(InvalidInput, match="multiples of 16 up to 512 \\(got 1280x720\\)"):
        start_video(studio, local(tiny_wan(), size="1280x720"))
    assert studio.store.count("jobs") == 0  # refused before any job
    assert model_entry("local", str(tiny_wan()), fps=30)["durations"] == [1, 2, 3, 4]  # 4 s at 30 fps: 121 frames


def test_a_local_video_longer_than_one_clip_chains_from_the_last_frame(studio, tiny_wan, first_frame, monkeypatch):
    """5 s at 30 fps is more than the rotary table allows in one clip (4 s): a 4 s clip, then a 1 s clip that
    starts from its last frame, joined; a text-only pipeline is refused before any job is made, and an
    image-only one without a first frame (where no profile covers its class: once it is loaded)."""
    from masuka.errors import InvalidInput
    from masuka.video import limits

    with pytest.raises(InvalidInput, match="from an image only: give a first frame"):
        start_video(studio, local(tiny_wan(True), steps=1))  # its profile says so: refused before it loads
    assert studio.store.count("jobs") == 0
    with monkeypatch.context() as patched:
        patched.setattr(limits, "for_video_pipeline", lambda _class: None)  # a class no profile covers
        uncovered = wait_video(studio, start_video(studio, local(tiny_wan(True), steps=1)), timeout=120)
    assert uncovered["status"] == "failed" and "from an image only: give a first frame" in uncovered["error"]
    job_id = start_video(studio, local(tiny_wan(True), image=str(first_frame), seconds=5, fps=30, steps=1))
    row = wait_video(studio, job_id, timeout=240)
    assert row["status"] == "completed", row["error"]
    assert frames_and_size(studio.config.absolute(row["result"]["video"])) == (121 + 33, (32, 32))  # 4 s, 1 s
    assert studio.store.find("generations", "job_id = ?", [job_id])[0]["params"]["segments"] == [4, 1]
    assert (studio.config.outputs_dir / "videos" / "clips" / f"{job_id:06d}" / "frame-01.png").is_file()
    jobs = studio.store.count("jobs")
    with pytest.raises(InvalidInput, match="makes clips up to 4 s and cannot continue from a frame"):
        start_video(studio, local(tiny_wan(), seconds=5, fps=30, steps=1))
    assert studio.store.count("jobs") == jobs  # refused before any job waits for the GPU or loads the model


def test_a_local_video_left_queued_by_a_stopped_app_is_made_after_the_restart(studio, tiny_wan):
    from masuka import jobs
    from masuka.video.jobs import resume_video_jobs

    made = wait_video(studio, start_video(studio, local(tiny_wan())), timeout=120)
    waiting = jobs.create(studio.store, "video", title=made.title, provider="local", model=made.model,
                          params=made.params, total=1, lane="gpu", queued_at="2026-01-01T00:00:00+00:00",
                          pid=2**22 + 17, holder="a process that is gone", state={"phase": "queued"})
    studio.store.mark_interrupted()
    assert resume_video_jobs(studio).queued == [waiting] and jobs.get(studio.store, waiting).status == "queued"
    studio.jobs.adopt("gpu")
    row = wait_video(studio, waiting, timeout=120)
    assert row.status == "completed", row.error
    check_mp4(studio.config.absolute(row.result["video"]))


@pytest.fixture
def busy_gpu(studio):
    """The GPU lane held by another job until the returned event is set."""
    import threading

    from masuka import jobs

    done = threading.Event()
    busy = jobs.create(studio.store, "caption", "someone")
    studio.runner().submit(busy, lambda ctx: done.wait(60), lane="gpu")
    assert wait_until(lambda: jobs.get(studio.store, busy).status == "running")
    yield done
    done.set()
    assert wait_until(lambda: jobs.get(studio.store, busy).finished)


def test_a_video_waiting_for_the_gpu_is_cancelled_at_once(studio, tiny_wan, busy_gpu):
    """Cancelled while still queued, the job ends at once (it no longer counts as waiting work) and never runs."""
    from masuka import jobs

    job_id = start_video(studio, local(tiny_wan()))
    assert jobs.get(studio.store, job_id).status == "queued"
    assert cancel_video(studio, job_id, "local").status == "cancelled"
    busy_gpu.set()
    assert not wait_until(lambda: jobs.get(studio.store, job_id).status != "cancelled", timeout=2)
    assert studio.store.count("generations") == 0


def test_ctrl_c_on_a_local_video_in_the_cli_cancels_it_and_says_so(studio, tiny_wan, busy_gpu):
    from masuka import jobs
    from masuka.video.jobs import leave_video

    job_id = start_video(studio, local(tiny_wan()))
    assert leave_video(studio, job_id) == (f"job {job_id} cancelled: a local video is made by this process and "
                                           "stops with it")
    assert jobs.get(studio.store, job_id).status == "cancelled"


@pytest.mark.slow
def test_ctrl_c_mid_denoising_lets_the_step_end_and_exits_130_without_aborting(tmp_path, tiny_wan):
    """The CLI process makes a local video itself: Ctrl-C while its thread is inside the pipeline waits for that
    thread to stop between steps rather than leaving it there as the process exits (which aborted the process)."""
    import signal
    import subprocess
    import sys

    from masuka import jobs
    from masuka.config import Config
    from masuka.store import Store

    child = subprocess.Popen([sys.executable, "-m", "masuka", "video", "--data-dir", str(tmp_path), "--provider",
                              "local", "--model", str(tiny_wan()), "--prompt", "fox", "--seconds", "1", "--steps",
                              "200"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        for line in child.stderr:
            seen.append(line)
            if " step " in line and " step 0/" not in line:  # inside the denoising loop
                child.send_signal(signal.SIGINT)
                break
        rest = child.communicate(timeout=300)[1]
    finally:
        if child.poll() is None:
            child.kill()
    assert any(" step " in line for line in seen), "".join(seen)
    assert child.returncode == 130, rest
    assert "terminate called" not in rest and "cancelled: a local video is made by this process" in rest
    store = Store(Config.read_env(data_dir=tmp_path).db_path)
    assert [row.status for row in jobs.find(store, "kind = 'video'")] == ["cancelled"]


def test_a_chain_of_local_clips_counts_its_steps_forward(studio, tiny_wan, first_frame, monkeypatch):
    """Progress is the denoising steps of the whole chain: it never goes back when the next clip starts."""
    from masuka import jobs

    seen = []
    record = jobs.progress

    def progress(store, job_id, step=None, total=None, **kw):
        if step is not None:
            seen.append((step, total))
        record(store, job_id, step, total, **kw)

    monkeypatch.setattr(jobs, "progress", progress)
    row = wait_video(studio, start_video(studio, local(tiny_wan(True), image=str(first_frame), seconds=5, fps=30,
                                                       steps=2)), timeout=240)
    assert row["status"] == "completed", row["error"]
    assert (row["step"], row["total"], row["progress"]) == (4, 4, 1.0)
    assert seen == sorted(seen) and {total for _step, total in seen} == {4}


def test_a_first_frame_is_seen_upright_cropped_to_shape_and_flattened_on_white(tmp_path):
    """As providers take it: EXIF orientation applied, cropped at the centre (never stretched), and transparent
    pixels white, not the colour stored under them."""
    from PIL import Image

    from masuka.image.copies import fitted_frame

    stored = Image.new("RGBA", (64, 32), (255, 0, 0, 0))  # right half: red, but fully transparent
    stored.paste((0, 0, 255, 255), (0, 0, 32, 32))  # left half: opaque blue
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise: the blue half on top
    path = tmp_path / "phone.png"
    stored.save(path, exif=exif)
    frame = fitted_frame(path, (32, 32))
    assert frame.size == (32, 32) and frame.mode == "RGB"
    assert frame.getpixel((24, 2)) == (0, 0, 255) and frame.getpixel((24, 30)) == (255, 255, 255)


def test_the_cli_shows_a_local_videos_progress_in_steps(studio, tiny_wan, capsys):
    from argparse import Namespace

    from masuka.commands.video import report_job

    job_id = start_video(studio, local(tiny_wan()))
    assert report_job(Namespace(json=False), studio, job_id) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"job {job_id}: completed step 2/2 100%" and not any("clip" in line for line in lines)


def test_a_local_pipeline_gets_the_negative_prompt(studio, tiny_wan, monkeypatch):
    """The local provider's catalog flag (any pipeline folder, in the catalog or not) holds: the negative prompt
    reaches the pipeline call."""
    import functools

    import diffusers

    real, seen = diffusers.WanPipeline.__call__, []

    @functools.wraps(real)  # the provider reads the call's parameters from its signature
    def call(self, *args, **kwargs):
        seen.append(kwargs.get("negative_prompt"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.WanPipeline, "__call__", call)
    row = wait_video(studio, start_video(studio, local(tiny_wan(), steps=1, negative_prompt="no smoke")),
                     timeout=120)
    assert row["status"] == "completed", row["error"]
    assert seen == ["no smoke"]


def test_a_local_video_holds_its_repo_from_its_download_to_its_end(studio, tiny_wan, monkeypatch, tmp_path):
    """An admin deleting the model in the Models tab while the video loads or runs is refused, not let through
    to break the load (or download the model again inside the GPU slot)."""
    from masuka.models.manage import delete_model
    from tests.models.in_use import cached_repo, deletion_tried_in

    repo = cached_repo(monkeypatch, tmp_path / "hf-cache", tiny_wan(), "acme/tiny-wan")
    refusals = deletion_tried_in(monkeypatch, studio, repo, studio.gpu)
    row = wait_video(studio, start_video(studio, local(repo, steps=1)), timeout=120)
    assert row["status"] == "completed", row["error"]
    assert len(refusals) == 2
    assert delete_model(studio, repo) > 0  # once the video is made


def test_a_local_video_of_a_repo_not_downloaded_fails_offline_before_the_gpu(studio, monkeypatch, tmp_path):
    from tests.models.in_use import use_cache

    use_cache(monkeypatch, tmp_path / "empty-hf-cache")
    slots = []
    monkeypatch.setattr(studio.gpu, "hold", lambda *args, **kwargs: slots.append(args))
    row = wait_video(studio, start_video(studio, local("acme/not-downloaded", size=None, seconds=None)), timeout=60)
    assert row["status"] == "failed" and slots == []
    assert row["error"].startswith("acme/not-downloaded is not downloaded") and "cannot be reached" in row["error"]
    assert "download it in the Models tab" in row["error"]


def test_a_local_video_waiting_for_the_gpu_says_so_and_is_cancelled_before_loading(studio, tiny_wan):
    """Another process's image holds the GPU: the job's phase (the Video tab's) says what it waits for, and a
    cancel ends the wait at once, the model never loaded."""
    from masuka import jobs
    from masuka.video.jobs import GPU_WAIT, video_jobs

    with studio.gpu.hold("image generation for bob"):
        job_id = start_video(studio, local(tiny_wan()))
        assert wait_until(lambda: video_jobs(studio, "local")[0]["phase"].startswith(GPU_WAIT))
        assert video_jobs(studio, "local")[0]["phase"] == f"{GPU_WAIT} (image generation for bob (pid {os.getpid()}))"
        assert jobs.get(studio.store, job_id).status == "running"
        cancel_video(studio, job_id, "local")
        row = wait_video(studio, job_id, timeout=30)
        assert row.status == "cancelled" and "waited for the GPU" in row.error
    assert studio.models.loads == 0 and studio.store.count("generations") == 0


def _left_by_a_dead_app(studio, made, **columns) -> int:
    """A local video row as a killed app leaves it: running, its pid and holder gone."""
    from masuka import jobs

    values = dict(title=made.title, provider="local", model=made.model, params=made.params, total=2, step=0,
                  status="running", lane="gpu", queued_at="2026-01-01T00:00:00+00:00", pid=2**22 + 17,
                  holder="a process that is gone", state={"phase": "running", "segments": []})
    values.update(columns)
    return jobs.create(studio.store, "video", **values)


def test_a_local_video_still_waiting_for_the_gpu_when_the_app_died_is_queued_again_and_made(studio, tiny_wan):
    from masuka import jobs
    from masuka.video.jobs import GPU_WAIT, resume_video_jobs

    made = wait_video(studio, start_video(studio, local(tiny_wan())), timeout=120)
    waiting = _left_by_a_dead_app(studio, made, state={"phase": f"{GPU_WAIT} (another job)"})
    started = _left_by_a_dead_app(studio, made, step=1)
    adopted = resume_video_jobs(studio)
    assert (adopted.queued, adopted.interrupted, adopted.resumed) == ([waiting], [started], [])
    row = jobs.get(studio.store, waiting)
    assert (row.status, row.lane, row.started_at, row.state["phase"]) == ("queued", "gpu", None, "queued")
    assert jobs.get(studio.store, started).status == "interrupted"
    studio.jobs.adopt("gpu")
    row = wait_video(studio, waiting, timeout=120)
    assert row.status == "completed", row.error
    check_mp4(studio.config.absolute(row.result["video"]))


def test_the_app_takes_up_a_video_whose_process_died_without_a_restart(studio, tiny_wan):
    """The app adopts at start-up and then polls: a row a killed CLI left running is interrupted at the next poll
    (driven here), while the app's own running job is left alone."""
    from masuka import jobs

    made = wait_video(studio, start_video(studio, local(tiny_wan())), timeout=120)
    studio.jobs.adopt("gpu")  # the app is up
    dead = _left_by_a_dead_app(studio, made, step=1)
    with studio.gpu.hold("image generation for bob"):
        mine = start_video(studio, local(tiny_wan()))
        assert wait_until(lambda: jobs.get(studio.store, mine).status == "running")
        studio.jobs.recover()
        assert jobs.get(studio.store, dead).status == "interrupted"
        assert jobs.get(studio.store, mine).status == "running"
    assert wait_video(studio, mine, timeout=120).status == "completed"


def test_jobs_resume_says_what_it_did_not_resume_and_exits_2(studio, tiny_wan, capsys):
    import json

    from masuka import jobs
    from masuka.cli import main
    from masuka.video.jobs import GPU_WAIT

    made = wait_video(studio, start_video(studio, local(tiny_wan())), timeout=120)
    waiting = _left_by_a_dead_app(studio, made, state={"phase": f"{GPU_WAIT} (another job)"})
    started = _left_by_a_dead_app(studio, made, step=1)
    data = ["--data-dir", str(studio.config.data_dir), "--json"]
    assert main(["jobs", "resume", *data]) == 2  # it marked one interrupted
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"jobs": [], "interrupted": [started], "queued": [waiting]}
    assert f"job {started} interrupted: The app stopped while this local video was being made" in captured.err
    assert f"job {waiting} left queued: a local video waiting for the GPU runs in the app" in captured.err
    assert jobs.get(studio.store, waiting).pid is None, "no process holds it: the app's lane claims it at once"
    assert main(["jobs", "resume", str(waiting), *data]) == 2
    assert f"job {waiting} left queued" in capsys.readouterr().err
    assert main(["jobs", "resume", str(made.id), *data]) == 2
    assert f"job {made.id} not resumed: it is already completed" in capsys.readouterr().err


def test_a_job_that_cannot_be_taken_up_is_interrupted_and_the_others_still_are(studio, tiny_wan, monkeypatch):
    """Polling a remote job again can be refused (the owner's share is full, say): that job is interrupted with the
    reason, and the pass goes on to the next job instead of stopping there."""
    from masuka import jobs
    from masuka.errors import GPUBusy
    from masuka.video import jobs as video_jobs

    def refused(*_args):
        raise GPUBusy("alice already has 4 jobs queued or running")

    made = wait_video(studio, start_video(studio, local(tiny_wan())), timeout=120)
    monkeypatch.setattr(video_jobs, "_submit", refused)
    remote = _left_by_a_dead_app(studio, made, provider="openai", step=1)
    started = _left_by_a_dead_app(studio, made, step=1)
    adopted = video_jobs.resume_video_jobs(studio)
    assert adopted.interrupted == [remote, started]
    assert jobs.get(studio.store, remote).error == ("The app could not take this job up again: alice already has 4 "
                                                   "jobs queued or running")


@pytest.mark.parametrize("seed", [2**32, -5, 10**23])
def test_a_seed_out_of_range_is_refused_before_any_job_or_model_load(studio, seed):
    """It reached torch.Generator.manual_seed inside the job: a traceback and a failed job after the model
    loaded (or, within int64, a seed no other tool would reproduce)."""
    with pytest.raises(InvalidInput, match=rf"^The seed must be between 0 and 4294967295 \(got {seed}\)\.$"):
        start_video(studio, local("/nowhere/wan", seed=seed))
    assert studio.store.count("jobs") == 0 and studio.models.loads == 0


def test_seed_minus_one_is_a_random_seed_as_for_images():
    plan = plan_video(local("wan2.2-ti2v-5b", seed=-1, size="1280x704"))
    assert plan.request.seed is None
