"""API keys never reach logs, the database or responses, even at DEBUG level and through provider errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from gradio_client import Client

from tests.conftest import FAST_VIDEO, ROOT, free_port

HF_CANARY = "hf_canaryLOGSCAN81723"


def wait_for_video_rows(client: Client, count: int, timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.predict(api_name="/video_status")[0]["data"]
        if len(rows) >= count and all(r[2] not in ("queued", "running") for r in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError("video jobs did not finish")


@pytest.mark.slow
def test_keys_used_for_real_requests_never_appear_in_logs_or_the_store(tmp_path, sample_mp4, tiny_model):
    from masuka.testing.video import KEY, FakeProvider

    provider = FakeProvider("openai", sample_mp4)
    provider.fault("create", 401, body={"error": {"message": "Incorrect API key provided", "type": "auth"}})
    port, data, log = free_port(), tmp_path / "data", tmp_path / "app.log"
    env = {**os.environ, **FAST_VIDEO, "MASUKA_OPENAI_BASE_URL": provider.base, "OPENAI_API_KEY": KEY,
           "HF_TOKEN": HF_CANARY, "MASUKA_LOG_LEVEL": "DEBUG", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as handle:
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", str(data)], cwd=ROOT,
                               env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        client = _connect(f"http://127.0.0.1:{port}/")
        responses = []
        for prompt in ("refused by the provider", "a paper boat"):
            try:
                responses.append(str(client.predict(prompt, "openai", "sora-2", 4, "1280x720", None, "", [],
                                                    api_name="/generate_video")))
            except Exception as error:  # the 401 surfaces as a message; it must not carry the key
                responses.append(str(error))
        rows = wait_for_video_rows(client, 1)
        responses.append(str(rows))
        responses.append(str(client.predict(prompt="a kite", model=str(tiny_model("flux")), negative_prompt="",
                                            steps=1, guidance=1.0, width=64, height=64, seed=1, batch=1, loras=[],
                                            api_name="/generate_image")))
        assert any(r[2] == "completed" for r in rows)
    finally:
        app.terminate()
        app.wait(timeout=30)
        provider.close()
    text = log.read_text(errors="replace")
    assert "DEBUG" in text, "the scan covered debug logging"
    dumps = [text, *responses] + [p.read_bytes().decode("latin-1") for p in data.rglob("*") if p.is_file()
                                  and p.suffix not in (".png", ".mp4")]
    for secret in (KEY, HF_CANARY):
        for dump in dumps:
            assert secret not in dump and secret[4:] not in dump


def _connect(url: str, timeout: float = 90) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
