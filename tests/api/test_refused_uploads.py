"""Pictures a REST request uploads are kept only for work that ran: a request refused before its work ran (a bad
size, too many waiting) leaves no copy in ``outputs/<user>/inputs``; an A1111 extras upscale answers with the
picture and keeps no file; the image file route reads the database off the event loop."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time

import httpx
import pytest
from PIL import Image

from masuka.api.auth import create_token
from masuka.users import output_dir


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(picture: Image.Image) -> str:
    return base64.b64encode(png(picture)).decode()


@pytest.fixture
def signed_in(shared_app):
    """``signed_in(user)`` -> a live app with five users (one REST request each may wait), and that user's headers
    and base URL. The module's tests share the app, each as a user of its own, so the files and rows each finds
    under its user are its own."""
    app = shared_app(auth="ann:pw-ann,bob:pw-bob,cy:pw-cy,dee:pw-dee,eve:pw-eve", max_queued_per_user=1)

    def sign_in(user: str):
        headers = {"Authorization": f"Bearer {create_token(app.studio, user, 'laptop')}"}
        return app, app.url.rstrip("/"), headers

    return sign_in


def inputs_of(app, user: str = "bob") -> list[str]:
    folder = output_dir(app.studio.config, user) / "inputs"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def refused_requests(base: str, headers: dict, model: str, photo: Image.Image, square_mask: Image.Image, size: int
                     ) -> dict[str, httpx.Response]:
    """An OpenAI edit and an A1111 img2img, each with a picture and a mask (transparent over the square, which
    either API reads as a mask that repaints something), at ``size`` pixels a side."""
    mask = photo.convert("RGBA")
    mask.putalpha(Image.eval(square_mask, lambda v: 0 if v else 255))
    edit = httpx.post(f"{base}/v1/images/edits", headers=headers, timeout=120,
                      files={"image": ("photo.png", png(photo), "image/png"),
                             "mask": ("mask.png", png(mask), "image/png")},
                      data={"prompt": "a window", "model": model, "size": f"{size}x{size}"})
    img2img = httpx.post(f"{base}/sdapi/v1/img2img", headers=headers, timeout=120,
                         json={"prompt": "a window", "init_images": [b64(photo)], "mask": b64(mask), "width": size,
                               "height": size, "steps": 1, "override_settings": {"sd_model_checkpoint": model}})
    return {"edit": edit, "img2img": img2img}


def test_a_request_refused_for_its_size_keeps_no_copy_of_its_pictures(signed_in, tiny_model, photo, square_mask):
    app, base, headers = signed_in("ann")
    answers = refused_requests(base, headers, str(tiny_model("sdxl")), photo, square_mask, 13)
    assert {name: answer.status_code for name, answer in answers.items()} == {"edit": 400, "img2img": 422}, [
        answer.text for answer in answers.values()]
    assert answers["edit"].json()["error"]["param"] == "size"
    assert inputs_of(app, "ann") == [] and not app.studio.store.find("generations", "owner = ?", ["ann"])


def test_a_request_refused_for_too_many_waiting_keeps_no_copy_of_its_pictures(signed_in, tiny_model, photo,
                                                                             square_mask):
    """Bob's one allowed request waits for the GPU: his next ones get a 429 and keep nothing."""
    app, base, headers = signed_in("bob")
    model = str(tiny_model("sdxl"))
    waiting: list[httpx.Response] = []
    with app.studio.gpu.hold("another job"):
        first = threading.Thread(target=lambda: waiting.append(httpx.post(
            f"{base}/sdapi/v1/txt2img", headers=headers, timeout=120,
            json={"prompt": "a fox", "steps": 1, "width": 64, "height": 64,
                  "override_settings": {"sd_model_checkpoint": model}})))
        first.start()
        while not httpx.get(f"{base}/sdapi/v1/progress", headers=headers, timeout=60).json()["state"]["job_count"]:
            assert first.is_alive(), waiting[0].text  # the first request waits for the GPU
            time.sleep(0.05)
        answers = refused_requests(base, headers, model, photo, square_mask, 64)
        httpx.post(f"{base}/sdapi/v1/interrupt", headers=headers, timeout=60)
        first.join(120)
    assert {name: answer.status_code for name, answer in answers.items()} == {"edit": 429, "img2img": 429}
    assert inputs_of(app) == [] and waiting[0].status_code == 200


def test_an_edit_that_ran_keeps_the_copies_its_row_uses_only(signed_in, tiny_model, photo, square_mask):
    """An OpenAI mask is turned into a white-means-repaint copy: the upload's own copy, used by nothing, goes."""
    app, base, headers = signed_in("cy")
    mask = photo.convert("RGBA")
    mask.putalpha(Image.eval(square_mask, lambda v: 0 if v else 255))
    answer = httpx.post(f"{base}/v1/images/edits", headers=headers, timeout=120,
                        files={"image": ("photo.png", png(photo), "image/png"),
                               "mask": ("mask.png", png(mask), "image/png")},
                        data={"prompt": "a window", "model": str(tiny_model("sdxl")), "size": "64x64"})
    assert answer.status_code == 200, answer.text
    [row] = app.studio.store.find("generations", "owner = ?", ["cy"])
    kept = inputs_of(app, "cy")
    assert len(kept) == 2 and all(name in str(row["params"]) for name in kept)


def test_an_extras_upscale_answers_with_the_picture_and_keeps_no_file(signed_in, photo):
    """A1111's ``extra-single-image`` with a built-in upscaler: the answer carries the picture, as A1111's does; no
    file is kept that no History row lists (nobody could see or delete it)."""
    app, base, headers = signed_in("dee")
    answer = httpx.post(f"{base}/sdapi/v1/extra-single-image", headers=headers, timeout=120,
                        json={"image": b64(photo), "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(base64.b64decode(answer.json()["image"]))).size == (128, 128)
    cmyk = io.BytesIO()
    photo.convert("CMYK").save(cmyk, format="JPEG")  # a mode PNG cannot hold: answered in RGB
    answer = httpx.post(f"{base}/sdapi/v1/extra-single-image", headers=headers, timeout=120,
                        json={"image": base64.b64encode(cmyk.getvalue()).decode(), "upscaler_1": "Nearest",
                              "upscaling_resize": 2})
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(base64.b64decode(answer.json()["image"]))).mode == "RGB"
    dees = output_dir(app.studio.config, "dee")
    assert not dees.exists() or not [path for path in dees.rglob("*") if path.is_file()]


def test_the_image_file_route_reads_the_database_off_the_event_loop(signed_in, monkeypatch):
    """After the sign-in check, the row and who may read the file are looked up in a worker thread too."""
    from masuka.api import openai_images

    app, base, headers = signed_in("eve")
    picture = output_dir(app.studio.config, "eve") / "images" / "2026-01-01" / "fox.png"
    picture.parent.mkdir(parents=True)
    picture.write_bytes(png(Image.new("RGB", (8, 8), "red")))
    image_id = app.studio.store.insert("generations", {"kind": "image", "status": "completed", "owner": "eve",
                                                       "output_path": str(picture)})
    on_loop: list[bool] = []

    def on_the_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def recorded(func):
        def call(*args, **kwargs):
            on_loop.append(on_the_loop())
            return func(*args, **kwargs)
        return call

    monkeypatch.setattr(openai_images, "may_read", recorded(openai_images.may_read))
    monkeypatch.setattr(app.studio.store, "get", recorded(app.studio.store.get))
    answer = httpx.get(f"{base}/v1/images/files/{image_id}", headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.content == picture.read_bytes()
    assert on_loop and not any(on_loop)
