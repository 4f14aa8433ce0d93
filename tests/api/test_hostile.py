"""Hostile requests at the REST APIs: a clear refusal with the reason, no traceback, nothing generated."""

from __future__ import annotations

import base64
import io
import re

import httpx
import pytest
from PIL import Image


def png(size=(64, 64), mode="RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


#: A 24 KB PNG of 200 megapixels: one bit a pixel, written in half a second (in RGB, 5 s at every collection).
HUGE = png((20000, 10000), "1")


A1111 = {
    "a LoRA tag climbing out of the library": ("/sdapi/v1/txt2img", {"prompt": "x <lora:../../../etc/passwd:1>"},
                                               "outside the folders|not found"),
    "a batch of a thousand": ("/sdapi/v1/txt2img", {"prompt": "x", "batch_size": 1000}, "between 1 and 4"),
    "a system folder as model": ("/sdapi/v1/txt2img", {"prompt": "x", "override_settings":
                                                       {"sd_model_checkpoint": "/etc"}}, "not a diffusers pipeline"),
    "init image that is not base64": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["%%%"]},
                                      "not a readable image|not valid base64"),
    "init image that is text": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": [base64.b64encode(
        b"hello").decode()]}, "not a readable image"),
    "no init image": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": []}, "init_images is empty"),
    "an all-black mask": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": [png()], "mask": png()}, "all black"),
    "a strength above 1": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": [png()], "denoising_strength": 7},
                           "at most 1"),
    "a ControlNet module that is not here": ("/sdapi/v1/txt2img", {"prompt": "x", "alwayson_scripts": {"controlnet": {
        "args": [{"image": png(), "module": "openpose"}]}}}, "'openpose' is not available"),
    "a hundred ControlNet units": ("/sdapi/v1/txt2img", {"prompt": "x", "alwayson_scripts": {"ControlNet": {
        "args": [{"image": png(), "module": "canny"}] * 100}}}, "At most 3 control images"),
    "an ADetailer hand model": ("/sdapi/v1/txt2img", {"prompt": "x", "alwayson_scripts": {"ADetailer": {
        "args": [True, {"ad_model": "hand_yolov8n.pt"}]}}}, "'hand_yolov8n.pt' is not available"),
    "a sampler nobody has": ("/sdapi/v1/txt2img", {"prompt": "x", "sampler_name": "Eulr a"}, "Unknown sampler"),
    "png-info of garbage": ("/sdapi/v1/png-info", {"image": base64.b64encode(b"\x89PNG junk").decode()},
                            "not a readable"),
    "a model that does not exist": ("/sdapi/v1/options", {"sd_model_checkpoint": "no such model"}, "Unknown model"),
    "a data URL with no data": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["data:image/png;base64"]},
                                "not a readable image"),
    "a small file that unpacks to 200 megapixels": ("/sdapi/v1/img2img", {"prompt": "x", "init_images": [
        HUGE]}, "too large; at most 64 megapixels"),
    "png-info of 200 megapixels": ("/sdapi/v1/png-info", {"image": HUGE}, "not a readable"),
    "an upscale of a thousand times": ("/sdapi/v1/extra-single-image", {"image": png(), "upscaler_1": "Lanczos",
                                                                        "upscaling_resize": 1000}, "between 1 and 8"),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from masuka.config import Config
    from masuka.server import launch
    from tests.conftest import free_port

    running = launch(Config.from_env(data_dir=tmp_path_factory.mktemp("hostile-api"), auth=""), host="127.0.0.1",
                     port=free_port(), block=False)
    yield running
    running.close()


@pytest.mark.parametrize("case", list(A1111))
def test_a1111_refuses_with_the_reason(app, case):
    route, body, reason = A1111[case]
    answer = httpx.post(app.url.rstrip("/") + route, json=body, timeout=60)
    assert answer.status_code == 422, answer.text
    assert re.search(reason, answer.json()["detail"]), answer.json()
    assert " at 0x" not in answer.json()["detail"], "no object's repr in the reason"
    assert not app.studio.store.count("generations")
    kept = [p.name for p in app.studio.config.data_dir.rglob("inputs/*") if p.name.startswith(("control", "reference"))]
    assert not kept, "ControlNet units are checked before any of their pictures is kept"


@pytest.mark.parametrize("batch", [{"batch_size": -2, "n_iter": -2}, {"batch_size": 0, "n_iter": 0}])
def test_a1111_refuses_a_batch_size_or_n_iter_below_1_even_when_their_product_is_not(app, batch):
    answer = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", json={"prompt": "x", **batch}, timeout=60)
    assert answer.status_code == 422, answer.text
    assert [field["loc"] for field in answer.json()["detail"]] == [["body", "batch_size"], ["body", "n_iter"]]
    assert not app.studio.store.count("generations")


@pytest.mark.parametrize("fields, files, param, reason", [
    ({"prompt": "x", "n": "lots"}, {"image": ("a.png", base64.b64decode(png()), "image/png")}, "n", "whole number"),
    ({"prompt": "x"}, {"image": ("a.txt", b"not a picture", "text/plain")}, None, "not a readable image"),
    ({"prompt": "x"}, {}, "image", "multipart file 'image'"),
    ({"prompt": "x", "size": "big"}, {"image": ("a.png", base64.b64decode(png()), "image/png")}, "size", "1024x1024"),
    ({"prompt": "x", "size": "\u00b2x64"}, {"image": ("a.png", base64.b64decode(png()), "image/png")}, "size",
     "1024x1024"),
    ({"prompt": "x"}, {"image": ("a.png", base64.b64decode(HUGE), "image/png")}, None,
     "too large; at most 64 megapixels"),
    ({"prompt": "x", "output_format": "gif"}, {"image": ("a.png", base64.b64decode(png()), "image/png")},
     "output_format", "'png', 'jpeg' or 'webp'"),
])
def test_openai_edits_refuse_with_an_error_object(app, fields, files, param, reason):
    answer = httpx.post(app.url.rstrip("/") + "/v1/images/edits", data=fields, files=files or {"x": ("", b"")},
                        timeout=60)
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["type"] == "invalid_request_error" and error["param"] == param
    assert reason in error["message"]


def test_openai_generation_refuses_a_body_that_is_not_json(app):
    answer = httpx.post(app.url.rstrip("/") + "/v1/images/generations", content=b"{nope",
                        headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["message"] == "The body must be JSON."
    missing = httpx.post(app.url.rstrip("/") + "/v1/images/generations", json={"n": 1})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("body", [[], "hi", 7])
def test_openai_generation_refuses_a_body_that_is_not_an_object(app, body):
    answer = httpx.post(app.url.rstrip("/") + "/v1/images/generations", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["message"] == "The body must be a JSON object."


def test_a_refusal_that_repeats_a_100000_character_name_is_short_and_says_what_was_wrong(app):
    name = "x" * 100_000
    a1111 = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": name},
                       timeout=60)
    detail = a1111.json()["detail"]
    assert a1111.status_code == 422 and len(detail) <= 1000 and a1111.json()["errors"] == detail
    assert detail.startswith("Unknown sampler 'xxx") and "characters left out" in detail
    assert "x': use one of Euler," in detail
    openai = httpx.post(app.url.rstrip("/") + "/v1/images/generations", json={"prompt": "x", "size": name},
                        timeout=60)
    message = openai.json()["error"]["message"]
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "size" and len(message) <= 1000
    assert message.startswith("size must look like 1024x1024 (got 'xxx") and message.endswith("x').")


def test_a_malformed_field_s_422_keeps_fastapis_shape_and_does_not_echo_a_50_kb_input(app):
    answer = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", json={"prompt": "x", "width": "w" * 50_000},
                        timeout=60)
    assert answer.status_code == 422 and len(answer.content) < 3000, len(answer.content)
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "width"] and error["type"] == "int_parsing" and "integer" in error["msg"]
    assert error["input"].startswith("www") and "characters left out" in error["input"]
    assert not app.studio.store.count("generations")
    query = httpx.get(app.url.rstrip("/") + "/sdapi/v1/progress", params={"skip_current_image": "w" * 10_000})
    assert query.status_code == 422 and len(query.content) < 3000, len(query.content)  # FastAPI's own check
    [error] = query.json()["detail"]
    assert error["loc"] == ["query", "skip_current_image"] and "characters left out" in error["input"]


def test_a_422_lists_twenty_errors_and_says_how_many_more_were_left_out(app):
    """A list of 100,000 bad items: the first 20 errors in FastAPI's shape, then one saying how many more (not
    a 10 MB body)."""
    answer = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", json={"prompt": "x", "styles": [1] * 100_000},
                        timeout=120)
    assert answer.status_code == 422 and len(answer.content) < 10_000, len(answer.content)
    *errors, more = answer.json()["detail"]
    assert [error["loc"] for error in errors] == [["body", "styles", index] for index in range(20)]
    assert more == {"loc": [], "msg": "99,980 more errors left out", "type": "too_many_errors"}
    assert not app.studio.store.count("generations")


@pytest.mark.parametrize("image_id", ["99999999999999999999", "abc", "0", "-1"])
def test_openai_image_files_answer_an_id_that_cannot_be_one_as_missing(app, image_id):
    answer = httpx.get(app.url.rstrip("/") + f"/v1/images/files/{image_id}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_an_uploaded_phone_photo_is_kept_upright_and_16_bit_read_as_8(studio):
    """API uploads are kept as the tab keeps a picture (its plain copy) and read as the UI reads pictures: a turned
    phone photo kept upright, an upright JPEG as its own bytes less its EXIF (not a PNG of its pixels, which took
    seconds for a large photo), a 16-bit greyscale PNG as it is, read with its tones scaled to 8 bits."""
    import io

    import numpy as np
    from PIL import Image

    from masuka.api.auth import Caller
    from masuka.api.work import ApiWork
    from masuka.image.tasks import open_picture

    uploads = ApiWork(studio).uploads(Caller("local", True))
    sideways = Image.new("RGB", (40, 20), "red")
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view", as phones store portraits
    buffer = io.BytesIO()
    sideways.save(buffer, "JPEG", exif=exif)
    with Image.open(uploads.decode(buffer.getvalue(), "init image")) as kept:
        assert kept.size == (20, 40) and not kept.getexif().get(0x0112)
    photo = io.BytesIO()
    Image.effect_noise((640, 480), 60).convert("RGB").save(photo, "JPEG", quality=90, exif=Image.Exif().tobytes())
    path = uploads.decode(base64.b64encode(photo.getvalue()).decode(), "init image")
    with Image.open(path) as kept:
        assert (path.suffix, kept.format, kept.size) == (".jpg", "JPEG", (640, 480))
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(photo))), "its own compressed pixels"
    deep = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(deep, "PNG")
    kept = open_picture(uploads.decode(deep.getvalue(), "init image"), "init image")
    assert 150 < np.asarray(kept.convert("L")).mean() < 160  # 40000 / 257, not clipped to white
