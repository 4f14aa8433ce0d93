"""LoRA training on remote GPUs (fal, Replicate) against loopback stand-ins: the run row, the upload, one create
request, polling with logs, the LoRA downloaded into the library, failures in the provider's words, Stop as a
provider cancel, and a process killed between accept and poll that resumes without sending twice."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from masuka.errors import InvalidInput, NotFound, ProviderError
from masuka.loras.files import inspect_lora
from masuka.testing.http import Fault
from masuka.testing.training import KEY, FakeTrainer
from masuka.training.options import TrainOptions
from masuka.training.runs import request_stop, resume_run, run_status, start_training

from .conftest import add_dataset

ROOT = Path(__file__).resolve().parents[2]
ENV = {"fal": ("MASUKA_FAL_BASE_URL", "MASUKA_FAL_STORAGE_URL", "MASUKA_FAL_CDN_URL", "FAL_KEY"),
       "replicate": ("MASUKA_REPLICATE_BASE_URL", "REPLICATE_API_TOKEN")}


@pytest.fixture
def trainer(monkeypatch, fast_video):
    """``trainer("fal")`` -> a running :class:`FakeTrainer` with its URLs and key in the environment."""
    started = []

    def start(kind: str) -> FakeTrainer:
        server = FakeTrainer(kind)
        started.append(server)
        *urls, key = ENV[kind]
        for name in urls:
            monkeypatch.setenv(name, server.base)
        monkeypatch.setenv(key, KEY)
        return server

    yield start
    for server in started:
        server.close()


#: options Replicate's trainer takes (fal's take none of them)
REPLICATE_OPTIONS = dict(rank=8, lr=2e-4, resolution=512)


def options(**kw) -> TrainOptions:
    values = dict(dataset="fox", base="flux-dev", steps=4)
    values.update(kw)
    return TrainOptions(**values)


def train(studio, backend: str, **kw) -> dict:
    kw = {**REPLICATE_OPTIONS, **kw} if backend == "replicate" else kw
    run_id = start_training(studio, options(**kw), backend=backend, destination="me/fox-lora")
    studio.jobs.wait(run_id, timeout=60)
    return run_status(studio, run_id)


@pytest.mark.parametrize("backend", ["fal", "replicate"])
def test_a_remote_run_puts_a_checked_lora_in_the_library(studio, trainer, backend):
    server = trainer(backend)
    add_dataset(studio)
    status = train(studio, backend)
    assert status["status"] == "completed", status["error"]
    info = inspect_lora(status["lora"])
    assert info.architecture == "flux" and info.trigger == "sks"
    assert (info.metadata["masuka.provider"], info.metadata["masuka.base_model"]) == (backend, "flux-dev")
    row = studio.store.find("loras", "job_id = ?", [status["run"]])[0]
    assert row["source"] == backend and studio.config.absolute(row["path"]) == Path(status["lora"])
    assert server.creates == 1 and ("step 2/4" if backend == "fal" else "| 2/4 [") in status["log"]
    with zipfile.ZipFile(io.BytesIO(server.uploads[0])) as archive:
        names = sorted(archive.namelist())
        assert names == ["0000.png", "0000.txt", "0001.png", "0001.txt", "0002.png", "0002.txt"]
        assert archive.read("0001.txt").decode() == "sks, a red fox number 1"
    job = studio.store.get("jobs", status["run"])
    assert job["cost_usd"] > 0 and job["external_id"] == "job1"
    assert KEY not in json.dumps(job, default=str)
    files = [r for r in server.requests if r.headers["host"].startswith("localhost")]
    assert files and all(KEY not in json.dumps(r.headers) for r in files)


def test_each_service_gets_its_documented_request(studio, trainer):
    fal, replicate = trainer("fal"), trainer("replicate")
    add_dataset(studio)
    train(studio, "fal")
    train(studio, "replicate")
    assert fal.payloads[0] == {"route": "fal-ai/flux-lora-fast-training", "images_data_url": fal.other_origin +
                               "/files/dataset-1.zip", "trigger_word": "sks", "steps": 4, "is_style": False,
                               "create_masks": True}
    sent = replicate.payloads[0]
    assert sent["path"] == "/v1/models/ostris/flux-dev-lora-trainer/versions/v42/trainings"
    assert sent["destination"] == "me/fox-lora"
    assert sent["input"] == {"input_images": replicate.other_origin + "/files/dataset.zip", "trigger_word": "sks",
                             "steps": 4, "lora_rank": 8, "learning_rate": 2e-4, "resolution": "512",
                             "autocaption": False}


@pytest.mark.parametrize("backend", ["fal", "replicate"])
def test_rate_limits_and_server_errors_are_waited_out_without_a_second_job(studio, trainer, backend):
    server = trainer(backend)
    add_dataset(studio)
    server.fault("create", 429, {"Retry-After": "0"})
    server.fault("poll", 503, times=2)
    server.fault("upload", 500)
    server.cut_downloads = 1
    status = train(studio, backend)
    assert status["status"] == "completed", status["error"]
    assert server.creates == 1 and inspect_lora(status["lora"]).architecture == "flux"


@pytest.mark.parametrize("backend, words", [("fal", "too few images"), ("replicate", "CUDA out of memory")])
def test_a_job_that_fails_at_the_service_says_why(studio, trainer, backend, words):
    server = trainer(backend)
    server.fail_jobs = True
    add_dataset(studio)
    status = train(studio, backend)
    assert status["status"] == "failed" and words in status["error"] and status["lora"] is None


@pytest.mark.parametrize("backend", ["fal", "replicate"])
def test_stop_cancels_the_job_at_the_service(studio, trainer, backend):
    server = trainer(backend)
    server.release.clear()
    add_dataset(studio)
    run_id = start_training(studio, options(), backend=backend, destination="me/fox-lora")
    deadline = time.monotonic() + 30
    while not (studio.store.get("jobs", run_id)["state"] or {}).get("ref"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    request_stop(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    assert run_status(studio, run_id)["status"] == "cancelled" and server.cancels == 1


def test_bad_choices_are_refused_before_anything_is_sent(studio, trainer, monkeypatch):
    server = trainer("replicate")
    add_dataset(studio)
    with pytest.raises(InvalidInput, match="trains LoRAs for flux-dev"):
        start_training(studio, options(base="sdxl"), backend="replicate", destination="me/x")
    with pytest.raises(InvalidInput, match="destination model"):
        start_training(studio, options(), backend="replicate")
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    with pytest.raises(InvalidInput, match="REPLICATE_API_TOKEN"):
        start_training(studio, options(), backend="replicate", destination="me/x")
    assert server.requests == [] and studio.store.count("jobs") == 0


def test_whether_a_run_needs_a_destination_is_the_trainers_declaration(studio, trainer, monkeypatch):
    """The destination check and the Train tab's label follow ``needs_destination``, not a backend's name."""
    from masuka.training.backends import remote_backends
    from masuka.ui import train as train_tab

    server = trainer("fal")
    add_dataset(studio)
    monkeypatch.setattr(remote_backends()["fal"], "needs_destination", True)
    with pytest.raises(InvalidInput, match="Training on fal needs a destination model"):
        start_training(studio, options(), backend="fal")
    assert server.requests == [] and studio.store.count("jobs") == 0
    monkeypatch.setattr(remote_backends()["replicate"], "needs_destination", False)
    with gr.Blocks():
        fields, _cost = train_tab._options()
    assert fields["destination"].label == "fal destination (owner/model)"
    assert "fal or replicate" in fields["backend"].info


@pytest.mark.parametrize("backend, change, message", [
    ("fal", {"gpus": 2}, "fal.ai trains on its own GPUs: --gpus is for local training"),
    ("replicate", {"rank": -4}, "Rank must be"),
    ("replicate", {"lr": -1.0}, "Learning rate must be above 0"),
    ("replicate", {"lr": 0.0}, "Learning rate must be above 0"),
    ("replicate", {"resolution": 7}, "Resolution must be"),
    ("fal", {"rank": 32, "lr": 4e-4}, r"fal.ai's trainer does not take Learning rate \(--lr\), Rank \(--rank\): set "
                                      r"them back to 0.0001, 16 \(or leave them out on the command line\)"),
    ("fal", {"sample_prompts": ["sks fox"], "sample_every": 2},
     r"does not take Sample prompts \(--sample-prompt\), Sample every N steps \(--sample-every\): set them "
     r"back to none, 0 .*, or train locally"),
    ("replicate", {"train_text_encoder": True}, r"does not take Text-encoder training \(--train-text-encoder\): "
                                                r"set it back to off"),
    ("replicate", {"batch_size": 2, "optimizer": "adafactor"}, r"does not take Batch size \(--batch-size\), "
                                                             r"Optimizer \(--optimizer\): set them back to 1, adamw"),
    ("replicate", {"alpha": 4.0}, r"does not take Alpha \(--alpha\)"),
    ("fal", {"save_every": 100, "caption_dropout": 0.1},
     r"Caption dropout \(--caption-dropout\), Save every N steps \(--save-every\): set them back to 0.05, 250"),
])
def test_options_a_remote_trainer_cannot_honour_are_refused_before_anything_is_sent(studio, trainer, backend,
                                                                                    change, message):
    server = trainer(backend)
    add_dataset(studio)
    with pytest.raises(InvalidInput, match=message):
        start_training(studio, options(**change), backend=backend, destination="me/fox-lora")
    assert server.requests == [] and studio.store.count("jobs") == 0


def test_the_train_tab_defaults_and_a_preset_are_no_refusal(studio, trainer):
    server = trainer("fal")
    add_dataset(studio)
    status = train(studio, "fal", preset="24gb", lr=1e-4, rank=16, alpha=16.0, save_every=250, keep_last=2)
    assert status["status"] == "completed", status["error"]
    assert "24gb GPU memory preset is for this machine's GPU" in status["log"] and server.creates == 1


def test_a_remote_lora_is_pushed_to_the_hub(studio, trainer, monkeypatch):
    from masuka.training import export

    pushed = []
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(export, "push_to_hub", lambda folder, repo_id, token, private=True: pushed.append(
        (sorted(p.name for p in folder.iterdir()), repo_id)) or f"https://huggingface.co/{repo_id}")
    trainer("fal")
    add_dataset(studio)
    status = train(studio, "fal", push_to_hub="me/fox")
    assert status["status"] == "completed" and status["hub_url"] == "https://huggingface.co/me/fox"
    assert pushed == [([Path(status["lora"]).name], "me/fox")]


def test_replicate_progress_follows_its_trainers_tqdm_bar(studio, trainer):
    server = trainer("replicate")
    server.release.clear()
    add_dataset(studio)
    run_id = start_training(studio, options(steps=4), backend="replicate", destination="me/fox-lora")
    deadline = time.monotonic() + 30
    while studio.store.get("jobs", run_id)["step"] < 2:  # polls 3+: "…| 1/4 [", "…| 2/4 [" after a 2/2 loading bar
        assert time.monotonic() < deadline
        time.sleep(0.05)
    row = studio.store.get("jobs", run_id)
    assert row["step"] == 2 and row["progress"] == 0.5 and "flux_train_replicate:  50%|" in row["log"]
    server.release.set()
    assert studio.jobs.wait(run_id, timeout=30)["status"] == "completed"


def test_a_resume_after_the_service_refused_the_run_uploads_the_dataset_again(studio, trainer):
    server = trainer("fal")
    dataset_id = add_dataset(studio)
    server.fault("create", 422, body={"detail": [{"loc": ["body", "images_data_url"], "msg": "too few images",
                                                  "type": "value_error"}]})
    run_id = start_training(studio, options(), backend="fal")
    studio.jobs.wait(run_id, timeout=30)
    assert "too few images" in run_status(studio, run_id)["error"]
    image = studio.store.find("dataset_images", "dataset_id = ?", [dataset_id])[0]
    studio.store.update("dataset_images", image["id"], caption="sks, a fox renamed")
    resume_run(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    assert run_status(studio, run_id)["status"] == "completed"
    assert len(server.uploads) == 2 and server.payloads[-1]["images_data_url"].endswith("/dataset-2.zip")
    with zipfile.ZipFile(io.BytesIO(server.uploads[-1])) as archive:
        assert "sks, a fox renamed" in [archive.read(n).decode() for n in archive.namelist() if n.endswith(".txt")]


def test_a_finished_fal_job_whose_result_keeps_failing_fails_with_fals_words(studio, trainer):
    server = trainer("fal")
    add_dataset(studio)
    server.fault("result", 500, body={"detail": "Internal Server Error: trainer output lost"}, times=10**6)
    status = train(studio, "fal")
    assert status["status"] == "failed" and "HTTP 500: Internal Server Error: trainer output lost" in status["error"]


def test_an_expired_fal_result_is_told_as_expired_not_as_a_failed_training(studio, trainer):
    server = trainer("fal")
    add_dataset(studio)
    server.fault("result", 404, body={"detail": "Request not found"})
    status = train(studio, "fal")
    assert status["status"] == "failed" and "fal no longer has the result" in status["error"]
    assert "reports the training failed" not in status["error"]


def test_a_missing_replicate_destination_is_told_before_the_upload(studio, trainer):
    server = trainer("replicate")
    add_dataset(studio)
    server.fault("model", 404, body={"detail": "Not found."})
    status = train(studio, "replicate")
    assert status["status"] == "failed" and "Replicate has no model 'me/fox-lora'" in status["error"]
    assert server.uploads == [] and server.creates == 0


def test_a_key_in_a_providers_error_never_reaches_the_health_table(studio, trainer):
    server = trainer("fal")
    add_dataset(studio)
    server.fault("poll", 503, body={"detail": f"bad gateway for key {KEY}"}, times=2)
    assert train(studio, "fal")["status"] == "completed"
    health = json.dumps(studio.store.find("provider_health"), default=str)
    assert "bad gateway for key" in health and KEY not in health


def _cli(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "masuka", "train", "--backend", "fal", "--dataset", "fox", "--base", "flux-dev",
            "--steps", "4", "--data-dir", str(data_dir), "--json", *extra]


def test_cli_prints_the_price_then_the_run_as_json(studio, trainer):
    trainer("fal")
    add_dataset(studio)
    done = subprocess.run(_cli(studio.config.data_dir), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"run", "status", "lora", "steps", "final_loss"}
    assert (result["status"], result["steps"], result["final_loss"]) == ("completed", 4, None)
    assert Path(result["lora"]).is_file() and "estimated $0.01" in done.stderr


def _kill_after_accept(studio, server: FakeTrainer, number: int = signal.SIGKILL) -> int:
    """Run ``train --backend fal`` in a process and send it signal ``number`` once the service accepted and was
    polled; returns its exit code."""
    child = subprocess.Popen(_cli(studio.config.data_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not (server.creates and server.jobs["job1"]["polls"]):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
    finally:
        child.send_signal(number)
    return child.wait(timeout=60)


def test_runs_stop_cancels_at_the_service_a_job_that_a_ctrl_c_left_running(studio, trainer):
    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    assert _kill_after_accept(studio, server, signal.SIGINT) == 1
    run_id = studio.store.find("jobs", "kind = 'train'")[0]["id"]
    done = subprocess.run([sys.executable, "-m", "masuka", "runs", "stop", str(run_id), "--data-dir",
                           str(studio.config.data_dir), "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"run": run_id, "status": "cancelled"}
    assert server.cancels == 1 and server.jobs["job1"]["cancelled"]
    assert "cancelled at fal too" in run_status(studio, run_id)["error"]


def test_a_run_killed_between_accept_and_poll_resumes_without_sending_twice(studio, trainer):
    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    _kill_after_accept(studio, server)
    studio.store.mark_interrupted()
    row = studio.store.find("jobs", "kind = 'train'")[0]
    assert row["status"] == "interrupted" and row["state"]["ref"]["id"] == "job1"
    server.release.set()
    resume_run(studio, row["id"])
    studio.jobs.wait(row["id"], timeout=60)
    status = run_status(studio, row["id"])
    assert status["status"] == "completed", status["error"]
    assert server.creates == 1 and "resuming" in status["log"]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_cli_leaves_the_job_at_the_service_and_the_app_follows_it(studio, trainer, number):
    from masuka.training.runs import resume_remote_runs

    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    assert _kill_after_accept(studio, server, number) == 1
    row = studio.store.find("jobs", "kind = 'train'")[0]
    assert (row["status"], row["state"]["ref"]["id"]) == ("interrupted", "job1"), row["error"]
    assert server.cancels == 0 and not server.jobs["job1"]["cancelled"]
    server.release.set()
    assert resume_remote_runs(studio) == [row["id"]]
    studio.jobs.wait(row["id"], timeout=60)
    assert run_status(studio, row["id"])["status"] == "completed" and server.creates == 1


def test_the_train_tab_shows_the_price_and_trains_remotely(live_app, trainer):
    from gradio_client import Client

    from masuka.ui.train import remote_price

    server = trainer("fal")
    assert "estimated $2.00" in remote_price("fal", "flux-dev", 1000) and remote_price("local", "flux-dev", 9) == ""
    assert "trains LoRAs for flux-dev" in remote_price("replicate", "sdxl", 100)
    app = live_app()
    add_dataset(app.studio)
    client = Client(app.url, verbose=False)
    started = client.predict("fox", "flux-dev", "24gb", 4, 1e-4, 16, 16, 0, 1, 0, "adamw", "constant", 0, 0.05, 42,
                             "", 0, 250, 2, "fal", "", api_name="/start_training")
    app.studio.jobs.wait(started["run"], timeout=60)
    status = client.predict(started["run"], api_name="/training_status")
    assert status["status"] == "completed" and Path(status["lora"]).is_file() and server.creates == 1


def test_a_run_that_died_while_its_create_request_was_in_flight_is_never_sent_again(studio, trainer):
    from masuka.training.runs import create_run

    server = trainer("fal")
    add_dataset(studio)
    run_id = create_run(studio, options(), backend="fal")
    state = studio.store.get("jobs", run_id)["state"]
    studio.store.update("jobs", run_id, status="interrupted", state={**state, "submitting": True,
                                                                      "upload": "https://files.test/d.zip"})
    with pytest.raises(InvalidInput, match=f"Run {run_id} needs attention: MASUKA sent this run to fal but never "
                                           "heard back"):
        resume_run(studio, run_id)
    row = studio.store.get("jobs", run_id)
    assert row["status"] == "interrupted" and server.creates == 0


def test_resume_of_a_run_that_needs_attention_is_refused_in_the_same_words_everywhere(studio, trainer):
    """A run whose create request got no answer (a 504) is never sent again: its Resume, from the Train tab, the
    API or the CLI, is refused up front instead of queueing it only to fall back to ``interrupted``."""
    from masuka.ui import train as train_tab

    server = trainer("fal")
    add_dataset(studio)
    server.fault("create", 504)
    run_id = start_training(studio, options(), backend="fal")
    row = studio.jobs.wait(run_id, timeout=30)
    assert row.status == "interrupted" and row.error.startswith("Needs attention: MASUKA sent this run to fal")
    refusal = (f"Run {run_id} needs attention: MASUKA sent this run to fal but never heard back, so it may have been "
               "accepted (and charged): check your fal dashboard. Start a new run to train again.")
    sent, log = len(server.requests), row.log
    with pytest.raises(InvalidInput) as refused:
        resume_run(studio, run_id)
    assert str(refused.value) == refusal
    with pytest.raises(gr.Error) as shown:  # the Train tab's Resume (its price check refuses it the same way)
        train_tab.resume_or_confirm(studio, run_id)
    assert shown.value.message == refusal
    done = subprocess.run([sys.executable, "-m", "masuka", "train", "--resume", str(run_id), "--data-dir",
                           str(studio.config.data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr.strip()) == (2, f"error: {refusal}")
    after = studio.store.get("jobs", run_id)
    assert (after["status"], after["error"], after["log"]) == ("interrupted", row.error, log)
    assert len(server.requests) == sent



def test_the_app_resumes_an_accepted_remote_run_by_itself(studio, trainer):
    from masuka.training.runs import resume_remote_runs

    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    _kill_after_accept(studio, server)
    local = studio.store.insert("jobs", {"kind": "train", "status": "interrupted", "owner": "local",
                                         "params": {"backend": "local"}, "state": {}})
    studio.store.mark_interrupted()  # what the next start does
    server.release.set()
    [run_id] = resume_remote_runs(studio)
    studio.jobs.wait(run_id, timeout=60)
    assert run_status(studio, run_id)["status"] == "completed" and server.creates == 1
    assert studio.store.get("jobs", local)["status"] == "interrupted"


def test_the_flux2_trainer_gets_the_field_names_fal_documents(studio, trainer):
    from masuka.remote.health import HealthTracker
    from masuka.remote.timing import RemoteSettings
    from masuka.training.backends import trainer_entry
    from masuka.training.backends.base import TrainRequest
    from masuka.training.backends.fal import FalTrainer

    fal = trainer("fal")
    settings = RemoteSettings.from_env()
    service = FalTrainer(settings, HealthTracker(studio.store, settings), KEY)
    entry = trainer_entry("fal", "flux2-dev")
    service.submit(TrainRequest(entry=entry, data_url="https://cdn.example/d.zip", trigger="sks", steps=500,
                                rank=16, lr=None, resolution=None))
    assert fal.payloads[0] == {"route": "fal-ai/flux-2-trainer", "image_data_url": "https://cdn.example/d.zip",
                               "steps": 500}


def _wait_for(studio, run_id: int, ready) -> None:
    """Wait until ``ready(row)`` holds for the run's row."""
    deadline = time.monotonic() + 30
    while not ready(studio.store.get("jobs", run_id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _accepted(row) -> bool:
    return bool((row["state"] or {}).get("ref"))


def test_a_stop_during_the_upload_ends_the_run_before_any_job_is_sent(studio, trainer):
    server = trainer("fal")
    add_dataset(studio)
    server.fault("upload", 503, {"Retry-After": "1"})  # a slow upload: tried again in a second
    run_id = start_training(studio, options(), backend="fal")
    _wait_for(studio, run_id, lambda row: server.requests_to("/files/upload"))
    stopping = request_stop(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    assert server.creates == 0 and server.cancels == 0 and len(server.uploads) == 1
    status = run_status(studio, run_id)
    assert status["status"] == "cancelled" and "before the job was sent to fal" in status["error"]
    assert (stopping["status"], stopping["phase"]) == ("running", "uploading") and "stop noted" in stopping["log"]


def test_a_cancel_the_service_does_not_take_leaves_the_run_to_stop_again(studio, trainer):
    server = trainer("replicate")
    server.release.clear()
    add_dataset(studio)
    server.fault("cancel", 503, times=100)
    run_id = start_training(studio, options(**REPLICATE_OPTIONS), backend="replicate", destination="me/fox-lora")
    _wait_for(studio, run_id, _accepted)
    request_stop(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    row = studio.store.get("jobs", run_id)
    assert row["status"] == "interrupted" and row["state"]["ref"]["id"] == "job1"
    assert "Stop could not cancel the job at Replicate" in row["error"] and "HTTP 503" in row["error"]
    assert not server.jobs["job1"]["cancelled"]
    with pytest.raises(ProviderError) as again:  # Stop again, still not taken: refused as the first Stop was
        request_stop(studio, run_id)
    assert str(again.value) == row["error"] and "may still run, and be charged" in row["error"]
    status = run_status(studio, run_id)
    assert status["status"] == "interrupted" and status["log"].endswith(f" {row['error']}")
    server.faults.clear()
    assert request_stop(studio, run_id)["status"] == "cancelled"  # Stop again: the cancel is sent again
    assert server.jobs["job1"]["cancelled"] and "cancelled at Replicate too" in run_status(studio, run_id)["error"]


def test_the_app_follows_a_job_whose_cancel_failed_when_it_starts_again(studio, trainer):
    from masuka.training.runs import resume_remote_runs

    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    server.fault("cancel", 500, times=100)
    run_id = start_training(studio, options(), backend="fal")
    _wait_for(studio, run_id, _accepted)
    request_stop(studio, run_id)
    assert studio.jobs.wait(run_id, timeout=30)["status"] == "interrupted"
    server.release.set()
    assert resume_remote_runs(studio) == [run_id]
    studio.jobs.wait(run_id, timeout=30)
    status = run_status(studio, run_id)
    assert status["status"] == "completed" and Path(status["lora"]).is_file() and server.creates == 1


def test_a_stop_that_comes_after_the_job_completed_downloads_the_lora(studio, trainer, monkeypatch):
    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    take_fault = server.take_fault

    def completed_before_the_cancel(route: str):
        if route == "cancel":  # the job completes just as Stop arrives: fal refuses to cancel it
            server.jobs["job1"]["polls"] = server.polls_to_finish
            server.release.set()
            return Fault("cancel", 400, body={"status": "ALREADY_COMPLETED"})
        return take_fault(route)

    monkeypatch.setattr(server, "take_fault", completed_before_the_cancel)
    run_id = start_training(studio, options(), backend="fal")
    _wait_for(studio, run_id, _accepted)
    request_stop(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    status = run_status(studio, run_id)
    assert status["status"] == "completed", status["error"]
    assert Path(status["lora"]).is_file() and "it had ended already" in status["log"]


def test_resume_of_a_run_whose_job_failed_at_the_service_sends_a_new_job(studio, trainer):
    server = trainer("fal")
    server.fail_jobs = True
    add_dataset(studio, images=3)
    run_id = start_training(studio, options(), backend="fal")
    studio.jobs.wait(run_id, timeout=30)
    assert "too few images" in run_status(studio, run_id)["error"]
    server.fail_jobs = False  # the user added images, then pressed Resume
    resume_run(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    status = run_status(studio, run_id)
    assert status["status"] == "completed", status["error"]
    assert server.creates == 2 and len(server.uploads) == 2 and "resuming: polling" not in status["log"]
    assert "fal job job1 ended (failed): sending the run again as a new job (estimated $0.01)" in status["log"]
    assert "accepted by fal as job2" in status["log"]


def _stopped_at_replicate(studio, trainer):
    """A Replicate run accepted (its job held running at the stand-in) and then stopped by its user."""
    server = trainer("replicate")
    server.release.clear()
    add_dataset(studio)
    run_id = start_training(studio, options(**REPLICATE_OPTIONS), backend="replicate", destination="me/fox-lora")
    _wait_for(studio, run_id, _accepted)
    request_stop(studio, run_id)
    return server, run_id


def test_resume_of_a_user_stopped_run_sends_a_new_job(studio, trainer):
    server, run_id = _stopped_at_replicate(studio, trainer)
    studio.jobs.wait(run_id, timeout=30)
    assert run_status(studio, run_id)["error"] == "Stopped by the user; cancelled at Replicate too."
    server.release.set()
    resume_run(studio, run_id)
    studio.jobs.wait(run_id, timeout=30)
    status = run_status(studio, run_id)
    assert status["status"] == "completed", status["error"]
    assert server.creates == 2 and studio.store.get("jobs", run_id)["external_id"] == "job2"


def test_resume_of_a_stopped_run_whose_dataset_was_deleted_is_refused_and_leaves_the_run_as_it_was(studio, trainer):
    """A new job uploads the dataset as it is then: with the dataset gone, Resume (and its price) is refused in
    the words a local run gets, before the run's record of its last job is touched."""
    from masuka.datasets.library import delete_dataset
    from masuka.training.runs import resume_price

    server, run_id = _stopped_at_replicate(studio, trainer)
    studio.jobs.wait(run_id, timeout=30)
    before = studio.store.get("jobs", run_id)
    delete_dataset(studio, "fox", "local")
    for resume in (resume_price, resume_run):
        with pytest.raises(NotFound, match=r"The dataset this run trained on \('fox'\) was deleted"):
            resume(studio, run_id)
    assert studio.store.get("jobs", run_id) == before and server.creates == 1


def test_a_resume_before_the_stopped_runs_thread_has_ended_is_not_cancelled_by_it(studio, trainer, monkeypatch):
    """The stopped attempt records ``cancelled`` (with its job's end at Replicate) and only then hands the end to
    the runner: a Resume in between (the row reads cancelled) must not be ended by that late write."""
    import threading

    from masuka.training.backends import remote

    held, resumed, threads = threading.Event(), threading.Event(), []
    recorded = remote._end

    def recorded_then_held(*args, **kw):  # the first attempt's thread waits here until the run was resumed
        error = recorded(*args, **kw)
        if not threads:
            threads.append(threading.current_thread())
            held.set()
            resumed.wait(30)
        return error

    monkeypatch.setattr(remote, "_end", recorded_then_held)
    server, run_id = _stopped_at_replicate(studio, trainer)
    assert held.wait(30) and run_status(studio, run_id)["status"] == "cancelled"
    server.release.set()
    resume_run(studio, run_id)
    assert studio.jobs.wait(run_id, timeout=30).status == "completed"
    resumed.set()
    threads[0].join(30)
    status = run_status(studio, run_id)
    assert (status["status"], status["error"]) == ("completed", None)
    assert server.creates == 2 and studio.store.get("jobs", run_id)["external_id"] == "job2"


def test_the_dataset_zip_is_not_kept_in_the_run_folder(studio, trainer):
    server = trainer("fal")
    add_dataset(studio)
    status = train(studio, "fal")
    assert status["status"] == "completed" and len(server.uploads) == 1
    assert not (studio.config.runs_dir / f"run-{status['run']:05d}" / "dataset.zip").exists()


def test_a_remote_runs_phase_and_queue_position_are_shown(studio, trainer):
    from masuka.training.runs import create_run
    from masuka.ui.train import progress_text

    trainer("fal")
    add_dataset(studio)
    run_id = create_run(studio, options(), backend="fal")
    state = studio.store.get("jobs", run_id)["state"]
    studio.store.update("jobs", run_id, status="running", state={**state, "phase": "queued",
                                                                 "note": "queue position 7"})
    status = run_status(studio, run_id)
    assert (status["phase"], status["note"]) == ("queued", "queue position 7")
    assert "**running** — step 0/4 · queued: queue position 7" in progress_text(status)
    studio.store.update("jobs", run_id, state={**state, "phase": "uploading", "note": ""})
    assert "step 0/4 · uploading" in progress_text(run_status(studio, run_id))


def test_the_train_tab_with_its_defaults_sends_replicate_what_the_cli_sends(studio, trainer):
    from masuka.ui import train as train_tab

    server = trainer("replicate")
    add_dataset(studio)
    cli = start_training(studio, options(), backend="replicate", destination="me/fox-lora")  # no --lr
    studio.jobs.wait(cli, timeout=30)
    with gr.Blocks():
        fields, _cost = train_tab._options()
    values = {name: field.value for name, field in fields.items()}
    values.update(base="flux-dev", steps=4, backend="replicate", destination="me/fox-lora")
    tab = train_tab.start(studio, "fox", **values)
    assert studio.jobs.wait(tab["run"], timeout=30)["status"] == "completed"
    assert "learning_rate" not in server.payloads[0]["input"]  # the trainer's own default
    assert server.payloads[1]["input"] == server.payloads[0]["input"]


def test_a_missing_key_tells_a_user_who_cannot_save_it_to_ask_an_admin(tmp_path, monkeypatch):
    from masuka.config import Config
    from masuka.studio import Studio

    monkeypatch.delenv("FAL_KEY", raising=False)
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="admin:pz-admin,alice:pa-alice"))
    try:
        add_dataset(studio, owner="alice")
        with pytest.raises(InvalidInput, match="^No API key for fal: ask an admin to save the key in Settings.$"):
            start_training(studio, options(), "alice", backend="fal")
        with pytest.raises(InvalidInput, match="^No API key for fal: set FAL_KEY or save the key in Settings.$"):
            start_training(studio, options(), "admin", backend="fal")
    finally:
        studio.close()


def tiny_sdxl_lora() -> bytes:
    """A LoRA on SDXL's cross-attention (2048-wide text features), which MASUKA tells SDXL for certain."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    layer = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    return save({f"{layer}.lora_A.weight": rng.standard_normal((4, 2048)).astype(np.float16),
                 f"{layer}.lora_B.weight": rng.standard_normal((64, 4)).astype(np.float16)}, metadata={"format": "pt"})


@pytest.fixture
def remote_only(monkeypatch):
    """SDXL as an architecture MASUKA runs but does not train locally (no ``training``), with a route on each
    service for it: catalog entries only."""
    from dataclasses import replace

    from masuka.models import architectures
    from masuka.training.backends import trainer_catalog

    monkeypatch.setitem(architectures.PROFILES, "sdxl", replace(architectures.PROFILES["sdxl"], training=None))
    entry = {"architecture": "sdxl", "price_per_step": 0.001, "max_steps": 4000, "input": {}}
    monkeypatch.setitem(trainer_catalog()["fal"]["trainers"], "sdxl-base",
                        {**entry, "name": "SDXL LoRA (fal)", "route": "fal-ai/sdxl-lora-training"})
    monkeypatch.setitem(trainer_catalog()["replicate"]["trainers"], "sdxl-base",
                        {**entry, "name": "SDXL LoRA (Replicate)", "model": "someone/sdxl-lora-trainer"})


@pytest.mark.parametrize("backend", ["fal", "replicate"])
def test_a_route_for_an_architecture_masuka_does_not_train_locally_is_a_catalog_entry(studio, trainer, remote_only,
                                                                                       backend):
    server = trainer(backend)
    server.lora = tiny_sdxl_lora()
    add_dataset(studio)
    status = train(studio, backend, base="sdxl-base")
    assert status["status"] == "completed", status["error"]
    assert inspect_lora(status["lora"]).architecture == "sdxl"
    assert server.creates == 1


@pytest.mark.parametrize("backend, change, message", [
    ("fal", {"lr": 4e-4}, r"fal.ai's trainer does not take Learning rate \(--lr\): set it back to"),
    ("replicate", {"resolution": 515}, "Resolution must be a multiple of 8 for SDXL"),
    ("replicate", {"lr": 0.0}, "Learning rate must be above 0"),
])
def test_options_for_an_architecture_masuka_does_not_train_locally_are_checked(studio, trainer, remote_only, backend,
                                                                              change, message):
    server = trainer(backend)
    add_dataset(studio)
    with pytest.raises(InvalidInput, match=message):
        start_training(studio, options(base="sdxl-base", **change), backend=backend, destination="me/fox-lora")
    assert server.requests == [] and studio.store.count("jobs") == 0


@pytest.mark.parametrize("backend", ["fal", "replicate"])
def test_a_remote_lora_for_another_architecture_fails_the_run_and_stays_out_of_the_library(studio, trainer,
                                                                                           remote_only, backend):
    trainer(backend)  # serves a FLUX.1 LoRA
    add_dataset(studio)
    status = train(studio, backend, base="sdxl-base")
    assert status["status"] == "failed" and status["lora"] is None
    assert "LoRA for FLUX.1" in status["error"] and "SDXL" in status["error"]
    assert studio.store.count("loras") == 0


def test_a_remote_run_has_no_checkpoints_to_compare_and_says_why(studio, trainer):
    from masuka.training.checkpoint_lora import checkpoint_loras

    trainer("fal")
    add_dataset(studio)
    status = train(studio, "fal")
    assert status["status"] == "completed", status["error"]
    with pytest.raises(InvalidInput, match=r"trained at fal\.ai.*: a remote run keeps no checkpoints"):
        checkpoint_loras(studio, status["run"])


def test_an_option_is_named_as_the_train_tab_labels_it():
    """A refusal names an option by the Train tab's label and the CLI's flag: each name is its box's label."""
    from masuka.training.options import OPTION_NAMES
    from masuka.ui import train as train_tab

    with gr.Blocks():
        fields, _cost = train_tab._options()
    shown = {name: box.label for name, box in fields.items() if name in OPTION_NAMES}
    assert len(shown) >= 15 and all(label.startswith(OPTION_NAMES[name][0]) for name, label in shown.items())


def test_a_start_beyond_the_users_share_leaves_no_run_and_shows_no_confirmation(tmp_path, trainer, tiny_model):
    """The per-user queue limit refuses a start before anything is recorded (no failed run to list or resume, no
    run folder), and a remote one before its billed confirmation is offered."""
    from masuka import jobs
    from masuka.config import Config
    from masuka.errors import GPUBusy
    from masuka.studio import Studio
    from masuka.ui import train as train_tab

    server = trainer("fal")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:pw", max_queued_per_user=1))
    try:
        add_dataset(studio, owner="ann")
        jobs.create(studio.store, "download", "ann")  # ann's one queued job
        full = "You already have 1 jobs queued or running"
        with pytest.raises(GPUBusy, match=full):
            start_training(studio, options(), "ann", backend="fal")
        with pytest.raises(GPUBusy, match=full):
            start_training(studio, options(base=str(tiny_model("flux")), preset="24gb", steps=1, resolution=64), "ann")
        with pytest.raises(gr.Error, match=full):  # Train's click: no "Yes, train on fal.ai for about $…"
            train_tab.train_or_confirm(studio, "fox", "flux-dev", steps=4, backend="fal",
                                       request=gr.Request(username="ann"))
        assert studio.store.find("jobs", "kind = 'train'") == [] and server.requests == []
        assert not list(studio.config.runs_dir.glob("run-*"))
    finally:
        studio.close()
