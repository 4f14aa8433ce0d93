"""A request through the app: ``/generate_image`` of a live MASUKA against a bare one-tab Gradio app making the
same diffusers call and against the bare call itself, and MASUKA's two REST routes (``/sdapi/v1/txt2img``,
``/v1/images/generations``) against the bare call, taken in turns in one run (``bench image --through-app``).

All run in this process on the same tiny model (each app its own pipeline loaded with ``from_pretrained``). The
two apps are called three ways: through Gradio's documented HTTP API (``/gradio_api/call/<api>`` and its event
stream, the image then downloaded) in one session, as a page or a script keeps one; the same with a new session
per call, as ``curl`` without a session hash does; and through ``gradio_client``. MASUKA's share is its median
minus the bare app's on the first; ``gradio_client`` reads its event stream every 50 ms, so its round trips come
in 50 ms steps and its share is reported apart. Gradio's own round trip is the bare app's minus the bare call's;
a REST route's share is its median minus the bare call's (no queue stream).
"""

from __future__ import annotations

import base64
import json
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPT = "a photo of a red fox in the snow, detailed fur, soft morning light"
SIZE, STEPS, SEED = 128, 16, 1
#: How many times the bare app's own time around its diffusers call (``bare_app_around_call_ms``: Gradio's work
#: around the handler, about 25 ms on a 2-core machine) MASUKA's share around the call and PNG save may take
#: (``masuka_around_share_ms``): a bound that grows with a slow machine, not a fixed time. There the share
#: measured 10-19 ms at load 4-6, and 70-76 ms with a 60 ms sleep added to the request path.
AROUND_CALL_TIMES = 2


def measure_through_app(folder: Path, rounds: int = 10, size: int = SIZE, steps: int = STEPS,
                        model: str | None = None) -> dict:
    """Median milliseconds per image of the bare call, the bare Gradio app and MASUKA's ``/generate_image`` (each
    app three ways: in one session, a new session per call, ``gradio_client``) and MASUKA's two REST routes,
    alternated ``rounds`` times after one warm-up call each; ``model`` defaults to a tiny Flux written into
    ``folder``. ``*_around_call_ms``: a REST request's or an in-session app request's time minus the diffusers
    call and PNG save inside it (MASUKA's history row's ``duration_s``, the bare app's handler's own timing), which
    pipeline noise on a loaded machine does not reach; ``masuka_around_share_ms``: MASUKA's minus the bare app's;
    ``over_bounds``: the regression bounds the figures broke (:func:`over_bounds`)."""
    from gradio_client import Client

    from masuka.config import Config
    from masuka.models.catalog import resolve_image_model
    from masuka.models.synthetic import save_tiny_pipeline
    from masuka.server import launch

    folder = Path(folder)
    if model is None:
        model = str(folder / "tiny-flux")
        if not Path(model).exists():
            save_tiny_pipeline("flux", model)
    call = bare_call(model, size, steps, folder / "bare-outputs")
    in_bare_app: list[float] = []  # seconds of each call the bare app's handler makes
    bare_app = bare_gradio_app(_timing(call, in_bare_app), folder / "bare-outputs")
    model_steps = resolve_image_model(model).steps  # OpenAI's request has no steps: the model's own are used
    masuka = launch(Config.from_env(data_dir=folder / "through-app-data", auth=""), host="127.0.0.1",
                    port=_port(), block=False)
    inside: dict[str, list[float]] = {"a1111_rest": [], "openai_rest": [], "bare_app": [], "masuka_app": []}
    rest = RestClient(masuka, model, size, steps, inside)
    kept_inside = {"bare_app": lambda: in_bare_app[-1], "masuka_app": rest.last_duration}
    bare_args, masuka_args = [PROMPT], [PROMPT, model, "", steps, 0.0, size, size, SEED, 1, []]
    apps = {"bare_app": (bare_app.local_url, "generate", bare_args),
            "masuka_app": (masuka.url, "generate_image", masuka_args)}
    http_calls = {**{name: GradioCall(*app, session=f"bench-{name}", inside=inside[name], read=kept_inside[name])
                     for name, app in apps.items()},
                  **{f"{name}_new_session": GradioCall(*app, session=None) for name, app in apps.items()}}
    try:
        bare_client, masuka_client = Client(bare_app.local_url, verbose=False), Client(masuka.url, verbose=False)
        calls: dict[str, Callable[[], Any]] = {
            "bare_call": call,
            **http_calls,
            "bare_app_gradio_client": lambda: bare_client.predict(*bare_args, api_name="/generate"),
            "masuka_app_gradio_client": lambda: masuka_client.predict(*masuka_args, api_name="/generate_image"),
            "a1111_rest": rest.a1111,
            "openai_rest": rest.openai,
        }
        if model_steps != steps:
            calls["bare_call_model_steps"] = lambda: call(PROMPT, model_steps)
        samples = _alternate(calls, rounds)
    finally:
        for closing in (rest, *http_calls.values()):
            closing.close()
        masuka.close()
        bare_app.close()
    ms = {name: round(1000 * statistics.median(times), 1) for name, times in samples.items()}
    openai_bare = ms.get("bare_call_model_steps", ms["bare_call"])
    around = {name: round(1000 * statistics.median(wall - call_s for wall, call_s in zip(samples[name], kept[1:])), 1)
              for name, kept in inside.items()}  # the first of each is the warm-up call's
    figures = {"model": Path(model).name, "size": size, "steps": steps, "openai_steps": model_steps, "rounds": rounds,
               **{f"{name}_ms": value for name, value in ms.items()},
               "gradio_share_ms": round(ms["bare_app"] - ms["bare_call"], 1),
               "masuka_share_ms": round(ms["masuka_app"] - ms["bare_app"], 1),
               "new_session_share_ms": round(ms["masuka_app_new_session"] - ms["bare_app_new_session"], 1),
               "gradio_client_share_ms": round(ms["masuka_app_gradio_client"] - ms["bare_app_gradio_client"], 1),
               "masuka_over_bare_call_ms": round(ms["masuka_app"] - ms["bare_call"], 1),
               "a1111_share_ms": round(ms["a1111_rest"] - ms["bare_call"], 1),
               "openai_share_ms": round(ms["openai_rest"] - openai_bare, 1),
               "a1111_around_call_ms": around["a1111_rest"], "openai_around_call_ms": around["openai_rest"],
               "bare_app_around_call_ms": around["bare_app"], "masuka_app_around_call_ms": around["masuka_app"],
               "masuka_around_share_ms": round(around["masuka_app"] - around["bare_app"], 1)}
    return {**figures, "over_bounds": over_bounds(figures)}


def over_bounds(figures: dict) -> list[str]:
    """The bounds a run's figures broke, in words (empty: none). They catch a clear regression of MASUKA's own
    share, not machine noise: a round trip of MASUKA's (each of the three ways) or ``/sdapi/v1/txt2img``'s over
    twice the bare app's, a share around the call over :data:`AROUND_CALL_TIMES` the bare app's own time around
    its call, or more time around a REST request's diffusers call than Gradio's whole round trip in the bare app
    (the diffusers call itself varies several-fold on a loaded machine, so no bound holds a wall time against it)."""
    broken = [f"{masuka} {figures[masuka]} ms > 2 x {bare} {figures[bare]} ms"
              for masuka, bare in (("masuka_app_ms", "bare_app_ms"),
                                   ("masuka_app_new_session_ms", "bare_app_new_session_ms"),
                                   ("masuka_app_gradio_client_ms", "bare_app_gradio_client_ms"),
                                   ("a1111_rest_ms", "bare_app_ms"))
              if figures[masuka] > 2 * figures[bare]]
    if figures["masuka_around_share_ms"] > AROUND_CALL_TIMES * figures["bare_app_around_call_ms"]:
        broken.append(f"masuka_around_share_ms {figures['masuka_around_share_ms']} ms > {AROUND_CALL_TIMES} x "
                      f"bare_app_around_call_ms {figures['bare_app_around_call_ms']} ms")
    broken += [f"{route}_around_call_ms {figures[f'{route}_around_call_ms']} ms >= gradio_share_ms "
               f"{figures['gradio_share_ms']} ms" for route in ("a1111", "openai")
               if figures[f"{route}_around_call_ms"] >= figures["gradio_share_ms"]]
    return broken


class GradioCall:
    """One event of a Gradio app called through its documented HTTP API, as ``curl`` would: ``POST
    /gradio_api/call/<api_name>``, then the event's stream read until ``complete``, then the first gallery
    image downloaded. ``session``: a session hash kept across calls (a page and ``gradio_client`` keep one), or
    None for a new session per call; after each call, ``read()`` (the seconds of the diffusers call and PNG save
    the app just made) is appended to ``inside``, when given."""

    def __init__(self, url: str, api_name: str, data: list[Any], session: str | None,
                 inside: list[float] | None = None, read: Callable[[], float] | None = None):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=600)
        self.api_name, self.body = api_name, {"data": data, **({"session_hash": session} if session else {})}
        self.inside, self.read = inside, read

    def __call__(self) -> bytes:
        path = f"gradio_api/call/{self.api_name}"
        event = self.http.post(path, json=self.body).raise_for_status().json()["event_id"]
        kind, output = "", None
        with self.http.stream("GET", f"{path}/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind in ("complete", "error"):
                    output = json.loads(line.removeprefix("data: "))
                    break
        if kind != "complete":
            raise RuntimeError(f"/{self.api_name} failed: {output}")
        image = self.http.get(output[0][0]["image"]["url"]).raise_for_status().content
        if self.inside is not None and self.read:
            self.inside.append(self.read())
        return image

    def close(self) -> None:
        self.http.close()


class RestClient:
    """MASUKA's two REST routes called as a user's script would (one keep-alive ``httpx`` client); after each
    call, the image's own time inside MASUKA (diffusers call and PNG save) is appended to ``inside[route]``."""

    def __init__(self, running: Any, model: str, size: int, steps: int, inside: dict[str, list[float]]):
        import httpx

        self.http = httpx.Client(base_url=running.url, timeout=600)
        self.store, self.inside, self.model, self.size, self.steps = running.studio.store, inside, model, size, steps

    def a1111(self) -> bytes:
        answer = self._post("a1111_rest", "sdapi/v1/txt2img", {
            "prompt": PROMPT, "steps": self.steps, "cfg_scale": 0.0, "width": self.size, "height": self.size,
            "seed": SEED, "override_settings": {"sd_model_checkpoint": self.model}})
        return _png(answer["images"][0])

    def openai(self) -> bytes:
        answer = self._post("openai_rest", "v1/images/generations", {
            "prompt": PROMPT, "model": self.model, "size": f"{self.size}x{self.size}", "n": 1,
            "response_format": "b64_json"})
        return _png(answer["data"][0]["b64_json"])

    def _post(self, route: str, path: str, body: dict) -> dict:
        answer = self.http.post(path, json=body).raise_for_status().json()
        self.inside[route].append(self.last_duration())
        return answer

    def last_duration(self) -> float:
        """Seconds of the diffusers call and PNG save of MASUKA's last image (its history row's)."""
        return self.store.find("generations", limit=1)[0]["duration_s"]

    def close(self) -> None:
        self.http.close()


def bare_call(model: str, size: int, steps: int, outputs: Path) -> Callable[..., str]:
    """The bare diffusers call plus a PNG save: what any app has to do for one image (``steps`` unless the call
    names others). Returns the file."""
    import torch
    from diffusers import DiffusionPipeline

    from masuka.gpu import device_plan

    plan = device_plan()
    pipe = DiffusionPipeline.from_pretrained(model, dtype=plan.dtype, use_safetensors=True).to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    outputs.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10**9))

    def generate(prompt: str = PROMPT, steps: int = steps) -> str:
        with torch.inference_mode():
            image = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=0.0, width=size, height=size,
                         generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
        path = outputs / f"{next(counter):06d}.png"
        image.save(path)
        return str(path)

    return generate


def bare_gradio_app(generate: Callable[[str], str], outputs: Path) -> Any:
    """A one-tab Gradio app whose button makes the bare call and shows the image in a Gallery, served on
    loopback; returns the launched ``Blocks`` (``.local_url``, ``.close()``)."""
    import gradio as gr

    with gr.Blocks() as demo, gr.Tab("One"):
        prompt = gr.Textbox()
        gallery = gr.Gallery(format="png")
        gr.Button().click(lambda text: [generate(text)], prompt, gallery, api_name="generate")
    demo.launch(server_name="127.0.0.1", server_port=_port(), prevent_thread_lock=True, quiet=True,
                allowed_paths=[str(outputs)])
    return demo


def _timing(call: Callable[[str], str], seconds: list[float]) -> Callable[[str], str]:
    """``call``, appending the seconds each call takes to ``seconds``."""

    def timed_call(prompt: str) -> str:
        start = time.perf_counter()
        path = call(prompt)
        seconds.append(time.perf_counter() - start)
        return path

    return timed_call


def _png(encoded: str) -> bytes:
    """The PNG a REST answer carries (base64), as a client decodes it."""
    data = base64.b64decode(encoded)
    if not data.startswith(b"\x89PNG"):
        raise ValueError("the answer carries no PNG")
    return data


def _alternate(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """One warm-up call each, then ``rounds`` rounds taking the calls in turn (load drift hits all alike)."""
    for func in calls.values():
        func()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, func in calls.items():
            start = time.perf_counter()
            func()
            samples[name].append(time.perf_counter() - start)
    return samples


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
