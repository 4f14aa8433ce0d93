"""Environment variables: each one read in ``masuka/config.py``, and a bad value named in one line (exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from masuka import config
from masuka.environment import check_environment
from masuka.errors import InvalidInput
from masuka.keys import service
from masuka.remote.timing import RemoteSettings
from masuka.server import command_line_auth_warning
from tests.conftest import ROOT, free_port

# a MASUKA_/SPACE variable named in place, or any variable named by a constant (which could hide one)
ENV_READ = re.compile(r"""(os\.environ\.get|os\.getenv|os\.environ\[)\(?\s*(["'](MASUKA_|SPACE)|[A-Z][A-Z_]*[)\],])""")


def test_no_module_but_config_reads_a_masuka_variable():
    readers = [str(path.relative_to(ROOT)) for path in (ROOT / "masuka").rglob("*.py")
               if path.name != "config.py" and ENV_READ.search(path.read_text(encoding="utf-8"))]
    assert readers == []


@pytest.mark.parametrize("name, value, message", [
    ("MASUKA_GPU_CONCURRENCY", "two", "MASUKA_GPU_CONCURRENCY='two' is not a whole number"),
    ("MASUKA_GPU_CONCURRENCY", "0", "MASUKA_GPU_CONCURRENCY must be at least 1"),
    ("MASUKA_LOGIN_LOCKOUT_S", "-5", "MASUKA_LOGIN_LOCKOUT_S must be at least 0"),
    ("MASUKA_QUEUE_TURN_S", "a minute", "MASUKA_QUEUE_TURN_S='a minute' is not a number"),
    ("MASUKA_API_OPEN", "maybe", "MASUKA_API_OPEN='maybe' is not a switch"),
])
def test_bad_numbers_and_switches_name_the_variable(monkeypatch, tmp_path, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        config.Config.from_env(tmp_path)


def test_good_values_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("MASUKA_GPU_CONCURRENCY", " 3 ")
    monkeypatch.setenv("MASUKA_API_OPEN", "yes")
    monkeypatch.setenv("MASUKA_DEVICE", "CPU")
    monkeypatch.setenv("MASUKA_VIDEO_TIMEOUT_S", "2.5")
    monkeypatch.setenv("MASUKA_QUEUE_TURN_S", "300")
    loaded = config.Config.from_env(tmp_path)
    assert loaded.gpu_concurrency == 3 and loaded.api_open and config.device_choice() == "cpu"
    assert loaded.queue_turn_s == 300.0 and config.Config(tmp_path).queue_turn_s == 60.0
    assert RemoteSettings.from_env().timeout_s == 2.5 and RemoteSettings.from_env().unhealthy_after == 5


@pytest.mark.parametrize("name, value, reader, message", [
    ("MASUKA_DEVICE", "gpu", config.device_choice, "MASUKA_DEVICE='gpu' is not one of auto, cuda, mps, cpu"),
    ("MASUKA_COMPILE_BACKEND", "fast", config.compile_backend, "is not one of inductor"),
    ("MASUKA_VIDEO_TIMEOUT_S", "soon", RemoteSettings.from_env, "MASUKA_VIDEO_TIMEOUT_S='soon' is not a number"),
    ("MASUKA_FAL_BASE_URL", "queue.fal.run", lambda: service("fal").base_url(), "is not an http:// or https://"),
])
def test_bad_choices_and_urls_name_the_variable(monkeypatch, name, value, reader, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        reader()


def run_history(env: dict, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masuka", "history", "list", "--data-dir", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_cli_refuses_a_bad_variable_in_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MASUKA_QUEUE_SIZE": "lots"}
    done = run_history(env, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: MASUKA_QUEUE_SIZE='lots' is not a whole number."
    env["MASUKA_QUEUE_SIZE"], env["MASUKA_LOG_LEVEL"] = "8", "loud"
    done = run_history(env, tmp_path)
    assert done.returncode == 2 and "MASUKA_LOG_LEVEL='loud' is not one of DEBUG" in done.stderr


@pytest.mark.parametrize("name, value", [
    ("MASUKA_OPENAI_BASE_URL", "ftp://example.org"),  # a service's base URL
    ("MASUKA_FAL_STORAGE_URL", "rest.fal.ai"),  # fal's upload host, read by remote training
    ("MASUKA_VIDEO_ATTEMPTS", "lots"),  # the timing of remote calls
    ("MASUKA_PROMPT_LLM_TIMEOUT_S", "0"),  # the prompt optimizer's timeout
])
def test_variables_read_at_first_use_are_checked_before_the_app_starts(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=re.escape(name)):
        check_environment()
    monkeypatch.delenv(name)
    check_environment()


@pytest.mark.slow
def test_serve_and_doctor_report_a_bad_variable_read_at_first_use(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "MASUKA_OPENAI_BASE_URL": "ftp://example.org"}
    serve = subprocess.run([sys.executable, "app.py", "--port", str(free_port()), "--data-dir", str(tmp_path)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert serve.returncode == 2
    message = "MASUKA_OPENAI_BASE_URL='ftp://example.org' is not an http:// or https:// URL."
    assert serve.stderr.strip() == f"error: {message}"
    doctor = subprocess.run([sys.executable, "-m", "masuka", "doctor"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert doctor.returncode == 2 and f"problem: {message}" in doctor.stdout


def test_the_shared_owner_cannot_be_a_user_name(tmp_path):
    """What a studio without sign-in made is owned by "local" and shared with every user, so no one may sign in
    as "local" and have their files shared."""
    with pytest.raises(InvalidInput, match="'local' cannot be a user name"):
        config.Config.from_env(tmp_path, auth="local:pw1,bob:pw2")


def test_a_password_with_a_comma_is_never_echoed_and_a_file_takes_it(tmp_path):
    with pytest.raises(InvalidInput) as refused:
        config.parse_auth("colab:se,cret-tail")
    assert "cret-tail" not in str(refused.value) and "entry 2" in str(refused.value)
    (tmp_path / "auth.txt").write_text("colab:se,cret\n", encoding="utf-8")
    assert config.parse_auth(f"@{tmp_path / 'auth.txt'}") == {"colab": "se,cret"}


def test_the_colab_password_cell_writes_a_private_file_and_makes_its_user_the_admin(tmp_path, monkeypatch, capsys):
    """Colab's password goes in a file only its owner reads, and its one user is the studio's admin (else nobody
    could save API keys, defaults or wildcards)."""
    notebook = json.loads((ROOT / "assets" / "masuka_colab.ipynb").read_text(encoding="utf-8"))
    cell = next("".join(cell["source"]) for cell in notebook["cells"] if "PASSWORD = " in "".join(cell["source"]))
    auth_file = tmp_path / "masuka-auth.txt"
    auth_file.write_text("old", encoding="utf-8")
    auth_file.chmod(0o644)  # one an older notebook wrote
    code = cell.replace('PASSWORD = ""', 'PASSWORD = "se,cret"').replace("/content/masuka-auth.txt", str(auth_file))
    for name in ("MASUKA_AUTH", "MASUKA_ADMINS"):  # what the cell sets is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    exec(compile(code, "cell 3", "exec"), {})  # no google.colab here: its secrets are passed over
    assert auth_file.stat().st_mode & 0o777 == 0o600
    studio = config.Config.read_env(tmp_path / "data")
    assert studio.users == {"colab": "se,cret"} and studio.admins == {"colab"}
    assert "Sign in as user 'colab'" in capsys.readouterr().out


def test_a_sign_in_file_saved_with_a_byte_order_mark_names_its_first_user_as_written(tmp_path):
    (tmp_path / "auth.txt").write_bytes("\ufeffalice:pw1\r\nbob:pw2\r\n".encode())  # Windows Notepad
    assert config.parse_auth(f"@{tmp_path / 'auth.txt'}") == {"alice": "pw1", "bob": "pw2"}


def test_a_bare_file_name_as_auth_is_refused_saying_to_write_an_at_sign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.txt").write_text("alice:pw1\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"write @users\.txt to read sign-ins from a file"):
        config.parse_auth("users.txt")
    assert not config.names_auth_file("users.txt") and config.names_auth_file("@users.txt")
    assert command_line_auth_warning("users.txt") is None  # no password in it: no warning about ps before the refusal
    assert command_line_auth_warning("@users.txt") is None
    assert command_line_auth_warning(str(tmp_path / "users.txt")) is None
    assert command_line_auth_warning("alice:pw1") is not None


def test_a_password_file_keeps_blanks_at_the_ends_of_a_password(tmp_path):
    (tmp_path / "auth.txt").write_text("# users\r\nana:pw with space \r\n  \nbob:\tpw-bob\n", encoding="utf-8")
    assert config.parse_auth(f"@{tmp_path / 'auth.txt'}") == {"ana": "pw with space ", "bob": "\tpw-bob"}


def test_a_space_model_that_names_no_model_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("MASUKA_SPACE_MODEL", str(tmp_path / "no-such-model"))
    with pytest.raises(InvalidInput, match=r"^MASUKA_SPACE_MODEL='.*no-such-model': "):
        check_environment()
    monkeypatch.setenv("MASUKA_SPACE_MODEL", "flux-schnell")
    check_environment()


@pytest.mark.parametrize("name, value, message", [
    ("MASUKA_LOGIN_LOCKOUT_S", "nan", "MASUKA_LOGIN_LOCKOUT_S='nan' is not a finite number"),
    ("MASUKA_LOGIN_LOCKOUT_S", "inf", "MASUKA_LOGIN_LOCKOUT_S='inf' is not a finite number"),
    ("MASUKA_VIDEO_TIMEOUT_S", "NaN", "MASUKA_VIDEO_TIMEOUT_S='NaN' is not a finite number"),
    ("MASUKA_VIDEO_MAX_WAIT_S", "-inf", "MASUKA_VIDEO_MAX_WAIT_S='-inf' is not a finite number"),
    ("MASUKA_VIDEO_ATTEMPTS", "0", "MASUKA_VIDEO_ATTEMPTS must be at least 1"),  # no try at all: every job failed
    ("MASUKA_VIDEO_UNHEALTHY_AFTER", "0", "MASUKA_VIDEO_UNHEALTHY_AFTER must be at least 1"),
    ("MASUKA_VIDEO_POLL_S", "0", "MASUKA_VIDEO_POLL_S must be at least 0.01"),  # a provider asked without a pause
    ("MASUKA_VIDEO_TIMEOUT_S", "0", "MASUKA_VIDEO_TIMEOUT_S must be at least 0.1"),  # every request timed out
])
def test_numbers_that_are_not_finite_or_too_small_to_work_are_refused(monkeypatch, tmp_path, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        config.Config.from_env(tmp_path)
        check_environment()


@pytest.mark.parametrize("spec", ["@{empty}", "@{comments}", ",", " , ,"], ids=["empty-file", "comments-only",
                                                                               "comma", "commas"])
def test_a_sign_in_that_names_no_user_is_refused_rather_than_starting_open(tmp_path, monkeypatch, spec):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "comments.txt").write_text("# users\n\n   \n", encoding="utf-8")
    spec = spec.format(empty=tmp_path / "empty.txt", comments=tmp_path / "comments.txt")
    with pytest.raises(InvalidInput, match="names no user: give at least one user:password"):
        config.Config.from_env(tmp_path / "d", auth=spec)
    monkeypatch.setenv("MASUKA_AUTH", spec)
    with pytest.raises(InvalidInput, match="names no user"):
        config.Config.from_env(tmp_path / "d")
    assert config.parse_auth("") == config.parse_auth(None) == {}, "no spec at all is no sign-in"


def test_a_sign_in_file_that_cannot_be_read_is_one_line_for_every_command(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.txt").write_bytes("ana:contrase\xf1a\n".encode("latin-1"))
    for name, reason in [("missing.txt", "No such file or directory"), ("folder", "Is a directory"),
                         ("latin1.txt", "'utf-8' codec can't decode")]:
        with pytest.raises(InvalidInput, match=re.escape(f"Sign-in file {tmp_path / name} cannot be read ({reason}")):
            config.parse_auth(f"@{tmp_path / name}")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "MASUKA_AUTH": f"@{tmp_path / 'missing.txt'}"}
    done = run_history(env, tmp_path)
    assert done.returncode == 2
    missing = tmp_path / "missing.txt"
    assert done.stderr == f"error: Sign-in file {missing} cannot be read (No such file or directory).\n"


@pytest.mark.parametrize("name, value, message", [
    ("MASUKA_DEVICE", "tpu", "MASUKA_DEVICE='tpu' is not one of auto, cuda, mps, cpu"),
    ("MASUKA_COMPILE_BACKEND", "fast", "MASUKA_COMPILE_BACKEND='fast' is not one of inductor"),
    ("MASUKA_ZEROGPU_MAX_S", "0", "MASUKA_ZEROGPU_MAX_S must be at least 1"),
    ("MASUKA_ZEROGPU_AOTI", "maybe", "MASUKA_ZEROGPU_AOTI='maybe' is not a switch"),
    ("MASUKA_PUBLIC_SPACE", "maybe", "MASUKA_PUBLIC_SPACE='maybe' is not a switch"),
])
def test_device_compile_and_zerogpu_variables_are_checked_before_the_app_starts(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        check_environment()


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_device_this_machine_lacks_is_refused_naming_the_variable(monkeypatch, device):
    import torch

    from masuka.gpu import device_plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("MASUKA_DEVICE", device)
    message = f"MASUKA_DEVICE={device}, but torch {torch.__version__} finds no {device.upper()} device"
    with pytest.raises(InvalidInput, match=re.escape(message)):  # doctor
        check_environment(probe_device=True)
    check_environment()  # serve: no torch at start-up
    with pytest.raises(InvalidInput, match=re.escape(message)):  # a job's first model load, were it set since
        device_plan(1.0)
    monkeypatch.setenv("MASUKA_DEVICE", "auto")
    check_environment(probe_device=True)
    assert device_plan(1.0).device == "cpu"


def test_an_error_s_reason_is_the_system_s_words_else_its_text():
    from masuka.errors import reason

    assert reason(FileNotFoundError(2, "No such file or directory", "/x/auth.txt")) == "No such file or directory"
    assert reason(OSError("no errno")) == "no errno"
    assert reason(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")).endswith("invalid start byte")


def test_an_admin_not_on_the_sign_in_list_is_refused_naming_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MASUKA_ADMINS", "alice,Bob")
    with pytest.raises(InvalidInput, match=re.escape("MASUKA_ADMINS names 'Bob', not on the sign-in list")):
        config.Config.from_env(tmp_path, auth="alice:pw1,bob:pw2")
    monkeypatch.setenv("MASUKA_ADMINS", "alice, bob")
    assert config.Config.from_env(tmp_path, auth="alice:pw1,bob:pw2").admins == {"alice", "bob"}


def test_a_user_named_twice_is_refused_naming_the_entry(tmp_path):
    (tmp_path / "auth.txt").write_text("ana:pw1\nbob:pw2\nana:pw3\n", encoding="utf-8")
    for spec, entry in [("ana:pw1,bob:pw2, ana :pw3", 3), (f"@{tmp_path / 'auth.txt'}", 3)]:
        with pytest.raises(InvalidInput, match=re.escape(f"Sign-in entry {entry} names the user 'ana' again")):
            config.parse_auth(spec)


@pytest.mark.parametrize("name, value, message", [
    ("MASUKA_QUEUE_SIZE", "lots", "MASUKA_QUEUE_SIZE='lots' is not a whole number."),
    ("MASUKA_AUTH", "@/nonexistent", "Sign-in file /nonexistent cannot be read"),
    ("MASUKA_LOGIN_ATTEMPTS", "0", "MASUKA_LOGIN_ATTEMPTS must be at least 1"),
    ("MASUKA_MAX_UPLOAD_MB", "nan", "MASUKA_MAX_UPLOAD_MB='nan' is not a whole number."),
    ("MASUKA_TRUSTED_PROXIES", "the-proxy", "MASUKA_TRUSTED_PROXIES: 'the-proxy' is not an IP address"),
])
def test_doctor_reports_a_variable_serve_refuses_and_makes_no_data_dir(monkeypatch, tmp_path, capsys, name, value,
                                                                         message):
    from masuka.cli import main

    monkeypatch.setenv(name, value)
    assert main(["doctor", "--data-dir", str(tmp_path / "data")]) == 2
    assert f"problem: {message}" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()
