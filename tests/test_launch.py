"""Launching: flags, the ngrok token check, and a start-up that never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}


# the cheap checks first: the first test in a process also waits for the session's heavy imports (conftest.py)
@pytest.mark.parametrize("host", ["192.168.1.20", "10.0.0.5", "myhost.lan", "[::]", "0:0:0:0:0:0:0:0", "0.0.0.0",
                                  ""])
def test_any_host_but_this_machine_warns_without_auth(tmp_path, host):
    from masuka.config import Config
    from masuka.server import public_warning

    assert "without auth" in public_warning(Config.from_env(data_dir=tmp_path, auth=""), host, False, False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_this_machine_only_does_not_warn(tmp_path, host):
    from masuka.config import Config
    from masuka.server import public_warning

    assert public_warning(Config.from_env(data_dir=tmp_path, auth=""), host, False, False) is None


#: one process for both start-up import checks: serve's environment check under a named device, then building the
#: app (with the device back to cpu, as in the separate runs these were); each prints what it imported
START_UP_IMPORTS = """
import os, sys, tempfile
from masuka.environment import check_environment
check_environment()
print("torch" in sys.modules)
os.environ["MASUKA_DEVICE"] = "cpu"
from masuka.config import Config
from masuka.studio import Studio
from masuka.ui.app import build_app
build_app(Studio.open(Config.from_env(data_dir=tempfile.mkdtemp())))
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "peft", "accelerate") if m in sys.modules)
print(",".join(heavy) or "none")
"""


@pytest.fixture(scope="module")
def start_up_imports() -> tuple[list[str], str]:
    """What :data:`START_UP_IMPORTS` printed (one line per check) and its stderr."""
    done = subprocess.run([sys.executable, "-c", START_UP_IMPORTS], capture_output=True, text=True, cwd=ROOT,
                          env={**ENV, "MASUKA_DEVICE": "cuda"}, timeout=120)
    return done.stdout.strip().splitlines(), done.stderr


@pytest.mark.slow
def test_serve_s_start_up_checks_import_no_torch_even_for_a_named_device(start_up_imports):
    lines, stderr = start_up_imports
    assert lines[:1] == ["False"], stderr


def test_building_the_app_imports_no_ml_library(start_up_imports):
    lines, stderr = start_up_imports
    assert len(lines) >= 2 and lines[-1] == "none", stderr


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
    already = gc.get_freeze_count()  # what the test session froze (tests/conftest.py)
    embedded = launch(Config.from_env(data_dir=tmp_path / "a"), port=free_port(), block=False)
    embedded.close()
    assert gc.get_freeze_count() <= already, "an embedded app leaves the host process's collector alone"
    gc.unfreeze()
    try:
        served = launch(Config.from_env(data_dir=tmp_path / "b"), port=free_port(), block=True)
        served.demo.close()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
        gc.collect()
        freeze()  # the session's freeze back
    assert frozen > 100_000, "modules, the studio and the built UI are frozen"
    assert steps == ["jobs", "space", "freeze", "freeze", "jobs", "space"], "models load after the freezes"


@pytest.mark.slow
def test_app_py_serves_on_the_given_port_with_data_dir(ngrok_run):
    """app.py's server, asked for its page on the port given, while it was up (by the fake ngrok that the run
    below started once the app was served)."""
    done, started, data = ngrok_run
    assert started.get("served") == 200, (started.get("served"), done.stderr)
    assert (data / "masuka.db").is_file()


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


def test_a_space_without_sign_in_refuses_to_start_unless_deliberately_public(tmp_path, monkeypatch):
    """On a Space every visitor of a studio without users would be its admin (all History, the API keys)."""
    env = {k: v for k, v in ENV.items() if k not in ("MASUKA_AUTH", "MASUKA_PUBLIC_SPACE")}
    done = subprocess.run([sys.executable, "-m", "masuka", "serve", "--port", str(free_port()), "--data-dir",
                           str(tmp_path)], cwd=ROOT, env={**env, "SPACE_ID": "someone/masuka"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: This Space has no sign-in") and "the secret MASUKA_AUTH" in line

    from masuka.config import Config
    from masuka.server import public_warning

    monkeypatch.setenv("SPACE_ID", "someone/masuka")
    monkeypatch.setenv("MASUKA_PUBLIC_SPACE", "1")
    warning = public_warning(Config.from_env(data_dir=tmp_path, auth=""), "0.0.0.0", False, False)
    assert "open to everyone on the internet" in warning and "shares one studio as its admin" in warning
    assert public_warning(Config.from_env(data_dir=tmp_path, auth="ana:pw-ana"), "0.0.0.0", False, False) is None


TOKEN = "2fakeNgrokToken_secret"
#: an ``ngrok`` that records how it was started (its arguments, and the config file it was given) and then fails
#: as ngrok does on a bad token, quoting it
FAKE_NGROK = """#!{python}
import json, os, sys
config = sys.argv[sys.argv.index("--config") + 1]
record = {{"argv": sys.argv, "config": open(config).read(), "mode": os.stat(config).st_mode & 0o777, "path": config}}
json.dump(record, open({record!r}, "w"))
if os.environ.get("FAKE_NGROK_PROBE"):  # the app's page, asked for while the app serves (before the tunnel)
    import urllib.request
    try:
        record["served"] = urllib.request.urlopen(os.environ["FAKE_NGROK_PROBE"], timeout=60).status
    except OSError as error:
        record["served"] = str(error)
    json.dump(record, open({record!r}, "w"))
print('t=2026-01-01T00:00:00+0000 lvl=eror msg="failed to start" err="authentication failed: Your authtoken: {token}"')
"""


def fake_ngrok(tmp_path: Path, runs: bool) -> tuple[Path, Path, Path]:
    """The fake ngrok (executable or not), the file it records its start in, and a data dir whose Settings hold
    the token (only the config file can carry it to ngrok)."""
    from masuka.key_store import KeyStore
    from masuka.services import NGROK

    record, fake, data = tmp_path / "record.json", tmp_path / "ngrok", tmp_path / "d"
    fake.write_text(FAKE_NGROK.format(python=sys.executable, record=str(record), token=TOKEN))
    fake.chmod(0o700 if runs else 0o600)
    data.mkdir(mode=0o700)
    KeyStore(data).set(NGROK, TOKEN)
    return fake, record, data


@pytest.fixture(scope="module")
def ngrok_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    """One whole start through app.py with --ngrok, a port and a data dir: the app is served, then the tunnel (a
    fake ngrok that first asks for the app's page, then refuses the token) fails. What it did, what the fake
    recorded, and the data dir."""
    fake, record, data = fake_ngrok(tmp_path_factory.mktemp("ngrok-run"), runs=True)
    port = free_port()
    env = {**{k: v for k, v in ENV.items() if k != "NGROK_AUTHTOKEN"}, "PYNGROK_NGROK_PATH": str(fake),
           "FAKE_NGROK_PROBE": f"http://127.0.0.1:{port}/"}
    done = subprocess.run([sys.executable, "app.py", "--ngrok", "--port", str(port), "--data-dir", str(data)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return done, json.loads(record.read_text()) if record.exists() else {}, data


def test_ngrok_gets_its_token_out_of_sight_of_ps_and_a_failed_tunnel_stops_with_one_line(ngrok_run):
    done, started, data = ngrok_run
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the warning about a public app without a password
    assert line.startswith("error: the ngrok tunnel could not open: ")
    assert TOKEN not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert list((data / "tmp").iterdir()) == [], "the token's file is gone"
    assert TOKEN not in " ".join(started["argv"]) and "--authtoken" not in started["argv"]
    assert TOKEN in started["config"] and started["mode"] == 0o600
    assert "authentication failed" in line


def test_an_ngrok_that_cannot_run_is_one_line_without_the_token(tmp_path, monkeypatch, capfd):
    """The tunnel that launch opens, in this process: an ngrok binary that is not executable (how the failure
    becomes ``error:`` and exit 2 is the test above's, through app.py)."""
    from pyngrok import conf

    from masuka.config import Config
    from masuka.errors import InvalidInput
    from masuka.server import ngrok_token, open_ngrok_tunnel

    fake, record, data = fake_ngrok(tmp_path, runs=False)
    monkeypatch.setattr(conf.get_default(), "ngrok_path", str(fake))  # as PYNGROK_NGROK_PATH sets it
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    config = Config.from_env(data_dir=data, auth="")
    config.tmp_dir.mkdir()
    with pytest.raises(InvalidInput) as refused:
        open_ngrok_tunnel(ngrok_token(config), free_port(), config.tmp_dir)
    line = str(refused.value)
    assert line.startswith("the ngrok tunnel could not open: ") and "\n" not in line
    assert "Permission denied" in line and not record.exists()
    out, err = capfd.readouterr()
    assert TOKEN not in line + out + err
    assert list(config.tmp_dir.iterdir()) == [], "the token's file is gone"


@pytest.mark.parametrize("command", [["app.py"], ["-m", "masuka", "serve"]], ids=["app.py", "serve"])
def test_a_port_in_use_is_one_line_and_exit_2(tmp_path, command):
    import socket

    with socket.socket() as taken:  # a second MASUKA, or anything else on that port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, *command, "--port", str(port), "--data-dir", str(tmp_path)], cwd=ROOT,
                              env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port} (Address already in use)\n"


@pytest.mark.parametrize("command", [["app.py"], ["-m", "masuka", "serve"]], ids=["app.py", "serve"])
@pytest.mark.parametrize("blank", ["", " "], ids=["empty", "blank"])
def test_a_blank_auth_flag_is_refused_by_both_entry_points_rather_than_overriding_masuka_auth(tmp_path, command,
                                                                                              blank):
    env = {k: v for k, v in ENV.items() if k != "NGROK_AUTHTOKEN"}  # were it let through, --ngrok stops it at once
    done = subprocess.run([sys.executable, *command, "--auth", blank, "--ngrok", "--port", str(free_port()),
                           "--data-dir", str(tmp_path)], cwd=ROOT, env={**env, "MASUKA_AUTH": "alice:pw1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == ("error: --auth names no user: give at least one user:password, or no sign-in at all "
                           "(leave out --auth and MASUKA_AUTH).\n")


def test_a_host_that_is_no_address_here_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "app.py", "--port", str(free_port()), "--data-dir", str(tmp_path)],
                          cwd=ROOT, env={**ENV, "MASUKA_HOST": "not-a-host.invalid"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("error: cannot listen on not-a-host.invalid:") and "Traceback" not in done.stderr


def test_a_port_taken_while_the_app_starts_is_refused_and_the_studio_closed(tmp_path, monkeypatch):
    import socket

    import masuka.server
    from masuka.config import Config
    from masuka.errors import InvalidInput
    from masuka.studio import Studio

    opened = []
    monkeypatch.setattr(masuka.server, "check_listen", lambda host, port: None)  # the port free when checked
    open_studio, close = Studio.open, Studio.close
    monkeypatch.setattr(Studio, "close", lambda self: opened.remove(self) or close(self))
    monkeypatch.setattr(Studio, "open", lambda config: opened.append(open_studio(config)) or opened[-1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInput, match=f"^cannot listen on 127.0.0.1:{port} "):
            masuka.server.launch(Config.from_env(data_dir=tmp_path), port=port, block=False)
    assert opened == [], "the studio (its queue worker, its database) is closed again"


def test_a_studio_without_an_admin_warns_and_an_unknown_admin_stops_it_in_one_line(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("alice:pw-alice\nbob:pw-bob\n")
    env = {k: v for k, v in ENV.items() if k not in ("NGROK_AUTHTOKEN", "MASUKA_ADMINS")}  # --ngrok stops after
    said = {}  # the warnings
    for admins in ("", "Alice", "alice"):
        done = subprocess.run([sys.executable, "app.py", "--ngrok", "--auth", f"@{users}", "--port", str(free_port()),
                               "--data-dir", str(tmp_path / "d")], cwd=ROOT, env={**env, "MASUKA_ADMINS": admins},
                              capture_output=True, text=True, timeout=120)
        said[admins] = done
    assert "WARNING: no admin" in said[""].stderr and "MASUKA_ADMINS=user" in said[""].stderr
    assert said["Alice"].returncode == 2
    assert said["Alice"].stderr == ("error: MASUKA_ADMINS names 'Alice', not on the sign-in list (names are "
                                    "case-sensitive): name admins exactly as in MASUKA_AUTH.\n")
    assert "no admin" not in said["alice"].stderr
