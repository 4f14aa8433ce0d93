"""Ctrl-C in ``generate --json`` and ``video --json``: stdout still says what was made and what was left, as one JSON
object (as ``train --json`` does), and the command still exits 130 with "interrupted" on stderr; SIGTERM (``kill``,
``timeout``) ends them the same way, with exit code 143 and "interrupted by SIGTERM"."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _masuka(*argv: str) -> subprocess.Popen:
    """``python -m masuka ARGV`` with SIGINT handled as a terminal's Ctrl-C is (not ignored as a test runner may)."""
    return subprocess.Popen([sys.executable, "-m", "masuka", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def ctrl_c(process: subprocess.Popen, ready: Callable[[], bool], job_id: int | None = None,
           sent: signal.Signals = signal.SIGINT) -> tuple[int, str, str]:
    """Ctrl-C (or the signal ``sent``) to ``process`` once ``ready()`` (after its first progress line for video job
    ``job_id``, when given): its exit code, stdout and whole stderr."""
    seen: list[str] = []
    try:
        if job_id is not None:
            seen = waiting_for(process, job_id)
        deadline = time.monotonic() + 120
        while not ready():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(sent)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out, "".join(seen) + err


def interrupted_at_poll(server, *argv: str, sent: signal.Signals = signal.SIGINT) -> tuple[int, str, str]:
    """``python -m masuka ARGV`` given Ctrl-C (or ``sent``) once it polls the fake provider ``server``: its exit code
    and output."""
    return ctrl_c(_masuka(*argv), server.polled.is_set, sent=sent)


def ended_by(sent: signal.Signals, code: int, err: str) -> bool:
    """Whether a command ended as the signal ``sent`` should end it: Ctrl-C's exit code 130 and "interrupted", or
    128 plus the signal's number and "interrupted by NAME"."""
    if sent == signal.SIGINT:
        return code == 130 and err.rstrip().endswith("interrupted")
    return code == 128 + sent and err.rstrip().endswith(f"interrupted by {sent.name}")


def waiting_for(process: subprocess.Popen, job_id: int) -> list[str]:
    """The stderr lines of ``process`` until its first progress line for video job ``job_id``: it waits for the job
    then (Ctrl-C leaves the job rather than stopping the command before the wait)."""
    seen = []
    for line in process.stderr:  # type: ignore[union-attr]
        seen.append(line)
        if line.startswith(f"job {job_id}: "):
            return seen
    raise AssertionError("".join(seen))


@pytest.mark.slow
def test_ctrl_c_mid_batch_prints_the_finished_images_and_the_cancelled_one_as_json(tmp_path, tiny_model):
    """(SIGTERM reaches the same handler, named in the messages: the ``video`` command's test below, ``train``'s in
    tests/training/test_cli.py, and the handler itself in the last test here.)"""
    sent = signal.SIGINT
    data = tmp_path / "data"
    process = _masuka("generate", "--data-dir", str(data), "--model", str(tiny_model("flux")), "--prompt", "stop me",
                      "--steps", "60", "--width", "64", "--height", "64", "--seed", "1", "--batch", "3", "--json")
    seen = []
    try:
        for line in process.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith("image 2/3 step"):  # the first image saved, the second being made
                process.send_signal(sent)
                break
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    err = "".join(seen) + err
    assert ended_by(sent, process.returncode, err), err
    with sqlite3.connect(data / "masuka.db") as db:
        rows = db.execute("select id, seed, status, output_path, error from generations order by id").fetchall()
    assert [(seed, status) for _id, seed, status, _path, _error in rows] == [(1, "completed"), (2, "cancelled")], err
    assert rows[1][4] == "Stopped by the user with Ctrl-C.", err  # stopped, not failed with "KeyboardInterrupt"
    result = json.loads(out)
    assert result == {"images": [str(data / rows[0][3])], "seeds": [1], "ids": [rows[0][0]], "status": "interrupted",
                      "cancelled": [{"id": rows[1][0], "seed": 2}]}, err
    assert "stopped with Ctrl-C: 1 of 3 image(s) made; image with seed 2 cancelled" in err


def test_ctrl_c_while_a_remote_video_runs_prints_the_job_left_running_as_json(tmp_path, fake):
    server = fake("runway")
    server.release.clear()  # the jobs stay running at the provider
    data = str(tmp_path / "data")
    left = []
    for prompt, sent in (("a lighthouse in a storm", signal.SIGINT), ("a harbour at dawn", signal.SIGTERM)):
        server.polled.clear()  # two jobs, left running by Ctrl-C and by SIGTERM
        code, out, err = interrupted_at_poll(server, "video", "--data-dir", data, "--json", "--provider", "runway",
                                             "--model", "gen4.5", "--prompt", prompt, "--seconds", "5", sent=sent)
        assert ended_by(sent, code, err), err
        left.append(json.loads(out))
    result = left[0]
    assert (result["job"], result["status"], result["provider"], result["provider_job_id"], result["video"]) == (
        1, "running", "runway", "job1", None), err
    assert result["note"] == "job 1 keeps running at the provider; `python -m masuka jobs resume` picks it up"
    assert (left[1]["job"], left[1]["status"], left[1]["provider_job_id"]) == (2, "running", "job2")
    assert server.creates == 2 and server.cancels == 0

    # `jobs resume`, stopped the same way while it waits for job 1, lists every job it resumed: job 1 left again,
    # and job 2, which its polling (in the background of the same process) completed and downloaded meanwhile
    server.finishing = 1  # only the provider's first job may finish: job2, put first
    server.jobs = {"job2": server.jobs["job2"], "job1": server.jobs["job1"]}
    server.release.set()
    def job_2_completed() -> bool:
        with sqlite3.connect(tmp_path / "data" / "masuka.db") as db:
            return db.execute("select status from jobs where id = 2").fetchone()[0] == "completed"

    code, out, err = ctrl_c(_masuka("jobs", "resume", "--data-dir", data, "--json"), job_2_completed, job_id=1)
    assert code == 130 and err.rstrip().endswith("interrupted"), err
    resumed = json.loads(out)
    assert [(job["job"], job["status"], job.get("note")) for job in resumed["jobs"]] == [
        (1, "running", result["note"]), (2, "completed", None)], err
    video = resumed["jobs"][1]["video"]
    assert video and Path(video).read_bytes() == server.video
    assert server.creates == 2 and server.cancels == 0


def test_ctrl_c_while_the_create_request_is_on_its_way_says_it_may_have_been_charged(tmp_path, fake, monkeypatch):
    server = fake("runway")
    monkeypatch.setenv("MASUKA_VIDEO_TIMEOUT_S", "600")  # the create request waits for its answer...
    server.hang_create_s = 300  # ...which comes long after the command ended
    data = tmp_path / "data"
    process = _masuka("video", "--data-dir", str(data), "--json", "--provider", "runway", "--model", "gen4.5",
                      "--prompt", "a lighthouse in a storm", "--seconds", "5")
    code, out, err = ctrl_c(process, lambda: any(request.method == "POST" for request in server.requests), job_id=1)
    assert code == 130 and err.rstrip().endswith("interrupted"), err
    result = json.loads(out)
    with sqlite3.connect(data / "masuka.db") as db:
        status, external_id = db.execute("select status, external_id from jobs where id = 1").fetchone()
    assert (result["job"], result["status"], result["provider_job_id"]) == (1, status, external_id) == (
        1, "running", None), err
    assert result["note"] == (
        "job 1 was being sent to Runway when stopped, so it may have been accepted (and charged) without MASUKA "
        "learning of it: look at your Runway dashboard; `python -m masuka jobs resume` marks it interrupted (MASUKA "
        "does not send it again by itself)"), err
    assert result["note"] in err

    # as the note says: resuming marks it interrupted, sending nothing again
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.video.jobs import resume_video_jobs

    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        adopted = resume_video_jobs(studio)
        row = studio.store.get("jobs", 1)
    finally:
        studio.close()
    assert (adopted.resumed, adopted.interrupted, row["status"]) == ([], [1], "interrupted")
    assert "may have been accepted (and charged)" in row["error"]
    assert len([r for r in server.requests if r.method == "POST"]) == 1


def test_sigterm_is_an_interrupt_only_while_a_command_runs_and_the_callers_handlers_come_back():
    import os

    from masuka.cli import signals_as_interrupts
    from masuka.errors import Terminated

    found = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGHUP)}
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with pytest.raises(Terminated, match="SIGTERM"), signals_as_interrupts():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # an ignored signal stays ignored
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in this thread at once
        assert signal.getsignal(signal.SIGTERM) == found[signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, ignored)
