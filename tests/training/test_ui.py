"""The Train tab's API through gradio_client against the live app."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client

from .conftest import add_dataset

WAIT_S = 240


def test_start_watch_and_stop_through_the_api(live_app, tiny_model):
    app = live_app()
    add_dataset(app.studio)
    client = Client(app.url, verbose=False)
    started = client.predict("fox", str(tiny_model("sd3")), "12gb", 3, 1e-3, 4, 4, 0, 1, 64, "adamw", "cosine", 1,
                             0.05, 7, "sks, a fox", 3, 0, 2, api_name="/start_training")
    assert started["status"] in ("queued", "running") and started["total"] == 3
    deadline = time.monotonic() + WAIT_S
    status = started
    while status["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the run did not finish in time"
        time.sleep(0.2)
        status = client.predict(started["run"], api_name="/training_status")
    assert status["status"] == "completed", status["error"]
    assert [step for step, _loss in status["losses"]] == [1, 2, 3] and len(status["samples"]) == 1
    assert status["lora"].endswith(".safetensors") and "cached 3 image(s)" in status["log"]
    with pytest.raises(Exception, match="already completed"):
        client.predict(started["run"], False, api_name="/stop_training")
    with pytest.raises(Exception, match="has no images"):
        add_dataset(app.studio, "empty", images=0)
        client.predict("empty", str(tiny_model("sd3")), "12gb", 3, 1e-3, 4, 4, 0, 1, 64, "adamw", "constant", 0,
                       0.05, 7, "", 0, 0, 2, api_name="/start_training")
