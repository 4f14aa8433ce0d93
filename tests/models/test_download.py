"""Model downloads as jobs against a local fake Hub: progress, resume, gated repos, disk space, no network."""

from __future__ import annotations

import json
import threading

import pytest

from masuka.errors import InvalidInput
from masuka.models.catalog import catalog
from masuka.models.manage import cached_repos, delete_model, model_status, start_download
from masuka.services import HUGGINGFACE
from tests.models.fake_hub import TOKEN, FakeRepo, hub_online

WEIGHTS = bytes(range(256)) * 4096  # 1 MiB


def repos() -> dict[str, FakeRepo]:
    return {
        "acme/tiny-pipe": FakeRepo({"model_index.json": b'{"_class_name": "FluxPipeline", '
                                                        b'"transformer": ["diffusers", "FluxTransformer2DModel"]}',
                                    "transformer/model.safetensors": WEIGHTS}),
        "acme/gated": FakeRepo({"model_index.json": b"{}", "vae/model.safetensors": WEIGHTS[:4096]}, gated=True),
        "acme/huge": FakeRepo({"model_index.json": b"{}", "transformer/big.safetensors": b"x" * 10},
                              claimed_sizes={"transformer/big.safetensors": 2**60}),
    }


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with hub_online(monkeypatch, repos(), tmp_path / "hf-cache") as fake:
        yield fake


def finished(studio, job_id):
    return studio.jobs.wait(job_id, timeout=60)


def test_download_shows_progress_then_the_model_as_downloaded_and_delete_frees_it(studio, hub, capsys):
    from masuka.cli import main

    job = finished(studio, start_download(studio, "local", "acme/tiny-pipe"))
    assert job["status"] == "completed" and job["progress"] == 1.0 and job["kind"] == "download"
    assert job["result"]["size_bytes"] >= len(WEIGHTS)
    status = {row["repo"]: row for row in model_status()}
    assert status["acme/tiny-pipe"]["downloaded"] and status["acme/tiny-pipe"]["size_bytes"] >= len(WEIGHTS)
    data = ["--data-dir", str(studio.config.data_dir), "--json"]
    with pytest.raises(SystemExit) as refused:  # deleting asks for --yes, and nothing is deleted without it
        main(["models", "delete", "acme/tiny-pipe", *data])
    assert refused.value.code == 2 and "--yes" in capsys.readouterr().err and "acme/tiny-pipe" in cached_repos()
    assert main(["models", "delete", "acme/tiny-pipe", "--yes", *data]) == 0
    assert json.loads(capsys.readouterr().out)["freed_bytes"] >= len(WEIGHTS)
    assert "acme/tiny-pipe" not in cached_repos()
    with pytest.raises(InvalidInput, match="not in the model cache"):
        delete_model(studio, "acme/tiny-pipe")


def test_broken_transfer_resumes_from_where_it_stopped(studio, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # so the first half lands on disk
    hub.repos["acme/tiny-pipe"].fail_once.add("transformer/model.safetensors")
    job = finished(studio, start_download(studio, "local", "acme/tiny-pipe"))
    assert job["status"] == "completed"
    assert hub.downloads["transformer/model.safetensors"] == 1  # one transfer from byte 0 ...
    assert ("transformer/model.safetensors", len(WEIGHTS) // 2) in hub.resumed  # ... continued, not restarted
    assert "acme/tiny-pipe" in cached_repos()


def test_gated_repo_needs_a_token_with_access(studio, hub):
    job = finished(studio, start_download(studio, "local", "acme/gated"))
    assert job["status"] == "failed"
    assert "gated" in job["error"] and "no Hugging Face token" in job["error"] and "Settings" in job["error"]
    studio.keys.set(HUGGINGFACE, "hf_wrong_token_9999")
    job = finished(studio, start_download(studio, "local", "acme/gated"))
    assert "has no access" in job["error"] and "hf_wrong_token_9999" not in job["error"]
    studio.keys.set(HUGGINGFACE, TOKEN)
    assert finished(studio, start_download(studio, "local", "acme/gated"))["status"] == "completed"



def test_a_gated_repo_with_an_unreadable_key_file_names_the_file_not_a_missing_token(studio, hub):
    studio.keys.set(HUGGINGFACE, TOKEN)
    studio.keys.path.write_text("{not json", encoding="utf-8")  # the token is saved, but cannot be read
    job = finished(studio, start_download(studio, "local", "acme/gated"))
    assert job["status"] == "failed" and "acme/gated is gated" in job["error"]
    assert f"key file {studio.keys.path} cannot be read" in job["error"]
    assert "no Hugging Face token is set" not in job["error"]

def test_not_enough_disk_space_is_refused_before_downloading(studio, hub):
    job = finished(studio, start_download(studio, "local", "acme/huge"))
    assert job["status"] == "failed" and "GB is free" in job["error"]
    assert "transformer/big.safetensors" not in hub.downloads


def test_no_network_says_the_hub_cannot_be_reached(studio, hub, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    job = finished(studio, start_download(studio, "local", "acme/tiny-pipe"))
    assert job["status"] == "failed" and "cannot be reached" in job["error"]


def test_unknown_names_are_refused_and_every_catalog_section_is_listed(studio, hub, monkeypatch, tmp_path):
    from masuka.models import manage

    videos = tmp_path / "video_models.json"
    videos.write_text('{"local": {"models": {"tiny-wan": {"name": "Tiny Wan", "repo": "acme/tiny-pipe"}}},'
                      ' "openai": {"models": {"sora-2": {"name": "Sora 2"}}}}')
    monkeypatch.setattr(manage, "VIDEO_CATALOG_PATH", videos)
    with pytest.raises(InvalidInput, match="neither a catalog model"):
        start_download(studio, "local", "../../etc/passwd")
    listed = {(row["section"], row["id"]) for row in model_status()}
    expected = {(section, model_id) for section, entries in catalog().items()
                for model_id, entry in entries.items() if entry.get("repo")}
    assert expected | {("video", "tiny-wan")} <= listed and ("video", "sora-2") not in listed
    assert any(row["gated"] for row in model_status())
    assert finished(studio, start_download(studio, "local", "tiny-wan"))["model"] == "acme/tiny-pipe"


def test_download_and_delete_through_the_models_tab(live_app, hub):
    from gradio_client import Client

    running = live_app()
    client = Client(running.url, verbose=False)
    message, table, _choices = client.predict("acme/tiny-pipe", api_name="/download_model")
    assert message == "Downloaded acme/tiny-pipe."
    row = next(r for r in table["data"] if r[3] == "acme/tiny-pipe")
    assert row[5] == "yes" and row[6] >= 0
    assert running.studio.store.find("jobs")[0]["kind"] == "download"
    message, table, _choices = client.predict("acme/tiny-pipe", api_name="/delete_model")
    assert message.startswith("Deleted acme/tiny-pipe")
    assert not any(r[3] == "acme/tiny-pipe" for r in table["data"])
    with pytest.raises(Exception, match="gated"):
        client.predict("acme/gated", api_name="/download_model")


def test_first_use_downloads_outside_the_gpu_slot_with_progress_then_generates(studio, hub, tiny_model,
                                                                               monkeypatch, tmp_path):
    from huggingface_hub import constants

    from masuka.image.generate import ImageRequest, generate_images

    folder = tiny_model("flux")
    hub.repos["acme/tiny-flux"] = FakeRepo.of_folder(folder, **{
        "flux1-single-file.safetensors": b"a single-file checkpoint from_pretrained never reads"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    seen = []

    def on_download(progress) -> None:
        seen.append((progress.message, progress.fraction, studio.gpu.holders()))

    results = generate_images(studio, ImageRequest("a fox", "acme/tiny-flux", steps=1, width=64, height=64, seed=1),
                              on_download=on_download)
    assert len(results) == 1 and results[0].path.is_file()
    assert seen and seen[0][0] == "Downloading acme/tiny-flux…" and all(holders == [] for *_, holders in seen)
    job = studio.store.find("jobs", "kind = 'download'")[0]
    assert (job["model"], job["status"]) == ("acme/tiny-flux", "completed")
    assert "flux1-single-file.safetensors" not in hub.downloads  # only what loading reads
    generate_images(studio, ImageRequest("a fox", "acme/tiny-flux", steps=1, width=64, height=64, seed=2),
                    on_download=on_download)
    assert studio.store.count("jobs", "kind = 'download'") == 1  # downloaded once, used twice


def test_download_progress_reads_as_bytes_speed_and_time_left():
    from masuka.models.manage import download_line

    row = {"model": "acme/big", "step": 2 * 2**30, "total": 12 * 2**30, "state": {"rate": 50 * 2**20}}
    assert download_line(row) == "Downloading acme/big: 2.00 of 12.00 GB at 50.0 MB/s, about 3 min left"
    assert download_line({**row, "total": 0, "state": None}) == "Downloading acme/big…"


def held(monkeypatch, hub, name: str) -> tuple[threading.Event, threading.Event]:
    """Make the fake Hub hold the transfer of ``name`` (in small chunks, with progress at each) until ``released``
    is set; ``serving`` is set once a download of it waits."""
    from huggingface_hub import constants

    from masuka.models import manage

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(manage, "PROGRESS_EVERY_S", 0.0)
    released, serving = threading.Event(), threading.Event()
    serve_file = hub._file

    def held_file(repo, path, request):
        if request.method == "GET" and path == name:
            serving.set()
            released.wait(30)
        return serve_file(repo, path, request)

    monkeypatch.setattr(hub, "_file", held_file)
    return released, serving


def test_a_download_can_be_stopped_and_resumed(studio, hub, monkeypatch):
    from masuka.models import manage

    released, _serving = held(monkeypatch, hub, "transformer/model.safetensors")
    job_id = start_download(studio, "local", "acme/tiny-pipe")
    assert manage.stop_download(studio, "local", False, "acme/tiny-pipe") == 1
    released.set()
    assert finished(studio, job_id)["status"] == "cancelled"
    with pytest.raises(InvalidInput, match="No download of acme/tiny-pipe of yours is running"):
        manage.stop_download(studio, "local", False, "acme/tiny-pipe")
    with pytest.raises(InvalidInput, match="No download of acme/tiny-pipe is running"):
        manage.stop_download(studio, "local", True, "acme/tiny-pipe")
    assert finished(studio, start_download(studio, "local", "acme/tiny-pipe"))["status"] == "completed"


def test_a_download_left_queued_by_a_stopped_app_runs_after_the_restart(studio, hub):
    from masuka import jobs
    from masuka.models.manage import LANE

    job_id = jobs.create(studio.store, "download", title="Download acme/tiny-pipe", model="acme/tiny-pipe",
                         params={"repo": "acme/tiny-pipe"}, lane=LANE, queued_at="2026-01-01T00:00:00+00:00",
                         pid=2**22 + 13)  # queued by an app process that is gone
    studio.store.mark_interrupted()
    studio.jobs.adopt(LANE)
    job = finished(studio, job_id)
    assert job.status == "completed" and "acme/tiny-pipe" in cached_repos()


def test_a_stopped_download_is_partial_until_resumed_and_cannot_be_deleted_while_it_runs(studio, hub, monkeypatch):
    """Half a model is not shown as downloaded; deleting it waits for Stop, then removes the half-written files."""
    from masuka.models import manage

    released, serving = held(monkeypatch, hub, "transformer/model.safetensors")
    job_id = start_download(studio, "local", "acme/tiny-pipe")
    assert serving.wait(30)
    with pytest.raises(InvalidInput, match="acme/tiny-pipe is being downloaded: stop the download first"):
        delete_model(studio, "acme/tiny-pipe")
    manage.stop_download(studio, "local", False, "acme/tiny-pipe")
    released.set()
    assert finished(studio, job_id)["status"] == "cancelled"
    row = {r["repo"]: r for r in model_status()}["acme/tiny-pipe"]
    assert (row["downloaded"], row["partial"]) == (False, True) and "acme/tiny-pipe" not in cached_repos()
    assert delete_model(studio, "acme/tiny-pipe") > 0
    assert "acme/tiny-pipe" not in {r["repo"] for r in model_status()}
    assert finished(studio, start_download(studio, "local", "acme/tiny-pipe"))["status"] == "completed"
    row = {r["repo"]: r for r in model_status()}["acme/tiny-pipe"]
    assert (row["downloaded"], row["partial"]) == (True, False)


def test_a_cached_model_missing_a_file_loading_needs_is_partial(studio, hub, tiny_model, monkeypatch, tmp_path):
    """Completeness comes from the files themselves: every component of model_index.json, weights beside each
    config.json, every shard an index lists."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub.repos["acme/tiny-flux"] = FakeRepo.of_folder(tiny_model("flux"), **{
        "transformer/diffusion_pytorch_model.safetensors.index.json":
            b'{"weight_map": {"a": "diffusion_pytorch_model.safetensors"}}'})
    assert finished(studio, start_download(studio, "local", "acme/tiny-flux"))["status"] == "completed"
    assert "acme/tiny-flux" in cached_repos()
    snapshot = next((tmp_path / "hf-cache").glob("models--acme--tiny-flux/snapshots/*"))
    for missing in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                    "scheduler/scheduler_config.json"):
        (snapshot / missing).rename(tmp_path / "aside")
        row = {r["repo"]: r for r in model_status()}["acme/tiny-flux"]
        assert (row["downloaded"], row["partial"]) == (False, True), missing
        (tmp_path / "aside").rename(snapshot / missing)
    assert "acme/tiny-flux" in cached_repos()


def test_a_complete_cache_is_used_whatever_the_last_download_ended_as(studio, hub, tiny_model, monkeypatch,
                                                                      tmp_path):
    """A gated model downloaded once stays usable when a later download fails (the token since removed), and a
    model cached outside MASUKA is not downloaded again."""
    from huggingface_hub import constants, snapshot_download

    from masuka.image.generate import ImageRequest, generate_images

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub.repos["acme/gated-flux"] = FakeRepo.of_folder(tiny_model("flux"))
    hub.repos["acme/gated-flux"].gated = True
    hub.repos["acme/other-flux"] = FakeRepo.of_folder(tiny_model("flux"))
    studio.keys.set(HUGGINGFACE, TOKEN)

    def make(model: str, seed: int):
        return generate_images(studio, ImageRequest("a fox", model, steps=1, width=64, height=64, seed=seed))

    assert make("acme/gated-flux", 1)[0].path.is_file()
    studio.keys.set(HUGGINGFACE, None)  # a download of the whole model would make no job: the cache holds it
    assert finished(studio, start_download(studio, "local", "acme/gated-flux", file="model_index.json"))[
        "status"] == "failed"
    assert make("acme/gated-flux", 2)[0].path.is_file()
    snapshot_download("acme/other-flux", cache_dir=tmp_path / "hf-cache")  # as diffusers or the hf CLI would
    assert make("acme/other-flux", 3)[0].path.is_file()
    assert [job["model"] for job in studio.store.find("jobs", "kind = 'download'", order_by="id")] == [
        "acme/gated-flux", "acme/gated-flux"]


def test_a_stopped_download_says_what_it_kept_and_never_shows_all_done(studio, hub, monkeypatch):
    """The Hub client deletes a half-written file on Stop: the message says so, and the row is not at 100%."""
    from masuka.models import manage

    released, serving = held(monkeypatch, hub, "transformer/model.safetensors")
    job_id = start_download(studio, "local", "acme/tiny-pipe")
    assert serving.wait(30)
    manage.stop_download(studio, "local", False, "acme/tiny-pipe")
    released.set()
    job = finished(studio, job_id)
    assert job.status == "cancelled" and "finished files are kept" in job.error and "resume" not in job.error
    assert (job.progress or 0) < 1.0


def test_download_progress_counts_every_file_up_front_and_never_goes_back(studio, hub, monkeypatch):
    from masuka import jobs

    hub.repos["acme/two"] = FakeRepo({"model_index.json": b"{}", "unet/config.json": b"{}",
                                      "unet/model.safetensors": WEIGHTS, "vae/config.json": b"{}",
                                      "vae/model.safetensors": WEIGHTS})
    held(monkeypatch, hub, "")  # small chunks, every progress update written
    written, record = [], jobs.progress

    def recorded(store, job_id, step=None, total=None, **kwargs):
        if step is not None:
            written.append((step, total, kwargs.get("fraction")))
        record(store, job_id, step, total, **kwargs)

    monkeypatch.setattr(jobs, "progress", recorded)
    assert finished(studio, start_download(studio, "local", "acme/two"))["status"] == "completed"
    size = sum(len(data) for data in hub.repos["acme/two"].files.values())
    *running, last = written
    assert running and {total for _step, total, _fraction in written} == {size}
    assert [step for step, *_ in running] == sorted(step for step, *_ in running)
    assert all(fraction < 1.0 for *_, fraction in running) and last == (size, size, 1.0)


def test_a_half_written_file_left_by_a_killed_app_does_not_keep_a_model_partial(studio, hub, tmp_path):
    assert finished(studio, start_download(studio, "local", "acme/tiny-pipe"))["status"] == "completed"
    stale = next((tmp_path / "hf-cache").glob("models--acme--tiny-pipe/blobs")) / "0badc0de.5eed1e55.incomplete"
    stale.write_bytes(b"half a file of a download whose app was killed")
    assert "acme/tiny-pipe" in cached_repos()
    assert start_download(studio, "local", "acme/tiny-pipe") is None, "the whole model is there: nothing to fetch"
    assert finished(studio, start_download(studio, "local", "acme/tiny-pipe", file="model_index.json"))[
        "status"] == "completed"
    assert not stale.exists()  # a new download clears what no running download writes


def test_ctrl_c_on_the_download_command_stops_the_download(studio, hub, monkeypatch):
    import argparse

    from masuka.commands import models as command

    released, serving = held(monkeypatch, hub, "transformer/model.safetensors")
    monkeypatch.setattr(command, "open_studio", lambda args: studio)
    wait = studio.runner().wait

    def interrupted(job_id, timeout=None):
        if serving.wait(30) and not released.is_set():
            released.set()
            raise KeyboardInterrupt
        return wait(job_id, timeout)

    monkeypatch.setattr(studio.runner(), "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        command.run(argparse.Namespace(action="download", model="acme/tiny-pipe", json=False))
    assert finished(studio, studio.store.find("jobs")[0]["id"])["status"] == "cancelled"
    assert "acme/tiny-pipe" not in cached_repos()


def test_another_users_stop_neither_fails_a_joined_fetch_nor_is_allowed_to_bob(studio, hub, monkeypatch):
    """Bob's first use joins Alice's download; Bob may not stop it, and when Alice stops it, Bob's goes on."""
    from masuka.models import manage

    released, serving = held(monkeypatch, hub, "transformer/model.safetensors")
    start_download(studio, "alice", "acme/tiny-pipe")
    assert serving.wait(30)
    with pytest.raises(InvalidInput) as refused:  # as if none ran: whose downloads run is not bob's to probe
        manage.stop_download(studio, "bob", False, "acme/tiny-pipe")
    assert str(refused.value) == "No download of acme/tiny-pipe of yours is running."
    joined, outcome = threading.Event(), []
    bob = threading.Thread(target=lambda: outcome.append(manage.fetch_for_use(
        studio, "bob", "acme/tiny-pipe", lambda progress: joined.set() if progress.total is None else None)))
    bob.start()
    assert joined.wait(30)
    manage.stop_download(studio, "alice", False, "acme/tiny-pipe")
    released.set()
    bob.join(60)
    assert outcome == [None] and "acme/tiny-pipe" in cached_repos()
    assert [(job["owner"], job["status"]) for job in studio.store.find("jobs", order_by="id")] == [
        ("alice", "cancelled"), ("bob", "completed")]


def test_a_model_cannot_be_deleted_between_its_download_and_its_generation(studio, hub, tiny_model, monkeypatch,
                                                                          tmp_path):
    from huggingface_hub import constants

    from masuka.image.generate import ImageRequest, generate_images
    from masuka.models import manage

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub.repos["acme/tiny-flux"] = FakeRepo.of_folder(tiny_model("flux"))
    refused, fetch = [], manage.fetch_for_use

    def fetch_then_an_admin_deletes(*args, **kwargs):
        fetch(*args, **kwargs)
        with pytest.raises(InvalidInput, match="acme/tiny-flux cannot be deleted yet: running work .* is using it"):
            delete_model(studio, "acme/tiny-flux")
        refused.append(True)

    monkeypatch.setattr(manage, "fetch_for_use", fetch_then_an_admin_deletes)
    assert generate_images(studio, ImageRequest("a fox", "acme/tiny-flux", steps=1, width=64, height=64, seed=1))
    assert refused and all(count == 1 for name, count in hub.downloads.items()  # never again in the GPU slot
                           if name.endswith(".safetensors"))
    assert delete_model(studio, "acme/tiny-flux") > 0  # once the generation is over


def test_a_gated_repo_tells_a_user_who_is_not_an_admin_to_ask_one(studio, hub, monkeypatch):
    monkeypatch.setattr(type(studio.config), "is_admin", lambda config, user: user == "admin")
    job = finished(studio, start_download(studio, "bob", "acme/gated"))
    assert "gated" in job.error and "ask an admin to save the key in Settings → API keys" in job.error
    job = finished(studio, start_download(studio, "admin", "acme/gated"))
    assert "save the key in Settings → API keys" in job.error and "ask an admin" not in job.error


def test_downloading_a_model_the_cache_holds_whole_makes_no_job_even_offline(studio, hub, monkeypatch, capsys):
    """"Download" of a complete model while offline failed, leaving a failed job in History: nothing to fetch
    now makes no job, and the Models tab and the CLI say it is downloaded."""
    import gradio as gr
    from huggingface_hub import constants

    from masuka.cli import main
    from masuka.ui.models import download_model

    assert finished(studio, start_download(studio, "local", "acme/tiny-pipe"))["status"] == "completed"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert start_download(studio, "local", "acme/tiny-pipe") is None
    message, *_views = download_model(studio, "acme/tiny-pipe", gr.Request(username="local"))
    assert message == "acme/tiny-pipe is already downloaded: nothing to fetch."
    assert main(["models", "download", "acme/tiny-pipe", "--data-dir", str(studio.config.data_dir)]) == 0
    assert "acme/tiny-pipe is already downloaded." in capsys.readouterr().out
    assert [job["status"] for job in studio.store.find("jobs")] == ["completed"]


def test_offline_says_hf_hub_offline_is_set_for_downloads_and_hub_imports_alike(studio, hub, monkeypatch):
    """A LoRA import from the Hub told to check the network while HF_HUB_OFFLINE was set."""
    from huggingface_hub import constants

    from masuka.errors import ModelUnavailable
    from masuka.loras.imports import import_from_hub
    from masuka.services import hub_endpoint

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    job = finished(studio, start_download(studio, "local", "acme/tiny-pipe"))
    with pytest.raises(ModelUnavailable) as refused:
        import_from_hub(studio, "local", "acme/tiny-pipe", "lora.safetensors")
    for message, again in ((job["error"], "start the download of acme/tiny-pipe again (the finished files are kept)"),
                           (str(refused.value), "import acme/tiny-pipe lora.safetensors again")):
        assert message == (f"The Hugging Face Hub ({hub_endpoint()}) cannot be reached (offline: HF_HUB_OFFLINE is "
                           f"set): unset it and {again}.")
