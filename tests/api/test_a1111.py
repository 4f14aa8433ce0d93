"""The AUTOMATIC1111 API through the real `webuiapi` client against a live app with tiny models."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import numpy as np
import pytest
import webuiapi

from masuka.errors import InvalidInput
from masuka.image.defaults import save_defaults
from masuka.image.metadata import parse_parameters
from masuka.loras.library import delete_lora
from tests.loras.test_imports import write_flux_lora


@pytest.fixture
def app(shared_app):
    """One app for the module's tests that need no settings of their own: each finds its rows by its own prompt,
    sets the checkpoint it uses, and names its LoRAs and upscalers apart."""
    return shared_app()


def made(app, prompt: str) -> list[dict]:
    """The history rows of ``prompt`` (each test prompts its own), oldest first."""
    return app.studio.store.find("generations", "prompt = ?", [prompt], order_by="id")


def client(app, **auth) -> webuiapi.WebUIApi:
    host, port = app.url.rstrip("/").rsplit(":", 1)
    return webuiapi.WebUIApi(host=host.split("//")[1], port=int(port), **auth)


def test_txt2img_with_a_lora_tag_is_recorded_and_png_info_reads_it(app, tiny_model, tiny_lora):
    shutil.copy(tiny_lora("flux"), app.studio.config.loras_dir / "fox.safetensors")
    api = client(app)
    model = str(tiny_model("flux"))
    assert [m["title"] for m in api.get_sd_models()][:1] and api.set_options({"sd_model_checkpoint": model}) is None
    assert api.get_options()["sd_model_checkpoint"] == model
    result = api.txt2img(prompt="a red fox <lora:fox:0.5>", negative_prompt="blurry", seed=3, steps=2, cfg_scale=2.5,
                         width=64, height=64, batch_size=2, sampler_name="Euler a")
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [3, 4] and len(result.info["infotexts"]) == 2
    rows = made(app, "a red fox")
    assert [r["seed"] for r in rows] == [3, 4] and {r["status"] for r in rows} == {"completed"}
    assert rows[0]["prompt"] == "a red fox" and rows[0]["loras"][0]["name"] == "fox"
    assert rows[0]["loras"][0]["weight"] == 0.5 and rows[0]["model"] == model
    info = api.png_info(result.images[0])
    assert info.info == result.info["infotexts"][0]
    assert info.parameters["Seed"] == 3 and "<lora:fox:0.5>" in info.parameters["Prompt"]
    assert parse_parameters(info.info).steps == 2
    assert parse_parameters(info.info).guidance == 2.5 and result.info["cfg_scale"] == 2.5, "cfg_scale is used"
    assert {r["guidance"] for r in rows} == {2.5}


def test_txt2img_passes_the_negative_prompt_to_a_model_that_takes_one(app, tiny_model):
    """SDXL (tiny) with classifier-free guidance on: the negative prompt is recorded and changes the pixels."""
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("sdxl"))})
    common = dict(prompt="a guided fox", seed=5, steps=2, cfg_scale=6.0, width=64, height=64)
    with_negative = api.txt2img(negative_prompt="blurry", **common)
    without = api.txt2img(**common)
    rows = made(app, "a guided fox")
    assert [r["negative_prompt"] for r in rows] == ["blurry", ""] and {r["guidance"] for r in rows} == {6.0}
    assert parse_parameters(with_negative.info["infotexts"][0]).negative_prompt == "blurry"
    pixels = [np.asarray(r.image.convert("RGB"), dtype=np.int16) for r in (with_negative, without)]
    assert np.abs(pixels[0] - pixels[1]).mean() > 1.0, "the negative prompt reaches the pipeline"


def test_img2img_with_a_mask_repaints_only_the_mask(app, tiny_model, photo, square_mask):
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("flux"))})
    result = api.img2img(images=[photo], mask_image=square_mask, mask_blur=0, denoising_strength=1.0,
                         prompt="a masked cat",
                         inpainting_fill=1, inpaint_full_res=False, steps=2, width=64, height=64, seed=8)
    out = np.asarray(result.image.convert("RGB"), dtype=np.int16)
    original = np.asarray(photo, dtype=np.int16)
    inside = np.asarray(square_mask) > 0
    assert result.image.size == (64, 64)
    assert np.array_equal(out[~inside], original[~inside]) and np.abs(out[inside] - original[inside]).mean() > 5
    (row,) = made(app, "a masked cat")
    assert row["params"]["task"] == "inpaint" and row["params"]["strength"] == 1.0
    assert app.studio.config.absolute(row["params"]["mask"]).is_file()
    only_masked = api.img2img(images=[photo], mask_image=square_mask, mask_blur=0, denoising_strength=1.0,
                              prompt="a cat", inpaint_full_res=True, inpaint_full_res_padding=4, steps=2, width=64,
                              height=64, seed=8)  # the crop around the mask is repainted at full size
    cropped = np.asarray(only_masked.image.convert("RGB"), dtype=np.int16)
    assert np.array_equal(cropped[~inside], original[~inside]) and not np.array_equal(cropped, out)
    plain = api.img2img(images=[photo], denoising_strength=0.6, prompt="a cat", steps=2, seed=8, width=64, height=64)
    assert plain.image.size == (64, 64) and plain.info["denoising_strength"] == 0.6


def test_unknown_fields_are_ignored_and_bad_values_get_422_with_the_reason(app, tiny_model):
    url = app.url.rstrip("/") + "/sdapi/v1/txt2img"
    body = {"prompt": "a boat", "steps": 1, "width": 64, "height": 64, "override_settings":
            {"sd_model_checkpoint": str(tiny_model("flux"))}, "hr_upscaler": "Latent", "alwayson_scripts": {}}
    answer = httpx.post(url, json=body, timeout=120)
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1
    assert json.loads(answer.json()["info"])["width"] == 64
    bad = httpx.post(url, json={**body, "width": 70}, timeout=60)
    assert bad.status_code == 422 and "multiple of" in bad.json()["detail"]
    bad = httpx.post(url, json={**body, "prompt": "a <lora:nowhere:1>"}, timeout=60)
    assert bad.status_code == 422 and "nowhere" in bad.json()["detail"]
    typed = httpx.post(url, json={**body, "steps": "many"}, timeout=60)
    assert typed.status_code == 422 and typed.json()["detail"][0]["loc"] == ["body", "steps"]


def test_a_body_over_the_upload_limit_gets_413_in_each_apis_shape(shared_app):
    """MASUKA_MAX_UPLOAD_MB caps what the REST routes take: by the declared Content-Length before reading, else (a
    chunked body) as soon as what was read passes it."""
    app = shared_app(max_upload_mb=1)
    base, body = app.url.rstrip("/"), b"x" * (2 * 2**20)
    a1111 = httpx.post(base + "/sdapi/v1/txt2img", content=body, timeout=60)
    assert a1111.status_code == 413 and a1111.json()["error"] == "PayloadTooLarge"
    assert "at most 1 MB" in a1111.json()["detail"]
    controlnet = httpx.request("GET", base + "/controlnet/version", content=body, timeout=60)
    assert controlnet.status_code == 413 and "at most 1 MB" in controlnet.json()["detail"]
    openai = httpx.post(base + "/v1/images/generations", content=body, timeout=60)
    assert openai.status_code == 413 and "at most 1 MB" in openai.json()["error"]["message"]
    assert openai.json()["error"]["type"] == "invalid_request_error"
    chunked = httpx.post(base + "/sdapi/v1/txt2img", content=iter([b"x" * 2**16] * 40), timeout=60)  # no length
    assert chunked.status_code == 413 and "over 1 MB" in chunked.json()["detail"]
    part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    edit = httpx.post(base + "/v1/images/edits", content=iter([part] + [b"x" * 2**16] * 40), timeout=60,
                      headers={"content-type": "multipart/form-data; boundary=x"})
    assert edit.status_code == 413 and "over 1 MB" in edit.json()["error"]["message"]
    under = httpx.post(base + "/sdapi/v1/png-info", json={"image": "x" * 2**19}, timeout=60)
    assert under.status_code == 422 and "not a readable" in under.json()["detail"], "a body under the limit is read"


def test_interrupt_stops_the_batch_and_progress_shows_it_running(live_app, tiny_model):
    app = live_app()
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("flux"))})
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=api.txt2img(
        prompt="a long night", steps=200, width=64, height=64, batch_size=4)))
    worker.start()
    seen = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not seen.get("progress"):
        seen = api.get_progress()
        time.sleep(0.05)
    assert seen["progress"] > 0 and seen["state"]["sampling_steps"] == 200 and seen["state"]["job_count"] == 4
    assert api.interrupt() == {}
    worker.join(120)
    result = outcome["result"]
    assert result.info["interrupted"] is True and len(result.images) < 4
    statuses = [r["status"] for r in app.studio.store.find("generations", order_by="id")]
    assert statuses[-1] == "cancelled" and len(statuses) < 4
    assert api.get_progress()["state"]["interrupted"] is True


def test_waiting_generations_leave_progress_and_interrupt_answering(live_app, tiny_model):
    """Generations wait for the GPU in threads of the API's own: with more waiting than the server's shared pool
    has threads, /progress still answers, about the one generating (not the newest waiting), and /interrupt
    stops them all; once idle, job_count is 0, which webuiapi's util_wait_for_ready waits for."""
    from concurrent.futures import ThreadPoolExecutor

    app = live_app(max_queued_per_user=50)
    api = client(app)
    base = app.url.rstrip("/") + "/sdapi/v1"
    body = {"prompt": "a long night", "steps": 200, "width": 64, "height": 64, "batch_size": 4,
            "override_settings": {"sd_model_checkpoint": str(tiny_model("flux"))}}
    with ThreadPoolExecutor(45) as senders:
        sent = [senders.submit(httpx.post, base + "/txt2img", json=body, timeout=300) for _ in range(45)]
        seen = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen.get("progress"):
            seen = httpx.get(base + "/progress", params={"skip_current_image": True}, timeout=10).json()
            time.sleep(0.05)
        assert seen["progress"] > 0 and seen["state"]["sampling_steps"] == 200
        time.sleep(1)  # the rest are all waiting for the GPU by now
        assert httpx.get(base + "/progress", timeout=10).json()["state"]["sampling_steps"] == 200
        while not all(future.done() for future in sent):  # a request read after an interrupt needs its own
            assert httpx.post(base + "/interrupt", timeout=10).status_code == 200
            time.sleep(0.2)
        answers = [future.result() for future in sent]
    assert {answer.status_code for answer in answers} == {200}
    assert all(json.loads(answer.json()["info"])["interrupted"] for answer in answers)
    api.util_wait_for_ready(check_interval=0.1)
    assert api.get_progress()["state"]["job_count"] == 0


def test_a_request_waiting_behind_another_users_is_reported_as_waiting(live_app, tiny_model):
    """Ann's only request waits while Bob's generates: her /progress counts it (job_count 1, so a client waiting
    for 0 keeps waiting) and says it waits, rather than "image 1/1, step 0/0"; Bob's shows his steps."""
    app = live_app(auth="ann:pw-ann,bob:pw-bob")
    base = app.url.rstrip("/") + "/sdapi/v1"
    body = {"prompt": "a long wait", "steps": 200, "width": 64, "height": 64,
            "override_settings": {"sd_model_checkpoint": str(tiny_model("flux"))}}
    with httpx.Client(base_url=base, auth=("bob", "pw-bob"), timeout=300) as bob, \
            httpx.Client(base_url=base, auth=("ann", "pw-ann"), timeout=300) as ann:
        running = threading.Thread(target=bob.post, args=("/txt2img",), kwargs={"json": body})
        running.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not bob.get("/progress").json()["progress"]:
            time.sleep(0.05)
        waiting = threading.Thread(target=ann.post, args=("/txt2img",), kwargs={"json": {**body, "steps": 1}})
        waiting.start()
        seen = {}
        while time.monotonic() < deadline and not seen.get("textinfo"):
            seen = ann.get("/progress").json()
            time.sleep(0.05)
        assert seen["textinfo"] == "Waiting..." and seen["progress"] == 0 and seen["state"]["job_count"] == 1
        assert bob.get("/progress").json()["textinfo"].startswith("image 1/1, step ")
        bob.post("/interrupt")
        running.join(120)
        waiting.join(120)


def test_lists_refresh_and_upscale(shared_app, tiny_lora, photo):
    app = shared_app(max_upload_mb=1)  # an app whose LoRA and upscaler lists no other test adds to (small bodies)
    api = client(app)
    shutil.copy(tiny_lora("sdxl"), app.studio.config.loras_dir / "castle.safetensors")
    base = app.url.rstrip("/") + "/sdapi/v1"
    assert httpx.post(base + "/refresh-loras").status_code == 200
    assert [lora["name"] for lora in api.get_loras()] == ["castle"]
    assert {s["name"] for s in api.get_samplers()} >= {"Euler"}
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest"]
    upscaled = api.extra_single_image(photo, upscaler_1="Lanczos", upscaling_resize=2)
    assert upscaled.image.size == (128, 128)
    assert httpx.get(base + "/schedulers").json()[0]["name"] == "automatic"
    assert api.refresh_checkpoints() is None
    refused = httpx.post(base + "/extra-single-image", json={"image": "", "upscaler_1": "R-ESRGAN 4x+"})
    assert refused.status_code == 422 and "not available" in refused.json()["detail"]


def test_extra_single_image_runs_a_named_model_upscaler(app, photo):
    from masuka.image.upscale.models import upscalers_dir
    from masuka.testing.upscalers import write_esrgan

    write_esrgan(upscalers_dir(app.studio.config) / "tiny4x.pth", 4)
    api = client(app)
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest", "tiny4x"]
    upscaled = api.extra_single_image(photo, upscaler_1="tiny4x", upscaling_resize=2)
    assert upscaled.image.size == (128, 128)
    assert app.studio.store.find("generations")[0]["model"] == "tiny4x", "the newest row is this upscale"
    refused = httpx.post(app.url.rstrip("/") + "/sdapi/v1/extra-single-image",
                         json={"image": "", "upscaler_1": "tiny4x", "upscaling_resize": 3})
    assert refused.status_code == 422 and "upscales by 2 or 4" in refused.json()["detail"]


def test_basic_auth_with_the_apps_users(live_app, tiny_model):
    app = live_app(auth="ann:pw-ann,bob:pw-bob")
    ann = client(app, username="ann", password="pw-ann")
    ann.set_options({"sd_model_checkpoint": str(tiny_model("flux"))})
    result = ann.txt2img(prompt="ann's fox", steps=1, width=64, height=64, seed=1)
    assert result.image.size == (64, 64)
    row = app.studio.store.find("generations")[0]
    assert row["owner"] == "ann" and "/outputs/ann/" in str(app.studio.config.absolute(row["output_path"]))
    base = app.url.rstrip("/") + "/sdapi/v1"
    for auth in (None, ("ann", "wrong"), ("nobody", "pw-ann")):
        answer = httpx.get(base + "/sd-models", auth=auth)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic")
    assert httpx.post(base + "/txt2img", json={"prompt": "x"}).status_code == 401
    assert not httpx.get(base + "/options", auth=("bob", "pw-bob")).json()["sd_model_checkpoint"].startswith("/")
    folders = [str(app.studio.config.absolute(row["output_path"]).parent), "/nonexistent/dir", "/etc"]
    answers = [httpx.post(base + "/options", json={"sd_model_checkpoint": folder}, auth=("bob", "pw-bob"))
               for folder in folders]
    assert {a.status_code for a in answers} == {422}
    messages = {a.json()["detail"].replace(folder, "F") for a, folder in zip(answers, folders)}
    assert len(messages) == 1 and "no model folder of yours" in messages.pop()


def test_png_info_reads_other_tools_and_odd_comments(app, tmp_path):
    """A numeric EXIF UserComment is no parameters (not a 500); Fooocus's JSON gives its prompt; ComfyUI's text
    fields are listed in ``items`` as A1111 lists them."""
    import base64
    import io

    from PIL import Image, PngImagePlugin

    def encoded(save) -> str:
        buffer = io.BytesIO()
        save(buffer)
        return base64.b64encode(buffer.getvalue()).decode()

    def png(**texts) -> str:
        info = PngImagePlugin.PngInfo()
        for key, value in texts.items():
            info.add_text(key, value)
        return encoded(lambda out: Image.new("RGB", (64, 64)).save(out, "PNG", pnginfo=info))

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = 1000
    url = app.url.rstrip("/") + "/sdapi/v1/png-info"
    numbers = encoded(lambda out: Image.new("RGB", (64, 64)).save(out, "JPEG", exif=exif.tobytes()))
    answer = httpx.post(url, json={"image": numbers}, timeout=30)
    assert answer.status_code == 200 and answer.json()["info"] == ""
    made = json.dumps({"prompt": "a fox", "steps": 30, "seed": "5", "guidance_scale": 4})
    fooocus = httpx.post(url, json={"image": png(parameters=made)}).json()
    assert fooocus["parameters"]["Prompt"] == "a fox" and fooocus["parameters"]["Steps"] == 30
    comfy = httpx.post(url, json={"image": png(prompt="{}", workflow='{"nodes": []}')}).json()
    assert comfy["info"] == "" and comfy["items"] == {"prompt": "{}", "workflow": '{"nodes": []}'}


def test_a_lora_that_a_request_waiting_for_the_gpu_uses_cannot_be_deleted(app, tiny_model, tiny_lora):
    """A request holds its LoRAs from its checks on, not only once it has the GPU: deleting one while the request
    waits is refused, and the request then makes its image with it (it was a 500 once the file had gone)."""
    shutil.copy(tiny_lora("flux"), app.studio.config.loras_dir / "ink.safetensors")
    base = app.url.rstrip("/") + "/sdapi/v1"
    body = {"prompt": "an inked fox <lora:ink:0.8>", "steps": 1, "width": 64, "height": 64,
            "override_settings": {"sd_model_checkpoint": str(tiny_model("flux"))}}
    assert httpx.post(base + "/refresh-loras").status_code == 200
    answers = []
    with app.studio.hold_gpu("a long job", "local"):
        sender = threading.Thread(target=lambda: answers.append(httpx.post(base + "/txt2img", json=body, timeout=300)))
        sender.start()
        deadline = time.monotonic() + 120
        while not app.studio.gpu.interactive_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(InvalidInput, match="LoRA 'ink' cannot be deleted yet: an image request"):
            delete_lora(app.studio, "ink", "local", True)
    sender.join()
    assert answers[0].status_code == 200, answers[0].text
    assert [row["loras"][0]["name"] for row in made(app, "an inked fox")] == ["ink"]
    assert delete_lora(app.studio, "ink", "local", True)["name"] == "ink", "once the request is done"


def test_refresh_loras_adds_dropped_files_for_every_user_and_options_tell_the_saved_format(live_app):
    """A plain user's refresh-loras picks up files dropped into data/loras/ (shared LoRAs), as an admin's does; and
    samples_format is the format images are saved and sent in (Settings → Defaults)."""
    app = live_app(auth="ann:pw-ann,admin:pw-admin")
    write_flux_lora(app.studio.config.loras_dir / "castle.safetensors")
    base, ann = app.url.rstrip("/") + "/sdapi/v1", ("ann", "pw-ann")
    assert httpx.post(base + "/refresh-loras", auth=ann).status_code == 200
    assert [lora["name"] for lora in httpx.get(base + "/loras", auth=ann).json()] == ["castle"]
    assert httpx.get(base + "/options", auth=ann).json()["samples_format"] == "png"
    for saved, told in (("WebP", "webp"), ("JPEG", "jpg")):
        save_defaults(app.studio.config, output_format=saved)
        assert httpx.get(base + "/options", auth=ann).json()["samples_format"] == told
