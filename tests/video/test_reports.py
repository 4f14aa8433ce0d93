"""What the Video tab, its API and the CLI say of video jobs: each fallback's price and an unhealthy provider, the
cost of a job no provider took, whose jobs an admin sees, the last progress line, a failure after acceptance,
a bad fallback, a retired model."""

from __future__ import annotations

import argparse
import json

import gradio as gr

from masuka import jobs
from masuka.cli import main
from masuka.config import Config
from masuka.remote.health import HealthTracker
from masuka.remote.timing import RemoteSettings
from masuka.studio import Studio
from masuka.video.catalog import REMOTE_PROVIDERS
from masuka.video.jobs import billed_cost, start_video, video_jobs, wait_video
from masuka.video.request import VideoRequest

GEMINI_LINE = "Fallback gemini veo-3.1-generate-001: $3.20 for 8 s"
UNHEALTHY = "openai is marked unhealthy until "
GOES_TO = "A new job goes to fallback gemini veo-3.1-generate-001 ($3.20)."


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_prices_each_fallback_and_says_the_primary_is_unhealthy_as_the_tab_does(studio, fake, capsys):
    from masuka.ui.video import price

    openai, gemini = fake("openai"), fake("gemini")
    settings = RemoteSettings.from_env()
    for _ in range(settings.unhealthy_after):
        HealthTracker(studio.store, settings).failure("openai", "HTTP 500")
    line = price(studio, "openai", "sora-2", 8, "1280x720", None, ["gemini"], "a fox")
    assert f"\n\n{GEMINI_LINE}" in line and f"⚠️ {UNHEALTHY}" in line and GOES_TO in line
    request = ["video", "--data-dir", str(studio.config.data_dir), "--provider", "openai", "--model", "sora-2",
               "--prompt", "a fox", "--seconds", "8", "--fallback", "gemini"]
    code, out, _err = cli(capsys, *request, "--estimate")
    assert code == 0 and f"\n{GEMINI_LINE}\n" in out and f"\nwarning: {UNHEALTHY}" in out and GOES_TO in out
    code, out, _err = cli(capsys, *request, "--estimate", "--json")
    quoted = json.loads(out)
    assert code == 0 and quoted["cost_usd"] == 0.8
    assert quoted["fallbacks"] == [{"provider": "gemini", "model": "veo-3.1-generate-001", "segments": [8],
                                    "cost_usd": 3.2}]
    assert list(quoted["unhealthy"]) == ["openai"] and any(GOES_TO in w for w in quoted["warnings"])
    code, out, err = cli(capsys, *request, "--json")  # the price said before the job runs on the fallback
    result = json.loads(out)
    assert code == 0 and (result["provider"], result["cost_usd"]) == ("gemini", 3.2), err
    assert f"\n{GEMINI_LINE}\n" in err and GOES_TO in err
    assert (openai.creates, gemini.creates) == (0, 1)


def test_the_quote_names_no_fallback_that_a_job_would_refuse(studio, fake, capsys, monkeypatch):
    """openai unhealthy and no gemini key: the quote says no provider can take the job and why, as the run does."""
    from masuka.ui.video import price

    fake("openai")
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = RemoteSettings.from_env()
    for _ in range(settings.unhealthy_after):
        HealthTracker(studio.store, settings).failure("openai", "HTTP 500")
    refused = "No provider can take a new job now, so it would be refused: openai is marked unhealthy until "
    line = price(studio, "openai", "sora-2", 8, "1280x720", None, ["gemini"], "a fox")
    assert refused in line and "no API key for gemini" in line and "A new job goes to" not in line
    request = ["video", "--data-dir", str(studio.config.data_dir), "--provider", "openai", "--model", "sora-2",
               "--prompt", "a fox", "--seconds", "8", "--fallback", "gemini"]
    code, out, _err = cli(capsys, *request, "--estimate")
    assert code == 0 and refused in out and "no API key for gemini" in out and "goes to" not in out
    code, _out, err = cli(capsys, *request)
    assert code != 0 and "No provider can take this job: " in err and "no API key for gemini" in err


def test_unfinished_jobs_stay_in_the_tab_past_the_newest_fifty(studio):
    from masuka.ui.video import video_status

    def job(status: str) -> int:
        return studio.store.insert("jobs", {"kind": "video", "status": status, "provider": "openai", "model": "sora-2",
                                            "title": "a fox", "cost_usd": 0.4})

    running = job("running")
    finished = [job("completed") for _ in range(55)]
    rows = video_jobs(studio, "local")
    assert [row["id"] for row in rows] == [*finished[::-1][:49], running]
    table, _gallery, _latest, _health, _line = video_status(studio)
    assert (table["data"][-1][0], table["data"][-1][2]) == (running, "running")


def test_a_job_refused_at_create_costs_nothing_in_the_tab_jobs_and_video_json(studio, fake, capsys):
    server = fake("runway")
    server.fault("create", 400)
    code, out, _err = cli(capsys, "video", "--data-dir", str(studio.config.data_dir), "--provider", "runway",
                          "--model", "gen4.5", "--prompt", "a fox", "--seconds", "5", "--json")
    made = json.loads(out)
    assert code == 2 and made["status"] == "failed" and made["cost_usd"] is None
    code, out, _err = cli(capsys, "jobs", "--data-dir", str(studio.config.data_dir), "--kind", "video", "--json")
    assert code == 0 and [(job["id"], job["cost_usd"]) for job in json.loads(out)["jobs"]] == [(made["job"], None)]
    assert [row["cost_usd"] for row in video_jobs(studio, "local")] == [None]
    assert server.creates == 0 and jobs.get(studio.store, made["job"]).cost_usd == 0.6  # the estimate, kept


def test_an_admins_latest_video_and_job_line_are_their_own_and_the_table_names_owners(tmp_path, monkeypatch,
                                                                                      sample_mp4):
    from masuka.ui.video import COLUMNS, video_status

    monkeypatch.setenv("MASUKA_ADMINS", "alice")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:pw1,bob:pw2"))
    try:
        made = studio.config.outputs_dir / "videos" / "alice.mp4"
        made.parent.mkdir(parents=True)
        made.write_bytes(sample_mp4)
        row = {"kind": "video", "provider": "openai", "model": "sora-2", "title": "a fox"}
        alices = studio.store.insert("jobs", {**row, "owner": "alice", "status": "completed",
                                              "result": {"video": studio.config.relative(made)}})
        bobs = studio.store.insert("jobs", {**row, "owner": "bob", "status": "running"})
        table, _gallery, latest, _health, line = video_status(studio, gr.Request(username="alice"))
        assert table["headers"] == [*COLUMNS, "owner"]
        assert [(r[0], r[-1]) for r in table["data"]] == [(bobs, "bob"), (alices, "alice")]
        assert latest == str(made) and line == f"Job {alices} (openai sora-2) is done."
        table, _gallery, latest, _health, line = video_status(studio, gr.Request(username="bob"))
        assert table["headers"] == COLUMNS and [r[0] for r in table["data"]] == [bobs]
        assert latest is None and line.startswith(f"Job {bobs} (openai sora-2): ")
    finally:
        studio.close()


def test_the_clis_last_line_for_a_finished_job_drops_the_queue_position(studio, capsys):
    from masuka.commands.video import wait_job

    job = studio.store.insert("jobs", {"kind": "video", "status": "failed", "provider": "fal", "model": "fal-ai/veo3",
                                       "progress": 0.0, "error": "fal could not make the video: flagged",
                                       "state": {"phase": "queued", "note": "queue position 2"}})
    wait_job(argparse.Namespace(json=False), studio, job)
    assert capsys.readouterr().err.splitlines() == [f"job {job}: failed 0%",
                                                    f"error: job {job} failed: fal could not make the video: flagged"]


def test_a_fal_job_flagged_after_it_was_accepted_failed_as_a_made_job(studio, fake):
    server = fake("fal")
    server.fail_jobs = True
    row = wait_video(studio, start_video(studio, VideoRequest("fal", "fal-ai/veo3", "a fox", seconds=8)), timeout=60)
    assert row.status == "failed" and row.external_id and billed_cost(row) == row.cost_usd > 0
    assert row.error == "fal could not make the video: body.prompt: flagged by the content checker (HTTP 422)"
    assert server.creates == 1


def test_a_bad_fallback_lists_only_remote_providers(capsys, tmp_path):
    code, _out, err = cli(capsys, "video", "--data-dir", str(tmp_path / "data"), "--provider", "openai", "--model",
                          "sora-2", "--prompt", "a fox", "--fallback", "nope", "--estimate")
    assert code == 2 and err == (f"error: Fallback 'nope': unknown video provider 'nope': choose one of "
                                 f"{', '.join(REMOTE_PROVIDERS)} (fallbacks are remote providers).\n")
    assert "local" not in err


def test_a_retired_model_started_through_the_api_is_warned_of(studio, fake):
    from masuka.ui.video import generate_video

    fake("openai")
    job, message = generate_video(studio, "a fox", "openai", "sora-2", 4, "1280x720")
    assert message.startswith(f"Job {job} started with openai sora-2 (estimated $0.40).")
    assert "\n\n⚠️ Sora 2 (openai) was retired on 2026-09-24" in message
    assert wait_video(studio, job, timeout=60).finished
