"""Ctrl-C in ``generate --json`` and ``video --json``: stdout still says what was made and what was left, as one JSON
object (as ``train --json`` does), and the command still exits 130 with "interrupted" on stderr."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

from tests.conftest import ROOT


def _masuka(*argv: str) -> subprocess.Popen:
    """``python -m masuka ARGV`` with SIGINT handled as a terminal's Ctrl-C is (not ignored as a test runner may)."""
    return subprocess.Popen([sys.executable, "-m", "masuka", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupted_at_poll(server, *argv: str) -> tuple[int, str, str]:
    """``python -m masuka ARGV`` given Ctrl-C once it polls the fake provider ``server``: its exit code and output."""
    process = _masuka(*argv)
    try:
        assert server.polled.wait(60), "no poll"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out, err


def test_ctrl_c_mid_batch_prints_the_finished_images_and_the_cancelled_one_as_json(tmp_path, tiny_model):
    data = tmp_path / "data"
    process = _masuka("generate", "--data-dir", str(data), "--model", str(tiny_model("flux")), "--prompt", "stop me",
                      "--steps", "200", "--width", "64", "--height", "64", "--seed", "1", "--batch", "3", "--json")
    seen = []
    try:
        for line in process.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith("image 2/3 step"):  # the first image saved, the second being made
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    err = "".join(seen) + err
    assert process.returncode == 130 and err.rstrip().endswith("interrupted"), err
    with sqlite3.connect(data / "masuka.db") as db:
        rows = db.execute("select id, seed, status, output_path from generations order by id").fetchall()
    assert [(seed, status) for _id, seed, status, _path in rows] == [(1, "completed"), (2, "cancelled")], err
    result = json.loads(out)
    assert result == {"images": [str(data / rows[0][3])], "seeds": [1], "ids": [rows[0][0]], "status": "interrupted",
                      "cancelled": [{"id": rows[1][0], "seed": 2}]}, err
    assert "stopped with Ctrl-C: 1 of 3 image(s) made; image with seed 2 cancelled" in err


def test_ctrl_c_while_a_remote_video_runs_prints_the_job_left_running_as_json(tmp_path, fake):
    server = fake("runway")
    server.release.clear()  # the job stays running at the provider
    code, out, err = interrupted_at_poll(server, "video", "--data-dir", str(tmp_path / "data"), "--json", "--provider",
                                         "runway", "--model", "gen4.5", "--prompt", "a lighthouse in a storm",
                                         "--seconds", "5")
    assert code == 130 and err.rstrip().endswith("interrupted"), err
    result = json.loads(out)
    assert (result["job"], result["status"], result["provider"], result["provider_job_id"], result["video"]) == (
        1, "running", "runway", "job1", None), err
    assert result["note"] == "job 1 keeps running at the provider; `python -m masuka jobs resume` picks it up"
    assert server.creates == 1 and server.cancels == 0

    server.polled.clear()  # `jobs resume`, stopped the same way, prints its list with the job left again
    code, out, err = interrupted_at_poll(server, "jobs", "resume", "--data-dir", str(tmp_path / "data"), "--json")
    assert code == 130 and err.rstrip().endswith("interrupted"), err
    resumed = json.loads(out)
    assert [(job["job"], job["status"], job["note"]) for job in resumed["jobs"]] == [(1, "running", result["note"])]
    assert server.creates == 1 and server.cancels == 0
