"""A ``.gguf`` transformer named by URL (``MASUKA_GGUF_FILE``) is fetched as a download job of that one file: listed
with progress among the Models tab's downloads, joined by a second user, stopped there; offline it is refused.
Checking one repo's cache reads only that repo."""

from __future__ import annotations

import threading

import pytest

from masuka.errors import ModelUnavailable
from masuka.image.quantized import fetch_gguf
from masuka.models import manage
from tests.models.fake_hub import FakeRepo, hub_online
from tests.models.test_download import WEIGHTS, held

URL = "https://huggingface.co/acme/flux-gguf/blob/main/model-Q8_0.gguf"
FILE = "model-Q8_0.gguf"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("MASUKA_GGUF_FILE", URL)
    repo = FakeRepo({FILE: WEIGHTS, "other-Q4_K_S.gguf": b"another quantization", "README.md": b"# GGUF"})
    with hub_online(monkeypatch, {"acme/flux-gguf": repo}, tmp_path / "hf-cache") as fake:
        yield fake


def in_thread(work) -> tuple[threading.Thread, list]:
    """Run ``work`` in a thread; the list gets its result or the exception it raised."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_gguf_url_is_a_download_job_with_progress_that_a_second_user_joins(studio, hub, monkeypatch):
    released, serving = held(monkeypatch, hub, FILE)
    seen: dict[str, list] = {"alice": [], "bob": []}
    joined = threading.Event()
    alice, alice_got = in_thread(lambda: fetch_gguf(studio, "alice", "gguf_offload", seen["alice"].append))
    assert serving.wait(30)

    def bob_watch(progress) -> None:
        seen["bob"].append(progress)
        joined.set()

    bob, bob_got = in_thread(lambda: fetch_gguf(studio, "bob", "gguf_offload", bob_watch))
    assert joined.wait(30)
    [listed] = manage.download_jobs(studio, "alice", False)  # the Models tab's list of downloads
    assert (listed["model"], listed["status"], listed["title"]) == (
        "acme/flux-gguf", "running", "Download acme/flux-gguf/model-Q8_0.gguf")
    assert listed["params"] == {"repo": "acme/flux-gguf", "without": [], "file": FILE, "revision": "main"}
    released.set()
    alice.join(60)
    bob.join(60)
    [path] = alice_got
    assert bob_got == [path] and open(path, "rb").read() == WEIGHTS
    [job] = studio.store.find("jobs")  # one download, both users served
    assert (job["status"], job["owner"], job["progress"]) == ("completed", "alice", 1.0)
    assert job["step"] == job["total"] == len(WEIGHTS) and job["result"]["path"] == path
    assert hub.downloads == {FILE: 1}  # that file alone, once
    for watched in seen.values():
        assert watched and all(p.message.startswith("Downloading acme/flux-gguf/model-Q8_0.gguf") for p in watched)
    assert fetch_gguf(studio, "carol", "gguf_offload") == path  # cached: no other job
    assert studio.store.count("jobs") == 1


def test_stopping_the_gguf_download_ends_the_generation_waiting_for_it(studio, hub, tiny_model, monkeypatch):
    from masuka.image.generate import ImageRequest, generate_images

    released, serving = held(monkeypatch, hub, FILE)
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           memory_plan="gguf_offload")
    slots = []
    monkeypatch.setattr(studio, "hold_gpu", lambda *args, **kwargs: slots.append(args))
    generation, outcome = in_thread(lambda: generate_images(studio, request, allow_any_path=True))
    assert serving.wait(30)
    assert manage.stop_download(studio, "local", False, "acme/flux-gguf") == 1  # the Models tab's Stop
    released.set()
    generation.join(60)
    [error] = outcome
    assert isinstance(error, ModelUnavailable)
    assert str(error).startswith("The download of acme/flux-gguf/model-Q8_0.gguf was stopped before it finished, "
                                 "so it cannot be used: Stopped by")
    assert slots == [] and studio.store.find("jobs", "kind = 'download'")[0]["status"] == "cancelled"


def test_offline_a_gguf_url_not_cached_is_refused_without_a_job(studio, monkeypatch):
    monkeypatch.setenv("MASUKA_GGUF_FILE", URL)
    with pytest.raises(ModelUnavailable, match=r"MASUKA_GGUF_FILE \(https://.*\) is not downloaded and the Hugging "
                                               r"Face Hub \(.*\) cannot be reached \(offline: HF_HUB_OFFLINE is set\): "
                                               "download it once the Hub can be reached, or name a local .gguf file"):
        fetch_gguf(studio, "alice", "gguf_offload")
    assert studio.store.count("jobs") == 0


def test_checking_a_repo_reads_only_its_own_cache_folder(studio, hub, monkeypatch):
    """No scan of the whole cache: a broken other repo there (a ``refs/main`` linking nowhere, on which
    ``scan_cache_dir`` fails) changes no answer and raises nothing."""
    import huggingface_hub

    from masuka.models.hub import repo_cache_folder

    assert studio.jobs.wait(manage.start_download(studio, "local", "acme/flux-gguf"), timeout=60).status == \
        "completed"
    broken = repo_cache_folder("acme/broken")
    (broken / "snapshots").mkdir(parents=True)
    (broken / "refs").mkdir()
    (broken / "refs" / "main").symlink_to(broken / "nowhere")
    scans, scan = [], huggingface_hub.scan_cache_dir

    def counted(*args, **kwargs):
        scans.append(args)
        return scan(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", counted)
    assert manage.repo_complete("acme/flux-gguf")
    assert not manage.repo_complete("acme/absent") and not manage.repo_complete("acme/broken")
    assert scans == []


def test_a_gguf_url_naming_a_file_the_repo_lacks_fails_its_download_saying_so(studio, hub, monkeypatch):
    monkeypatch.setenv("MASUKA_GGUF_FILE", URL.replace(FILE, "model-Q2_K.gguf"))
    with pytest.raises(ModelUnavailable, match="acme/flux-gguf has no file model-Q2_K.gguf at revision main"):
        fetch_gguf(studio, "alice", "gguf_offload")
    assert studio.store.find("jobs")[0]["status"] == "failed" and hub.downloads == {}


def test_a_stop_ends_a_generation_s_wait_for_the_gguf_download_which_goes_on(studio, hub, tiny_model, monkeypatch):
    """The Image tab's Stop while its generation waits for a download it joined or started: the generation ends,
    the download goes on (for others, or a later start)."""
    from masuka.errors import Cancelled
    from masuka.image.generate import ImageRequest, generate_images

    released, serving = held(monkeypatch, hub, FILE)
    monkeypatch.setattr(manage, "PROGRESS_EVERY_S", 0.2)
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           memory_plan="gguf_offload")
    stop = threading.Event()
    generation, outcome = in_thread(lambda: generate_images(studio, request, allow_any_path=True, stop=stop))
    try:
        assert serving.wait(30)
        stop.set()
        generation.join(20)
        assert not generation.is_alive()
        [error] = outcome
        assert isinstance(error, Cancelled) and "while it waited for a model download" in str(error)
        [job] = studio.store.find("jobs")
        assert job["status"] == "running"
    finally:
        released.set()
    assert studio.jobs.wait(job["id"], timeout=60).status == "completed"


def test_a_gguf_file_download_reports_its_own_size_without_scanning_the_cache(studio, hub, monkeypatch):
    import huggingface_hub

    other = manage.start_download(studio, "local", "acme/flux-gguf", file="other-Q4_K_S.gguf")
    assert studio.jobs.wait(other, timeout=60).status == "completed"
    scans, scan = [], huggingface_hub.scan_cache_dir

    def counted(*args, **kwargs):
        scans.append(args)
        return scan(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", counted)
    fetch_gguf(studio, "alice", "gguf_offload")
    [job] = studio.store.find("jobs", "id != ?", [other])
    assert job["result"]["size_bytes"] == len(WEIGHTS)  # the file's, not the repo's two files
    assert scans == []


def test_a_failed_gguf_file_download_names_the_file_and_the_request_to_run_again(studio, hub, monkeypatch):
    from masuka.testing.http import Reply

    serve_file = hub._file
    refused = {"HEAD"}  # the file's metadata refused: the Hub client says it cannot be reached

    def refusing(repo, path, request):
        return Reply(403, {"error": "the Hub broke"}) if request.method in refused else serve_file(repo, path, request)

    monkeypatch.setattr(hub, "_file", refusing)
    with pytest.raises(ModelUnavailable) as unreachable:
        fetch_gguf(studio, "alice", "gguf_offload")
    assert str(unreachable.value).endswith("cannot be reached: check the network and run the gguf_offload request "
                                           "again to download acme/flux-gguf/model-Q8_0.gguf.")
    refused.clear()
    refused.add("GET")  # its transfer refused
    with pytest.raises(ModelUnavailable, match="^Downloading acme/flux-gguf/model-Q8_0.gguf failed: .*403"):
        fetch_gguf(studio, "alice", "gguf_offload")
