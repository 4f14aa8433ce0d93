"""Shared fixtures: tiny random-weight pipelines built offline, a studio on a temp data dir, a live app."""

from __future__ import annotations

import gc
import importlib
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MASUKA_DEVICE", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one torch thread per test process (and the processes tests start): tiny models run fastest on one, and two
# workers' threads on a busy 2-core machine spin against each other (a tiny image took 20x longer with two)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# tests talk to servers on loopback only, over plain HTTP, so no TLS context needs a CA certificate; yet every
# httpx client (gradio_client opens one per request) reads the bundle SSL_CERT_FILE names, or certifi's, which
# took about 40 ms of CPU each time: an empty certificate folder instead (for the processes tests start too)
os.environ.pop("SSL_CERT_FILE", None)
os.environ["SSL_CERT_DIR"] = os.devnull

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a ``slow`` or ``browser`` test run first. pytest-xdist hands whole files to the two workers in
    this order (``--dist loadfile --no-loadscope-reorder``): a long file handed out last kept one core working
    alone for minutes at the end of a run, while short files at the end even the two workers out."""
    heavy = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("browser")}
    items.sort(key=lambda item: item.path not in heavy)


@pytest.fixture(scope="session")
def _heavy_imports():
    """torch, transformers, diffusers (a tiny pipeline of each architecture imports its classes) and Gradio."""
    from masuka.models.synthetic import TINY_ARCHITECTURES, tiny_pipeline, tiny_video_pipeline
    from masuka.ui import app  # noqa: F401  (Gradio and every tab)

    for architecture in TINY_ARCHITECTURES:
        tiny_pipeline(architecture)
    tiny_video_pipeline(image_to_video=True)


@pytest.fixture(scope="module", autouse=True)
def _older_objects_frozen(_heavy_imports):
    """Move what is alive as a test module starts out of the cyclic collector's sight (``gc.freeze``), as a served
    app does after start-up (:func:`masuka.server.launch`). Every model drop runs ``gc.collect``
    (:mod:`masuka.model_cache`), which walks every tracked object: the heavy imports alone are ~600k objects, and
    each app an earlier test built stays reachable from FastAPI's bounded route caches, so a collection took a
    third of a second at first and over half a second late in a run, over a thousand times a run. What a test
    makes is still collected."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    """No test sees the developer's real API keys."""
    from masuka.keys import services

    for names in (declared.key_env for declared in services().values()):
        for name in names:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``tiny_model("flux"|"sd3"|"sdxl")`` -> folder of a tiny random pipeline saved with save_pretrained."""
    from masuka.models.synthetic import save_tiny_pipeline

    built: dict[str, Path] = {}

    def make(architecture: str) -> Path:
        if architecture not in built:
            built[architecture] = save_tiny_pipeline(architecture, tmp_path_factory.mktemp(f"tiny-{architecture}"))
        return built[architecture]

    return make


@pytest.fixture
def config(tmp_path):
    from masuka.config import Config

    return Config.from_env(data_dir=tmp_path / "data", auth="")


@pytest.fixture
def studio(config):
    from masuka.studio import Studio

    studio = Studio.open(config)
    yield studio
    studio.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_app(tmp_path):
    """``live_app(auth="u:p,…")`` -> the real app served on loopback (``.url``, ``.studio``) on its own data dir."""
    from masuka.config import Config
    from masuka.server import launch

    apps = []

    def start(auth: str = "", data_dir: Path | None = None, **overrides):
        config = Config.from_env(data_dir=data_dir or tmp_path / "app-data", auth=auth, **overrides)
        running = launch(config, host="127.0.0.1", port=free_port(), block=False)
        apps.append(running)
        return running

    yield start
    for running in apps:
        running.close()


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    """``shared_app(auth="u:p,…", **overrides)`` -> like :func:`live_app`, but one app per distinct settings for a
    whole test module (each start costs ~1.7 s of CPU): for tests whose assertions are scoped to their own rows,
    users and tokens, and which leave no setting changed that another test of the module reads. A test about
    start-up, a restart or a fresh data dir keeps ``live_app``."""
    from masuka.config import Config
    from masuka.server import Running, launch

    apps: dict[tuple, Running] = {}

    def start(auth: str = "", **overrides):
        key = (auth, tuple(sorted(overrides.items())))
        if key not in apps:
            data_dir = tmp_path_factory.mktemp("shared-app") / "app-data"
            config = Config.from_env(data_dir=data_dir, auth=auth, **overrides)
            apps[key] = launch(config, host="127.0.0.1", port=free_port(), block=False)
        return apps[key]

    yield start
    for running in apps.values():
        running.close()


@pytest.fixture(scope="module")
def browser():
    """The system Chromium, headless, started once per test module; the test is skipped without it, outside CI.
    Not once per process: Playwright's sync API keeps an asyncio loop running in the main thread while it is
    started, and later modules' ``asyncio.run`` calls (handler tests) fail inside one."""
    from playwright.sync_api import sync_playwright

    from tests.chromium import FLAGS, chromium

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page (1400x1000) in a browser context of its own: no cookie, storage or cache left by another test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, reduced_motion="reduce")
    yield context.new_page()
    context.close()


FAST_VIDEO = {"MASUKA_VIDEO_POLL_S": "0.02", "MASUKA_VIDEO_BACKOFF_S": "0.02", "MASUKA_VIDEO_ATTEMPTS": "4",
              "MASUKA_VIDEO_TIMEOUT_S": "5"}


@pytest.fixture(scope="session")
def sample_mp4(tmp_path_factory) -> bytes:
    from masuka.testing.video import make_mp4

    return make_mp4(tmp_path_factory.mktemp("mp4") / "sample.mp4").read_bytes()


@pytest.fixture
def fast_video(monkeypatch):
    for name, value in FAST_VIDEO.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def fake(monkeypatch, sample_mp4, fast_video):
    """``fake("openai")`` -> a running :class:`FakeProvider`, with its base URL and key in the environment."""
    from masuka.keys import service
    from masuka.testing.video import KEY, FakeProvider

    started = []

    def start(kind: str):
        server = FakeProvider(kind, sample_mp4)
        started.append(server)
        monkeypatch.setenv(service(kind).base_url_env, server.base)
        monkeypatch.setenv(service(kind).key_env[0], KEY)
        return server

    yield start
    for server in started:
        server.close()


#: the modules whose GPU functions are decorated for ZeroGPU when they are imported
GPU_MODULES = ("masuka.image.space_model", "masuka.image.generate", "masuka.datasets.captioning",
               "masuka.image.upscale.job", "masuka.image.upscale.detail")


@pytest.fixture
def on_zerogpu(monkeypatch):
    """ZeroGPU as a Space sees it: ``SPACES_ZERO_GPU`` set and ``spaces`` importable (the stand-in); the modules
    that decorate GPU functions at import are re-imported, and again without ZeroGPU afterwards."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "standins"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    import spaces

    spaces.calls.clear()
    modules = [importlib.reload(importlib.import_module(name)) for name in GPU_MODULES]
    yield spaces
    monkeypatch.undo()
    sys.modules.pop("spaces", None)
    for module in modules:
        importlib.reload(module)
