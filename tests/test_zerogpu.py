"""ZeroGPU: a no-op off Spaces; on ZeroGPU each request asks for its own duration (a too-long one is refused before
the GPU), the Space model is placed at start-up and its Flux transformer compiled ahead of time."""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
import types

import numpy as np
import pytest
from PIL import Image

from masuka.errors import Cancelled, InvalidInput
from masuka.gpu import zerogpu
from masuka.models.architectures import PROFILES


def work(steps: int) -> int:
    return steps * 2


def test_no_op_outside_zerogpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert zerogpu(duration=lambda steps: steps)(work) is work


def test_wraps_with_spaces_gpu_and_estimate_on_zerogpu(monkeypatch):
    seen = {}

    def gpu(duration):
        def decorate(func):
            def wrapped(*args):
                seen["duration"] = duration(*args) if callable(duration) else duration
                return func(*args)
            return wrapped
        return decorate

    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu, __spec__=object()))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    wrapped = zerogpu(duration=lambda steps: 10 + steps)(work)
    assert wrapped(7) == 14 and seen["duration"] == 17


# -- with the stand-in ``spaces`` package (tests/standins/spaces.py, the on_zerogpu fixture) ---------------------


def test_duration_grows_with_steps_size_and_images_and_has_a_ceiling(monkeypatch):
    from masuka.zerogpu import request_seconds

    base = request_seconds("image", steps=20, width=1024, height=1024, architecture="flux")
    assert request_seconds("image", steps=28, width=1024, height=1024, architecture="flux") > base
    assert request_seconds("image", steps=20, width=1024, height=1024, images=4, architecture="flux") > base
    assert request_seconds("image", steps=20, width=512, height=512, architecture="flux") < base
    assert request_seconds("image", steps=20, width=1024, height=1024, architecture="sdxl") < base
    assert request_seconds("caption", images=40) > request_seconds("caption", images=4)
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "15")
    with pytest.raises(InvalidInput, match="about 17 s of GPU time, more than the 15 s"):
        request_seconds("image", steps=28, width=1024, height=1024, architecture="flux")
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "40")
    with pytest.raises(InvalidInput, match="caption fewer images at a time"):
        request_seconds("caption", images=6)


def test_the_seconds_per_step_are_the_architectures_profiles(monkeypatch):
    """Every profile says how fast it steps on ZeroGPU (a larger transformer asks for more), none gets a default."""
    from dataclasses import replace

    from masuka.models import architectures
    from masuka.zerogpu import FIXED_SECONDS, request_seconds

    def per_step(architecture: str) -> int:
        return request_seconds("image", steps=10, width=1024, height=1024, architecture=architecture) - FIXED_SECONDS

    assert per_step("flux2") > per_step("qwen_image") > per_step("flux") > per_step("z_image") > per_step("sdxl")
    monkeypatch.setitem(architectures.PROFILES, "z_image", replace(architectures.PROFILES["z_image"], step_seconds=1.0))
    assert per_step("z_image") == 10


@pytest.mark.parametrize("architecture", sorted(PROFILES))
def test_every_profile_steps_in_a_plausible_time(monkeypatch, architecture):
    """A profile's ``step_seconds`` is positive (a request asks for more than the fixed overhead) and its own default
    image fits ZeroGPU's default ceiling (no misplaced decimal point)."""
    from masuka.zerogpu import FIXED_SECONDS, request_seconds

    monkeypatch.delenv("MASUKA_ZEROGPU_MAX_S", raising=False)
    profile = PROFILES[architecture]
    assert profile.step_seconds > 0
    defaults = profile.defaults
    seconds = request_seconds("image", steps=defaults["steps"], width=defaults["width"], height=defaults["height"],
                              architecture=architecture)  # raises above the default ceiling
    assert seconds > FIXED_SECONDS


def test_a_ceiling_below_one_caption_says_to_raise_it(monkeypatch):
    """Fewer images cannot help when one image's caption call is already too long: the Space's setting must change."""
    from masuka.zerogpu import request_seconds

    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "20")
    with pytest.raises(InvalidInput, match="raise MASUKA_ZEROGPU_MAX_S to at least 32") as refused:
        request_seconds("caption", images=1)
    assert "fewer images" not in str(refused.value)


def test_each_request_asks_for_its_own_duration_and_a_too_long_one_is_refused_before_the_gpu(
        on_zerogpu, studio, tiny_model):
    generate = importlib.import_module("masuka.image.generate")
    from masuka.models.catalog import resolve_image_model
    from masuka.zerogpu import request_seconds

    model = str(tiny_model("flux"))
    made, steps = [], []
    results = generate.generate_images(studio, generate.ImageRequest(
        prompt="a red fox", model=model, steps=2, width=64, height=64, batch=2, seed=1), on_image=made.append,
        on_step=lambda *step: steps.append(step))
    assert len(results) == 2 and all(result.path.is_file() for result in results)
    assert made == results and steps == [(0, 1, 2), (0, 2, 2), (1, 1, 2), (1, 2, 2)]  # replayed in the app
    # not the Space's model: it loads inside the task (a FLUX.1 folder: as much as FLUX.1 [dev]), and the task
    # asks for that time too
    expected = request_seconds("image", steps=2, width=64, height=64, images=2, architecture="flux",
                               load_gb=resolve_image_model("flux-dev").vram_gb)
    assert on_zerogpu.calls == [{"event": "gpu", "function": "_run", "duration": expected}]
    assert expected > request_seconds("image", steps=2, width=64, height=64, images=2, architecture="flux")

    rows = len(studio.store.find("generations"))
    too_long = generate.ImageRequest(prompt="a red fox", model=model, steps=200, width=2048, height=2048, batch=4)
    with pytest.raises(InvalidInput, match=r"needs about \d+ s of GPU time, more than the 120 s .* fewer steps"):
        generate.generate_images(studio, too_long)
    assert len(on_zerogpu.calls) == 1 and len(studio.store.find("generations")) == rows


@pytest.mark.slow
def test_space_model_placed_at_start_up_and_its_transformer_compiled_ahead_of_time(
        on_zerogpu, studio, tiny_model, monkeypatch):
    import torch
    from diffusers import DiffusionPipeline

    generate = importlib.import_module("masuka.image.generate")
    from masuka.image.space_model import prepare_space

    model = str(tiny_model("flux"))
    monkeypatch.setenv("MASUKA_SPACE_MODEL", model)
    monkeypatch.setenv("MASUKA_ZEROGPU_AOTI", "1")
    pipe = prepare_space(studio)
    assert isinstance(vars(pipe.transformer).get("forward"), on_zerogpu.CompiledModel)  # the compiled program runs
    assert [call["event"] for call in on_zerogpu.calls] == ["gpu", "aoti_capture", "aoti_compile", "aoti_apply"]
    assert on_zerogpu.calls[0] == {"event": "gpu", "function": "_compile_transformer", "duration": 1500}
    assert on_zerogpu.calls[2]["dynamic"] and on_zerogpu.calls[3]["module"] == "FluxTransformer2DModel"
    loads = studio.models.loads

    plain = DiffusionPipeline.from_pretrained(model)
    plain.set_progress_bar_config(disable=True)
    for width in (64, 128):  # the image sequence length is dynamic: another size runs the same compiled graph
        [result] = generate.generate_images(studio, generate.ImageRequest(
            prompt="a red fox", model=model, steps=2, width=width, height=64, seed=3, guidance=5.0))
        expected = plain(prompt="a red fox", num_inference_steps=2, width=width, height=64, guidance_scale=5.0,
                         generator=torch.Generator("cpu").manual_seed(3)).images[0]
        difference = np.abs(np.asarray(Image.open(result.path), float) - np.asarray(expected, float))
        assert Image.open(result.path).size == (width, 64) and difference.mean() < 1.0
    assert studio.models.loads == loads  # requests loaded nothing


def test_a_gpu_call_crosses_into_the_worker_as_spaces_sends_it(on_zerogpu, studio):
    """The studio and its store cross by reference (the worker's forked copy, with a database connection of its
    own); callbacks are replayed in the app in order; a stop event does not cross; everything else is a copy;
    a MASUKA error comes back with its message."""
    from masuka.gpu_worker import gpu_task
    from masuka.jobs import JobContext

    seen = {}

    def work(studio_, on_step, stop, ctx, values):
        seen.update(studio=studio_, stop=stop, ctx=ctx)
        on_step(1, "a")
        studio_.store.insert("datasets", {"owner": "local", "name": "made-in-the-worker"})
        on_step(2, "b")
        values.append("the worker's copy")
        return {"made": len(values)}

    steps, values = [], ["a"]
    studio.store._pid = -1  # as in a worker forked from the app
    before = studio.store.db
    assert gpu_task(work, 5)(studio, lambda *a: steps.append(a), threading.Event(), JobContext(studio.store, 7),
                             values) == {"made": 2}
    assert steps == [(1, "a"), (2, "b")] and values == ["a"]
    assert seen["studio"] is studio and seen["stop"] is None and seen["ctx"].store is studio.store
    assert seen["ctx"].job_id == 7 and seen["ctx"].interrupt is None
    assert studio.store.db is not before and studio.store._inherited == [before]  # its own connection
    assert studio.store.find("datasets", "name = ?", ["made-in-the-worker"])
    assert on_zerogpu.calls[-1] == {"event": "gpu", "function": "work", "duration": 5}

    def refuse(_studio):
        raise InvalidInput("The worker says no.")

    with pytest.raises(InvalidInput, match="The worker says no."):
        gpu_task(refuse, 5)(studio)

    def stopped(_studio):
        raise Cancelled("the images already made are kept", at="at image 2")

    with pytest.raises(Cancelled) as stop:
        gpu_task(stopped, 5)(studio)
    assert str(stop.value) == "Stopped by the user at image 2; the images already made are kept."

    class Odd(Exception):
        def __init__(self, code, detail):
            super().__init__(f"{code}: {detail}")

    def odd(_studio):
        raise Odd(7, "cannot be rebuilt from its args")

    with pytest.raises(RuntimeError, match="Odd: 7: cannot be rebuilt from its args"):
        gpu_task(odd, 5)(studio)
    with pytest.raises((TypeError, pickle.PicklingError)):  # what is neither shared nor picklable cannot cross
        gpu_task(refuse, 5)(threading.Lock())


def test_upscales_run_through_the_gpu_worker(on_zerogpu, studio, tiny_model, tmp_path):
    from masuka.image.upscale.models import upscalers_dir
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.image.upscale.tiles import tile_boxes
    from masuka.models.catalog import resolve_image_model
    from masuka.testing.upscalers import write_esrgan
    from masuka.zerogpu import request_seconds, upscale_pass_seconds

    job = importlib.import_module("masuka.image.upscale.job")  # decorated for ZeroGPU
    write_esrgan(upscalers_dir(studio.config) / "tiny2x.safetensors", 2)
    Image.new("RGB", (48, 40), "navy").save(tmp_path / "photo.png")
    tiles = []
    [plain] = job.upscale_image(studio, UpscaleRequest(tmp_path / "photo.png", scale=2, upscaler="tiny2x"),
                                on_tile=lambda *tile: tiles.append(tile))
    [detailed] = job.upscale_image(studio, UpscaleRequest(tmp_path / "photo.png", scale=2, upscaler="tiny2x",
                                                          detail=True, model=str(tiny_model("flux")), steps=2,
                                                          prompt="a harbour", tile=64))
    assert Image.open(plain.path).size == Image.open(detailed.path).size == (96, 80) and tiles
    assert [call["function"] for call in on_zerogpu.calls] == ["_model_upscale", "_run"]
    # not the Space's model: the detail upscale asks for its loading too, as a generation does
    # the steps run with (2 at strength 0.3 run 4), and the upscaler's pass (one tile), which runs in the same call
    boxes = len(tile_boxes(96, 80, 64, 16))
    assert on_zerogpu.calls[-1]["duration"] == request_seconds(
        "image", steps=4, width=64, height=64, images=boxes, architecture="flux",
        load_gb=resolve_image_model("flux-dev").vram_gb, upscaling=upscale_pass_seconds(96, 80, 1))
    assert {row["status"] for row in studio.store.find("generations")} == {"completed"}


def test_the_space_refuses_what_its_placed_model_cannot_do(on_zerogpu, studio, tiny_model, tiny_lora_file,
                                                            monkeypatch):
    """The Space's model asks for no load time; Fast and memory plans are refused (they would load another copy
    inside the task), and so are LoRAs on a transformer compiled ahead of time."""
    generate = importlib.import_module("masuka.image.generate")
    from masuka.zerogpu import request_seconds

    model = str(tiny_model("flux"))
    monkeypatch.setenv("MASUKA_SPACE_MODEL", model)
    request = dict(prompt="a red fox", model=model, steps=2, width=64, height=64)
    generate.generate_images(studio, generate.ImageRequest(**request))
    assert on_zerogpu.calls[-1]["duration"] == request_seconds("image", steps=2, width=64, height=64,
                                                               architecture="flux")
    for change in ({"fast": True}, {"memory_plan": "model_offload"}):
        with pytest.raises(InvalidInput, match="turn Fast off and leave the memory plan on auto"):
            generate.plan_request(studio, generate.ImageRequest(**request, **change))
    lora = [(str(tiny_lora_file), 1.0)]
    generate.plan_request(studio, generate.ImageRequest(**request, loras=lora), allow_any_path=True)
    monkeypatch.setenv("MASUKA_ZEROGPU_AOTI", "1")
    with pytest.raises(InvalidInput, match="compiled ahead of time"):
        generate.plan_request(studio, generate.ImageRequest(**request, loras=lora), allow_any_path=True)
    with pytest.raises(InvalidInput, match="compiled ahead of time"):  # a tag in the prompt too
        generate.plan_request(studio, generate.ImageRequest(**{**request, "prompt": f"a fox <lora:{lora[0][0]}:1>"}),
                              allow_any_path=True)


@pytest.fixture
def tiny_lora_file(tmp_path):
    from masuka.models.synthetic import save_tiny_lora

    return save_tiny_lora("flux", tmp_path / "style.safetensors")


def test_the_space_s_model_stays_placed_whatever_else_runs(on_zerogpu, studio, tiny_model, monkeypatch):
    generate = importlib.import_module("masuka.image.generate")
    from masuka.image.space_model import prepare_space

    model = str(tiny_model("flux"))
    monkeypatch.setenv("MASUKA_SPACE_MODEL", model)
    prepare_space(studio)
    request = dict(prompt="a red fox", steps=1, width=64, height=64)
    generate.generate_images(studio, generate.ImageRequest(model=str(tiny_model("sdxl")), **request))
    studio.models.release()  # as a caption pass does when it ends
    loads = studio.models.loads
    generate.generate_images(studio, generate.ImageRequest(model=model, **request))
    assert studio.models.loads == loads  # the Space's model was never freed: nothing loaded


@pytest.fixture
def fresh_masuka():
    """MASUKA imported afresh, as a Space's process imports it (every module made for ZeroGPU, not only those the
    ``on_zerogpu`` fixture reloads: the UI's names are then the same objects as the modules'); the modules as they
    were afterwards."""
    def ours() -> list[str]:
        return [name for name in sys.modules if name.split(".")[0] == "masuka"]

    saved = {name: sys.modules.pop(name) for name in ours()}
    yield
    for name in ours():
        del sys.modules[name]
    sys.modules.update(saved)


def test_the_app_runs_as_a_zerogpu_space_and_a_first_generate_loads_nothing(on_zerogpu, fresh_masuka, live_app,
                                                                           tiny_model, monkeypatch, capsys):
    """As on a Space (Gradio passing each event's function through ``spaces.gradio_auto_wrap``): the Space's
    model is placed at start-up and the Image tab starts on it with its defaults, so a visitor's first Generate,
    sent with the form as it opens, loads nothing."""
    import gradio.block_function
    import gradio.http_server
    from gradio_client import Client

    from masuka.models.catalog import resolve_image_model
    from masuka.ui.image import GENERATE_FIELDS
    from masuka.zerogpu import request_seconds

    model = str(tiny_model("flux"))
    monkeypatch.setenv("SYSTEM", "spaces")  # with SPACE_ID, what Gradio reads as "on a Space"
    monkeypatch.setenv("SPACE_ID", "someone/masuka")
    monkeypatch.setenv("MASUKA_SPACE_MODEL", model)
    monkeypatch.setattr(gradio.block_function, "spaces", on_zerogpu)  # what Gradio imports when installed
    monkeypatch.setattr(gradio.http_server, "watchfn_spaces", lambda reloader: None)  # the real package's dev mode
    app = live_app(auth="ana:pw-ana")
    loads = app.studio.models.loads
    client = Client(app.url, auth=("ana", "pw-ana"), verbose=False)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate_image"]
    opening = {parameter["parameter_name"]: parameter["parameter_default"] for parameter in api["parameters"]
               if parameter["parameter_has_default"]}
    spec = resolve_image_model(model)
    assert opening["model"] == spec.id
    assert (opening["steps"], opening["guidance"], opening["width"]) == (None, None, None)  # the model's own
    streamed = next(fn for fn in app.demo.fns.values() if fn.api_name == "generate_image_streamed")
    form = dict(zip(GENERATE_FIELDS, (component.value for component in streamed.inputs)))
    assert (form["model"], form["steps"], form["guidance"], form["width"]) == (spec.id, spec.steps, spec.guidance,
                                                                               spec.width)
    gallery, _seeds, status = client.predict(prompt="a red fox", steps=1, width=64, height=64,
                                             api_name="/generate_image")
    assert len(gallery) == 1 and "saved" in status
    assert app.studio.models.loads == loads, "the Space's model served the request"
    assert on_zerogpu.calls[-1] == {"event": "gpu", "function": "_run", "duration": request_seconds(
        "image", steps=1, width=64, height=64, architecture="flux")}
    assert "--share" not in capsys.readouterr().out  # a Space has its own address


def test_a_visitor_s_gpu_calls_carry_their_request_so_zerogpu_charges_their_quota(on_zerogpu, fresh_masuka,
                                                                                 live_app, tiny_model, tmp_path):
    """``spaces.GPU`` reads Gradio's request in the thread that makes the GPU call and sends its ``X-IP-Token``
    (the visitor's ZeroGPU quota). A generation runs on a thread of MASUKA's own (:mod:`masuka.ui.workers`) and an
    upscale in the handler's: both calls carry the request, with the visitor's header."""
    from gradio_client import Client, handle_file

    from masuka.config import Config
    from masuka.image.upscale.models import upscalers_dir
    from masuka.testing.upscalers import write_esrgan

    data_dir = tmp_path / "space-data"
    write_esrgan(upscalers_dir(Config.from_env(data_dir=data_dir, auth="")) / "tiny2x.safetensors", 2)
    Image.new("RGB", (48, 40), "navy").save(tmp_path / "photo.png")
    app = live_app(auth="ana:pw-ana", data_dir=data_dir)
    client = Client(app.url, auth=("ana", "pw-ana"), headers={"X-IP-Token": "ana-s-token"}, verbose=False)
    _gallery, _seeds, status = client.predict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64,
                                              height=64, api_name="/generate_image")
    assert "saved" in status
    _picture, status = client.predict(image=handle_file(str(tmp_path / "photo.png")), scale=2, upscaler="tiny2x",
                                      api_name="/upscale_image")
    assert status.startswith("Done")
    assert [call["function"] for call in on_zerogpu.calls] == ["_run", "_model_upscale"]
    assert None not in on_zerogpu.requests, "every GPU call was made inside the visitor's request"
    assert [request.headers.get("x-ip-token") for request in on_zerogpu.requests] == ["ana-s-token"] * 2
    assert {request.username for request in on_zerogpu.requests} == {"ana"}


def test_a_local_training_run_is_refused_on_zerogpu_pointing_at_remote_trainers(studio, tiny_model, monkeypatch,
                                                                               capsys):
    """A run takes minutes to hours; a ZeroGPU call at most MASUKA_ZEROGPU_MAX_S. The UI, the CLI and characters
    all start local runs through ``create_run`` (and resume them through ``resume_run``): refused there, in words."""
    from masuka.cli import main
    from masuka.training.options import TrainOptions
    from masuka.training.runs import create_run
    from tests.training.conftest import add_dataset

    add_dataset(studio)
    options = TrainOptions(dataset="fox", base=str(tiny_model("flux")), steps=2, resolution=64)
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    with pytest.raises(InvalidInput, match=r"Training cannot run on this ZeroGPU Space.*fal or Replicate backend"):
        create_run(studio, options)
    assert studio.store.count("jobs") == 0, "nothing was recorded"
    code = main(["train", "--data-dir", str(studio.config.data_dir), "--dataset", "fox", "--base",
                 str(tiny_model("flux")), "--steps", "2"])
    assert code == 2 and "error: Training cannot run on this ZeroGPU Space" in capsys.readouterr().err
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert create_run(studio, options) > 0, "elsewhere the same run is recorded"


def test_local_video_is_refused_on_zerogpu_naming_the_remote_providers(studio, monkeypatch, capsys, tmp_path):
    """The app's process has no GPU on ZeroGPU and a clip takes minutes: the form does not offer the local model,
    a request for it is refused (priced, started, from the CLI), and so is a local job taken up there."""
    from masuka.cli import main
    from masuka.jobs import JobContext
    from masuka.ui.video import _provider_choices
    from masuka.video.availability import offered_providers
    from masuka.video.jobs import estimate, start_video
    from masuka.video.local import run_local
    from masuka.video.request import VideoRequest

    request = VideoRequest(provider="local", model="wan2.1-t2v-1.3b", prompt="a red fox running", seconds=1)
    plan = estimate(request)  # elsewhere the local model is offered and planned
    assert "local" in offered_providers()
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    refusal = r"Local video cannot run on this ZeroGPU Space.*remote provider instead \(OpenAI.*fal\.ai"
    assert "local" not in offered_providers() and "local" not in [key for _name, key in _provider_choices()]
    for attempt in (lambda: estimate(request), lambda: start_video(studio, request),
                    lambda: run_local(studio, JobContext(studio.store, 1), plan, None, tmp_path / "clip.mp4", 0,
                                      print)):
        with pytest.raises(InvalidInput, match=refusal):
            attempt()
    assert studio.store.count("jobs") == 0, "nothing was recorded"
    command = ["video", "--data-dir", str(studio.config.data_dir), "--provider", "local", "--model",
               "wan2.1-t2v-1.3b", "--prompt", "a red fox running", "--seconds", "1"]
    with pytest.raises(SystemExit) as refused:  # the CLI offers what the form offers
        main(command)
    assert refused.value.code == 2 and studio.store.count("jobs") == 0
    err = capsys.readouterr().err
    offered = ", ".join(map(repr, offered_providers()))
    assert f"argument --provider: invalid choice: 'local' (choose from {offered})" in err and "'fal'" in offered
    with pytest.raises(SystemExit):
        main(["video", "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "--provider {openai,comet,gemini,runway,fal} " in usage and "; fal: fal.ai" in usage
    assert "local:" not in usage


def test_the_readme_space_steps_make_the_owner_an_admin_and_push_over_the_spaces_first_commit(monkeypatch):
    """Step 2's variables sign the owner in as an admin (API keys and defaults are saved by admins); step 3 pushes
    with --force, since a new Space has a commit of its own."""
    import re
    from pathlib import Path

    from masuka.config import Config

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    steps = readme[readme.index("1. On huggingface.co: *New Space*"):readme.index("What MASUKA does on **ZeroGPU**")]
    auth = re.search(r"`MASUKA_AUTH` \(`(\w+):([\w-]+)`", steps)
    admins = re.search(r"`MASUKA_ADMINS` with your\s+sign-in name \(`(\w+)`", steps)
    assert auth and admins, "step 2 sets both"
    monkeypatch.setenv("MASUKA_AUTH", f"{auth[1]}:{auth[2]}")
    monkeypatch.setenv("MASUKA_ADMINS", admins[1])
    assert Config.from_env().is_admin(auth[1])
    assert "`git push --force space main`" in steps and "`git push space main`" not in steps


def test_a_resampler_upscale_makes_no_gpu_call_and_a_model_upscale_asks_for_its_size(on_zerogpu, studio,
                                                                                      tmp_path, monkeypatch):
    """Lanczos needs no GPU; a model upscale asks for the time its result's pixels and tiles take, and one longer
    than a call may take is refused before anything is kept or recorded."""
    from masuka.image.upscale.models import upscalers_dir
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.image.upscale.tiles import tile_boxes
    from masuka.testing.upscalers import write_esrgan
    from masuka.zerogpu import request_seconds

    job = importlib.import_module("masuka.image.upscale.job")
    write_esrgan(upscalers_dir(studio.config) / "tiny2x.safetensors", 2)
    Image.new("RGB", (48, 40), "navy").save(tmp_path / "photo.png")
    [resampled] = job.upscale_image(studio, UpscaleRequest(tmp_path / "photo.png", scale=4, upscaler="Lanczos"))
    assert Image.open(resampled.path).size == (192, 160) and on_zerogpu.calls == []
    job.upscale_image(studio, UpscaleRequest(tmp_path / "photo.png", scale=4, upscaler="tiny2x", tile=32))
    # a 4x with a 2x model: two passes, the tiles of the source and of the picture twice its size (overlap 8)
    tiles = len(tile_boxes(48, 40, 32, 8)) + len(tile_boxes(96, 80, 32, 8))
    assert on_zerogpu.calls == [{"event": "gpu", "function": "_model_upscale",
                                 "duration": request_seconds("upscale", width=192, height=160, tiles=tiles)}]
    assert request_seconds("upscale", width=4096, height=4096, tiles=64) > request_seconds(
        "upscale", width=192, height=160, tiles=tiles)

    rows, inputs = len(studio.store.find("generations")), sorted(studio.config.data_dir.rglob("upscale-source*"))
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "5")
    with pytest.raises(InvalidInput, match=r"about 7 s of GPU time, more than the 5 s .* built-in resampler"):
        job.upscale_image(studio, UpscaleRequest(tmp_path / "photo.png", scale=4, upscaler="tiny2x", tile=32))
    assert len(on_zerogpu.calls) == 1 and len(studio.store.find("generations")) == rows
    assert sorted(studio.config.data_dir.rglob("upscale-source*")) == inputs
    job.upscale_image(studio, UpscaleRequest(tmp_path / "photo.png", scale=4, upscaler="Lanczos"))  # still fine


def test_the_estimate_counts_face_detail_the_safety_check_and_controlnets(on_zerogpu, studio, tiny_model):
    """Each runs inside the image's GPU call, so each asks for time of its own."""
    generate = importlib.import_module("masuka.image.generate")
    from masuka.zerogpu import request_seconds

    plain = request_seconds("image", steps=28, width=1024, height=1024, architecture="flux")
    for extra in ({"face_strength": 0.4}, {"safety": True}, {"controls": 1}):
        assert request_seconds("image", steps=28, width=1024, height=1024, architecture="flux", **extra) > plain
    assert request_seconds("image", steps=28, width=1024, height=1024, architecture="flux", face_strength=0.8) > \
        request_seconds("image", steps=28, width=1024, height=1024, architecture="flux", face_strength=0.4)

    request = dict(prompt="a portrait", model=str(tiny_model("flux")), steps=20, width=512, height=512)
    base = generate.gpu_seconds(generate.plan_request(studio, generate.ImageRequest(**request)))
    for change in ({"face_detail": True}, {"safety_check": True}):
        assert generate.gpu_seconds(generate.plan_request(studio, generate.ImageRequest(**request, **change))) > base


def test_defaults_a_generate_would_refuse_are_refused_and_another_model_is_said_to_load_each_call(
        on_zerogpu, studio, tiny_model, monkeypatch, capsys):
    """The Image tab opens with the defaults: on ZeroGPU, ones whose Generate is over the ceiling are refused with
    that Generate's reason (Settings and the CLI); a default model that is not the Space's is saved, saying what
    it costs."""
    from masuka.cli import main
    from masuka.image.defaults import load_defaults, save_defaults
    from masuka.ui.settings import store_defaults

    generate = importlib.import_module("masuka.image.generate")
    space = str(tiny_model("flux"))
    monkeypatch.setenv("MASUKA_SPACE_MODEL", space)
    with pytest.raises(InvalidInput) as generating:
        generate.generate_images(studio, generate.ImageRequest(prompt="a fox", model=space, steps=200, width=2048,
                                                               height=2048))
    assert "more than the 120 s one ZeroGPU call may take" in str(generating.value)
    with pytest.raises(InvalidInput) as saving:
        save_defaults(studio.config, steps=200, width=2048, height=2048)  # on the Space's model
    assert str(saving.value) == str(generating.value)
    code = main(["settings", "defaults", "--data-dir", str(studio.config.data_dir), "--steps", "200", "--width",
                 "2048", "--height", "2048"])
    assert code == 2 and str(generating.value) in capsys.readouterr().err
    assert load_defaults(studio.config).steps is None, "nothing was saved"

    assert store_defaults(studio, space, 4, 64, 64) == "Defaults saved: new images use them from the next page load."
    other = str(tiny_model("sdxl"))
    saved = store_defaults(studio, other, 4, 64, 64)
    assert saved.startswith("Defaults saved") and "is not this Space's model" in saved
    assert "loads inside every GPU call" in saved and load_defaults(studio.config).model == other
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert save_defaults(studio.config, steps=200, width=2048, height=2048).steps == 200, "elsewhere: no ceiling"


def test_the_queue_refuses_at_enqueue_what_one_gpu_call_may_not_run(on_zerogpu, studio, tiny_model, tmp_path,
                                                                      monkeypatch):
    """Add to queue, grids and upscales are checked against the ceiling as Generate is, not left to fail in the
    queue; what fits is queued."""
    from masuka.image.generate import ImageRequest
    from masuka.image.grid import parse_axis
    from masuka.image.upscale.models import upscalers_dir
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.queue.jobs import queue_grid, queue_images, queue_upscale
    from masuka.testing.upscalers import write_esrgan

    over = r"needs about \d+ s of GPU time, more than the 120 s one ZeroGPU call may take"
    fox = ImageRequest(prompt="a red fox", model=str(tiny_model("flux")), steps=2, width=64, height=64)
    with pytest.raises(InvalidInput, match=over):
        queue_images(studio, ImageRequest(prompt="a red fox", model=fox.model, steps=200, width=2048, height=2048))
    with pytest.raises(InvalidInput, match=over):  # one cell over the ceiling: the grid is not queued
        queue_grid(studio, fox, [parse_axis("size=64x64,2048x2048"), parse_axis("steps=2,200")], confirm_large=True)
    write_esrgan(upscalers_dir(studio.config) / "tiny2x.safetensors", 2)
    Image.new("RGB", (48, 40), "navy").save(tmp_path / "photo.png")
    detail = UpscaleRequest(tmp_path / "photo.png", detail=True, model=fox.model, steps=2, prompt="a harbour")
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "25")  # below the loading of a model that is not the Space's
    with pytest.raises(InvalidInput, match="more than the 25 s .* the Space's own model"):
        queue_upscale(studio, detail)
    upscale = UpscaleRequest(tmp_path / "photo.png", scale=4, upscaler="tiny2x", tile=32)
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "5")
    with pytest.raises(InvalidInput, match="more than the 5 s .* built-in resampler"):
        queue_upscale(studio, upscale)
    assert studio.store.count("jobs") == 0
    monkeypatch.delenv("MASUKA_ZEROGPU_MAX_S")
    assert queue_images(studio, fox) and queue_upscale(studio, upscale)
    assert queue_upscale(studio, detail)
    assert queue_grid(studio, fox, [parse_axis("steps=1,2")]) and on_zerogpu.calls == []


def test_a_queued_batch_is_checked_as_the_one_image_calls_it_makes(studio, tiny_model, monkeypatch):
    """The queue makes each image of a batch in a GPU call of its own: a batch whose images fit a call each is
    queued though the whole batch would not fit one call; one whose single image does not fit is refused."""
    from masuka.image.generate import ImageRequest
    from masuka.queue.jobs import queue_images
    from masuka.zerogpu import request_seconds

    model = str(tiny_model("flux"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    monkeypatch.setenv("MASUKA_SPACE_MODEL", model)
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", "30")
    fits, over = dict(steps=28, width=1024, height=1024), dict(steps=100, width=1024, height=1024)
    assert request_seconds("image", architecture="flux", **fits) <= 30, "one image fits a call"
    with pytest.raises(InvalidInput):
        request_seconds("image", architecture="flux", images=4, **fits)  # four in one call would not
    [job] = queue_images(studio, ImageRequest(prompt="a red fox", model=model, batch=4, **fits))
    assert studio.store.get("queue", job)["total"] == 4
    with pytest.raises(InvalidInput, match="more than the 30 s one ZeroGPU call may take"):
        queue_images(studio, ImageRequest(prompt="a red fox", model=model, batch=4, **over))
    assert studio.store.count("queue") == 1


def test_a_detail_upscale_asks_for_its_model_upscaler_s_pass_and_its_safety_check(studio, tiny_model, tmp_path,
                                                                                  monkeypatch):
    """Both run inside the tiles' GPU call: a model upscaler asks for more than Lanczos, the safety check too."""
    from dataclasses import replace

    from masuka.image.aid_settings import load_aid_settings
    from masuka.image.upscale.detail import detail_seconds, plan_detail
    from masuka.image.upscale.models import upscalers_dir
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.testing.upscalers import write_esrgan

    model = str(tiny_model("flux"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    monkeypatch.setenv("MASUKA_SPACE_MODEL", model)
    write_esrgan(upscalers_dir(studio.config) / "tiny4x.pth", 4)
    Image.new("RGB", (512, 512), "gray").save(tmp_path / "wall.png")
    source = Image.open(tmp_path / "wall.png").convert("RGB")

    def seconds(upscaler: str, safety: bool = False) -> int:
        request = UpscaleRequest(tmp_path / "wall.png", scale=2, upscaler=upscaler, detail=True, model=model,
                                 prompt="a wall", steps=4)
        plan, overlap = plan_detail(studio, request, source, request.prompt)
        return detail_seconds(request, replace(plan, safety=load_aid_settings(studio.config)) if safety else plan,
                              source, overlap)

    assert seconds("tiny4x") > seconds("Lanczos")
    assert seconds("Lanczos", safety=True) > seconds("Lanczos")
