"""Requests their clients give up on, interrupted OpenAI requests and the queue cap's 429, through real clients
(`openai`, `httpx`, raw sockets that hang up) against a live app with tiny models."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from masuka.api.auth import create_token

AUTH = ("ann", "pw-ann")


def until(condition: Callable[[], object], what: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def ann(live_app):
    """``ann(cap)``: a live app with user ann, who may have ``cap`` REST generations waiting; returns the app, her
    API token and a reader of her ``/sdapi/v1/progress``."""

    def start(cap: int = 2):
        app = live_app(auth="ann:pw-ann", max_queued_per_user=cap)

        def progress() -> dict:
            return httpx.get(app.url.rstrip("/") + "/sdapi/v1/progress", params={"skip_current_image": True},
                             auth=AUTH, timeout=10).json()

        return app, create_token(app.studio, "ann", "laptop"), progress

    return start


def sdk(app, token, retries=0) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key=token, max_retries=retries, timeout=120)


@contextmanager
def hanging_up(app, path: str, body: dict) -> Iterator[None]:
    """A request of ann's sent on a socket of its own, which hangs up (closes) on the way out without reading the
    answer."""
    data = json.dumps(body).encode()
    address = urlsplit(app.url)
    with socket.create_connection((address.hostname, address.port)) as raw:
        raw.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    f"Authorization: Basic {base64.b64encode(':'.join(AUTH).encode()).decode()}\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        yield


def test_requests_whose_clients_hung_up_while_waiting_free_their_places_and_make_nothing(ann, tiny_model):
    app, token, progress = ann(2)
    body = {"model": str(tiny_model("flux")), "prompt": "a gull", "size": "64x64"}
    with app.studio.hold_gpu("a long job", "local"):
        with pytest.raises(httpx.TimeoutException):  # a client that gives up: its request may not be in yet
            httpx.post(app.url.rstrip("/") + "/v1/images/generations", json=body, timeout=0.5,
                       headers={"Authorization": f"Bearer {token}"})
        until(lambda: progress()["state"]["job_count"] == 0, "the request given up to leave the queue")
        with hanging_up(app, "/v1/images/generations", body):  # the user's whole cap, each seen waiting
            until(lambda: progress()["state"]["job_count"] == 1, "the first request to wait for the GPU")
            with hanging_up(app, "/v1/images/generations", {**body, "n": 2}):
                with pytest.raises(openai.RateLimitError):
                    sdk(app, token).images.generate(**body)
        until(lambda: progress()["state"]["job_count"] == 0, "the abandoned requests to leave the queue")
    answer = sdk(app, token).images.generate(**body, response_format="b64_json")
    assert len(answer.data) == 1, "the places are free again"
    rows = app.studio.store.find("generations", order_by="id")
    assert [row["status"] for row in rows] == ["completed"], "the abandoned requests made no image"


def test_a_running_generation_whose_client_hung_up_stops_between_steps(ann, tiny_model):
    app, _token, progress = ann()
    with hanging_up(app, "/sdapi/v1/txt2img", {"prompt": "a long night", "steps": 200, "width": 64, "height": 64,
                                                "batch_size": 4,
                                                "override_settings": {"sd_model_checkpoint": str(tiny_model("flux"))}}):
        until(lambda: progress()["progress"] > 0, "the generation to run")
    until(lambda: progress()["state"]["job_count"] == 0, "the generation to stop")
    statuses = [row["status"] for row in app.studio.store.find("generations", order_by="id")]
    assert statuses[-1] == "cancelled" and "running" not in statuses and len(statuses) < 4, statuses


def interrupted_while_waiting(app, progress, ask: Callable[[], object]) -> BaseException:
    """What ``ask()`` (a request for 2 images) raises when it is interrupted while it waits for the GPU."""
    failures: list[BaseException] = []

    def asking() -> None:
        try:
            ask()
        except Exception as error:  # handed to the test
            failures.append(error)

    with app.studio.hold_gpu("a long job", "local"):
        worker = threading.Thread(target=asking)
        worker.start()
        until(lambda: progress()["state"]["job_count"] == 2, "the request to wait for the GPU")
        assert httpx.post(app.url.rstrip("/") + "/sdapi/v1/interrupt", auth=AUTH).status_code == 200
    worker.join(120)
    assert len(failures) == 1, "an interrupted request is an error, not an answer short of images"
    return failures[0]


def test_an_interrupted_openai_request_is_an_error_the_sdk_does_not_retry(ann, tiny_model):
    app, token, progress = ann()
    client = sdk(app, token, retries=2)
    body = {"model": str(tiny_model("flux")), "prompt": "a gull", "size": "64x64", "n": 2}
    error = interrupted_while_waiting(app, progress, lambda: client.images.generate(**body))
    assert isinstance(error, openai.InternalServerError)
    assert (error.body["type"], error.body["code"]) == ("server_error", "cancelled")
    assert "stopped" in error.body["message"] and "after 0 of 2 images" in error.body["message"]
    streamed = interrupted_while_waiting(app, progress, lambda: list(client.images.generate(**body, stream=True)))
    assert isinstance(streamed, openai.APIError) and "after 0 of 2 images" in streamed.message
    assert streamed.body["code"] == "cancelled"
    assert not app.studio.store.count("generations"), "not made again by a retry"


def test_the_queue_caps_429_says_when_to_retry_on_both_apis(ann, tiny_model):
    app, token, progress = ann(1)
    model = str(tiny_model("flux"))
    with app.studio.hold_gpu("a long job", "local"):
        with hanging_up(app, "/sdapi/v1/txt2img", {"prompt": "a gull", "width": 64, "height": 64,
                                                    "override_settings": {"sd_model_checkpoint": model}}):
            until(lambda: progress()["state"]["job_count"] == 1, "the first request to wait for the GPU")
            with pytest.raises(openai.RateLimitError) as refused:
                sdk(app, token).images.generate(model=model, prompt="a gull", size="64x64")
            assert refused.value.response.headers["retry-after"] == "5", "nothing has run yet: the fixed guess"
            a1111 = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", auth=AUTH, timeout=30,
                               json={"prompt": "a gull", "override_settings": {"sd_model_checkpoint": model}})
            assert a1111.status_code == 429 and a1111.headers["retry-after"] == "5"
