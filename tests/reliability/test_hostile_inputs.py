"""Hostile input at every entry point: each is refused clearly, writes nothing outside the data dir, echoes
no secret, and leaves the app serving. The count of cases is reported by pytest (and in the README)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.reliability.conftest import CANARIES

HUGE = 10**12
BOUND = "|must be at least|must be at most"  # the range check on sliders (masuka.ui.checked_blocks)


def form(default_model, **change):
    values = dict(prompt="a calm lake", model=str(default_model), negative_prompt="", steps=1, guidance=1.0, width=64,
                  height=64, seed=1, batch=1, loras=[])
    values.update(change)
    return values


GENERATE_CASES = {
    "empty prompt": ({"prompt": ""}, "prompt is empty"),
    "blank prompt": ({"prompt": " \n\t "}, "prompt is empty"),
    "gigantic prompt": ({"prompt": "fox " * 250_000}, "too long"),
    "gigantic negative prompt": ({"negative_prompt": "x" * 100_000}, "too long"),
    "control characters in prompt": ({"prompt": "a\x00b\x1b[31m"}, "control characters"),
    "negative steps": ({"steps": -5}, "[Ss]teps" + BOUND),
    "zero steps": ({"steps": 0}, "[Ss]teps" + BOUND),
    "huge steps": ({"steps": HUGE}, "[Ss]teps" + BOUND),
    "negative width": ({"width": -64}, "[Ww]idth" + BOUND),
    "zero height": ({"height": 0}, "[Hh]eight" + BOUND),
    "huge width": ({"width": HUGE}, "[Ww]idth" + BOUND),
    "width not a multiple": ({"width": 65}, "multiple of 16"),
    "height as text": ({"height": "64; rm -rf /"}, "[Hh]eight|could not convert|invalid|number"),
    "zero batch": ({"batch": 0}, "[Bb]atch" + BOUND),
    "huge batch": ({"batch": 1000}, "[Bb]atch" + BOUND),
    "negative seed": ({"seed": -5}, "[Ss]eed" + BOUND),
    "seed beyond 64 bits": ({"seed": 2**70}, "[Ss]eed" + BOUND),
    "negative guidance": ({"guidance": -1}, "[Gg]uidance" + BOUND),
    "model path traversal": ({"model": "../../../../../../etc"}, "not a diffusers pipeline folder"),
    "model absolute system folder": ({"model": "/proc/self"}, "not a diffusers pipeline folder"),
    "model URL": ({"model": "http://169.254.169.254/latest"}, "Unknown model"),
    "model with NUL byte": ({"model": "owner/na\x00me"}, "control characters"),
    "model unicode junk": ({"model": "‮evil/ﾟ"}, "Unknown model|control characters"),
    "LoRA path traversal": ({"loras": ["../../../../etc/passwd"]}, "outside the folders|not found"),
    "LoRA absolute system path": ({"loras": ["/etc/passwd"]}, "not found"),
    "LoRA with control characters": ({"loras": ["sty\x07le:0.5"]}, "control characters"),
    "LoRA absurd weight": ({"loras": ["anything:1e9"]}, "out of range"),
    "pickle disguised as LoRA": ({"loras": ["evil:1.0"]}, "not a safetensors file"),
}


def png_bytes_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb when huge), with tiny data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(hostile_app):
    running, _model = hostile_app
    (running.studio.config.loras_dir / "evil.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    return Client(running.url, verbose=False)


def outside_files(running) -> set[Path]:
    """Every file under the app's temp root but outside its data dir (where nothing may ever be written)."""
    root = running.studio.config.data_dir.parent
    return {p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(running.studio.config.data_dir)}


def assert_clear_refusal(error: BaseException, pattern: str) -> None:
    import re

    text = str(error)
    assert re.search(pattern, text), f"unclear refusal: {text[:300]}"
    assert "Traceback" not in text
    for secret in CANARIES.values():
        assert secret not in text


def assert_still_serving(running, model) -> None:
    result = Client(running.url, verbose=False).predict(**form(model, seed=99), api_name="/generate_image")
    assert result[2].startswith("Done")


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_image_refuses(case, hostile_app, client):
    running, model = hostile_app
    change, pattern = GENERATE_CASES[case]
    before = outside_files(running), running.studio.store.count("generations", "status = 'completed'")
    with pytest.raises(Exception) as caught:
        client.predict(**form(model, **change), api_name="/generate_image")
    assert_clear_refusal(caught.value, pattern)
    assert (outside_files(running), running.studio.store.count("generations", "status = 'completed'")) == before


UPLOADS = {
    "text file named .png": (b"hello, not an image", "cannot identify|not an image|carries no"),
    "truncated PNG": (png_bytes_with_size(64, 64)[:40], "cannot identify|truncated|not an image|carries no"),
    "decompression bomb PNG": (png_bytes_with_size(100_000, 100_000), "too large|bomb|carries no|exceeds"),
    "empty file": (b"", "cannot identify|not an image|empty|carries no"),
}


@pytest.mark.parametrize("case", list(UPLOADS))
def test_read_parameters_refuses_bad_uploads(case, hostile_app, client, tmp_path):
    running, model = hostile_app
    data, pattern = UPLOADS[case]
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(path)), api_name="/read_parameters")
    assert_clear_refusal(caught.value, pattern)


FILE_ROUTE = ["/etc/passwd", "{data}/masuka.db", "{data}/secrets.json", "{data}/locks/gpu-0.lock",
              "{data}/outputs/../masuka.db", "{data}/outputs/%2e%2e/masuka.db", "../../../etc/shadow",
              "{root}/app.py"]


@pytest.mark.parametrize("target", FILE_ROUTE)
def test_file_route_serves_nothing_outside_outputs(target, hostile_app):
    running, _model = hostile_app
    config = running.studio.config
    (config.data_dir / "secrets.json").write_text(json.dumps({"openai": CANARIES["OPENAI_API_KEY"]}))
    url = running.url + "gradio_api/file=" + target.format(data=config.data_dir,
                                                            root=Path(__file__).resolve().parents[2])
    response = httpx.get(url)
    assert response.status_code in (403, 404)
    assert CANARIES["OPENAI_API_KEY"] not in response.text


def test_app_still_serves_after_the_corpus(hostile_app):
    running, model = hostile_app
    assert_still_serving(running, model)


def test_api_without_login_is_refused_when_auth_is_on(live_app):
    app = live_app(auth="ana:pw")
    for path in ("gradio_api/info", "config", "gradio_api/queue/join", "gradio_api/call/generate_image"):
        response = httpx.post(app.url + path, json={"data": []}) if "queue" in path or "call" in path \
            else httpx.get(app.url + path)
        assert response.status_code in (401, 403), path


CLI_CASES = {
    "negative width": (["--width", "-64"], "[Ww]idth" + BOUND),
    "pickle LoRA": (["--lora", "{pickle}"], "not a safetensors file"),
    "directory as LoRA": (["--lora", "/etc"], "is a folder"),
    "data dir is a file": (["--data-dir", "/etc/hostname"], "cannot be used"),
    "unicode control model": (["--model", "a\x1bb/c"], "control characters"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_refuses(case, tmp_path, tiny_model, capsys):
    from masuka.cli import main

    pickle = tmp_path / "p.safetensors"
    pickle.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    args, pattern = CLI_CASES[case]
    argv = ["generate", "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model("flux")), "--prompt", "x",
            "--width", "64", "--height", "64", "--steps", "1"]
    argv += [a.format(pickle=pickle) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert_clear_refusal(Exception(err), pattern)
