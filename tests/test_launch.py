"""Launching: flags, the ngrok token check, and a start-up that never imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}

NO_HEAVY_IMPORTS = """
import sys, tempfile
from masuka.config import Config
from masuka.studio import Studio
from masuka.ui.app import build_app
build_app(Studio.open(Config.from_env(data_dir=tempfile.mkdtemp())))
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "peft", "accelerate") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_building_the_app_imports_no_ml_library():
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "none", done.stderr


def test_queue_settings_go_in_with_the_blocks_so_the_server_app_is_built_once_per_gradio_step(studio, monkeypatch):
    from gradio.routes import App

    from masuka.ui.app import build_app

    builds = []
    create_app = App.create_app
    monkeypatch.setattr(App, "create_app", staticmethod(lambda *a, **k: builds.append(1) or create_app(*a, **k)))
    demo = build_app(studio)
    assert len(builds) == 2, "one server app when the Blocks are made, one when they close: no queue() rebuild"
    assert demo._queue.max_size == studio.config.queue_size
    assert demo._queue.default_concurrency_limit is None and demo.api_open is False


def test_a_server_process_keeps_its_start_up_heap_out_of_the_collectors_reach(tmp_path, monkeypatch):
    import gc

    import gradio as gr

    import masuka.image.space_model
    import masuka.queue.worker
    from masuka.config import Config
    from masuka.server import launch

    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)  # the server would run until stopped
    steps = []  # freezes, and the work that may load a model: no model may be frozen
    space = masuka.image.space_model
    freeze, start, prepare = gc.freeze, masuka.queue.worker.QueueWorker.start, space.prepare_space
    monkeypatch.setattr(gc, "freeze", lambda: steps.append("freeze") or freeze())
    monkeypatch.setattr(masuka.queue.worker.QueueWorker, "start", lambda self: steps.append("jobs") or start(self))
    monkeypatch.setattr(space, "prepare_space", lambda studio: steps.append("space") or prepare(studio))
    embedded = launch(Config.from_env(data_dir=tmp_path / "a"), port=free_port(), block=False)
    embedded.close()
    assert gc.get_freeze_count() == 0, "an embedded app leaves the host process's collector alone"
    try:
        served = launch(Config.from_env(data_dir=tmp_path / "b"), port=free_port(), block=True)
        served.demo.close()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    assert frozen > 100_000, "modules, the studio and the built UI are frozen"
    assert steps == ["jobs", "space", "freeze", "freeze", "jobs", "space"], "models load after the freezes"


def test_app_py_serves_on_the_given_port_with_data_dir(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", str(tmp_path / "d")],
                               cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
            except OSError:
                time.sleep(0.2)
        assert status == 200
        assert (tmp_path / "d" / "masuka.db").is_file()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_ngrok_without_token_is_a_clear_error(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "NGROK_AUTHTOKEN"}
    done = subprocess.run([sys.executable, "app.py", "--ngrok", "--port", str(free_port()), "--data-dir",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "NGROK_AUTHTOKEN" in done.stderr and "Traceback" not in done.stderr


def test_binding_all_interfaces_without_auth_prints_a_warning(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "masuka", "serve", "--host", "0.0.0.0", "--port", str(port),
                                "--data-dir", str(tmp_path)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        first = process.stdout.readline()
        assert "WARNING" in first and "without auth" in first
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_passwords_on_the_command_line_are_warned_about(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("alice:pw-alice\n")
    env = {k: v for k, v in ENV.items() if k != "NGROK_AUTHTOKEN"}  # --ngrok stops right after the warnings
    said = {}
    for spec in ("alice:pw-alice", f"@{users}"):
        done = subprocess.run([sys.executable, "app.py", "--ngrok", "--auth", spec, "--port", str(free_port()),
                               "--data-dir", str(tmp_path / "d")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        said[spec] = done.stderr
    warned = said["alice:pw-alice"]
    assert "visible to everyone on this machine (ps" in warned and "--auth @file" in warned
    assert "visible to everyone" not in said[f"@{users}"]
