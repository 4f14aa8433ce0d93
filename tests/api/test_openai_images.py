"""OpenAI's Images API through the official `openai` SDK against a live app with tiny models and a user token."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from masuka.api.auth import create_token
from masuka.image.defaults import save_defaults
from masuka.image.metadata import read_parameters


@pytest.fixture(scope="module")
def signed_in(shared_app):
    """A live app with users ann and bob, and an SDK client holding ann's API token: one for the module, so each
    test finds its own rows by a prompt of its own."""
    app = shared_app(auth="ann:pw-ann,bob:pw-bob")
    token = create_token(app.studio, "ann", "laptop")
    sdk = openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key=token, max_retries=0, timeout=120)
    return app, sdk, token


def row_count(app) -> int:
    return app.studio.store.count("generations")


def made(app, prompt: str) -> list[dict]:
    """The history rows of ``prompt`` (each test prompts its own), oldest first."""
    return app.studio.store.find("generations", "prompt = ?", [prompt], order_by="id")


def decoded(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def test_generate_returns_decodable_images_at_the_size_and_records_them(signed_in, tiny_model):
    app, sdk, _token = signed_in
    answer = sdk.images.generate(model=str(tiny_model("flux")), prompt="a lighthouse", n=2, size="64x64",
                                 response_format="b64_json", quality="hd", style="vivid")
    assert [decoded(item).size for item in answer.data] == [(64, 64), (64, 64)]
    rows = made(app, "a lighthouse")
    assert [(r["owner"], r["status"], r["prompt"]) for r in rows] == [("ann", "completed", "a lighthouse")] * 2


def test_edit_with_an_openai_mask_changes_only_the_transparent_part(signed_in, tiny_model, photo, square_mask):
    app, sdk, _token = signed_in
    mask = photo.convert("RGBA")
    mask.putalpha(Image.eval(square_mask, lambda v: 0 if v else 255))  # transparent = edit, as OpenAI defines it
    files = {}
    for name, picture in (("image", photo), ("mask", mask)):
        files[name] = io.BytesIO()
        picture.save(files[name], format="PNG")
        files[name] = (f"{name}.png", files[name].getvalue(), "image/png")
    answer = sdk.images.edit(model=str(tiny_model("sdxl")), image=files["image"], mask=files["mask"],
                             prompt="a window seat", size="64x64", response_format="b64_json")
    out = np.asarray(decoded(answer.data[0]).convert("RGB"), dtype=np.int16)
    original = np.asarray(photo, dtype=np.int16)
    inside = np.asarray(square_mask) > 0
    assert out.shape == (64, 64, 3) and np.array_equal(out[~inside], original[~inside])
    assert np.abs(out[inside] - original[inside]).mean() > 5
    assert [row["params"]["task"] for row in made(app, "a window seat")] == ["inpaint"]


def test_url_answers_are_served_to_their_owner_only(signed_in, tiny_model):
    _app, sdk, token = signed_in
    answer = sdk.images.generate(model=str(tiny_model("flux")), prompt="a key", size="64x64", response_format="url")
    url = answer.data[0].url
    mine = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200 and Image.open(io.BytesIO(mine.content)).size == (64, 64)
    assert httpx.get(url, auth=("bob", "pw-bob")).status_code == 404
    assert httpx.get(url).status_code == 401
    checked = httpx.head(url, headers={"Authorization": f"Bearer {token}"})  # link previewers ask first
    assert checked.status_code == 200 and checked.headers["content-type"] == "image/png" and not checked.content
    assert httpx.head(url, auth=("bob", "pw-bob")).status_code == 404


def test_models_and_errors_in_openais_shape(signed_in, tiny_model):
    app, sdk, _token = signed_in
    before = row_count(app)
    assert {"flux-schnell", "sdxl"} <= {model.id for model in sdk.models.list()}
    assert sdk.models.retrieve("sdxl").id == "sdxl" and sdk.models.retrieve("gpt-image-1").id == "gpt-image-1"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("no-such-model")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.images.generate(model=str(tiny_model("flux")), prompt="a refused fox", size="70x64")
    assert bad.value.body["param"] == "size" and "multiple of" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.images.generate(model=str(tiny_model("flux")), prompt="a refused fox", n=9)
    assert bad.value.body["param"] == "n"
    stranger = openai.OpenAI(base_url=sdk.base_url, api_key="msk_not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.images.generate(prompt="a refused fox")
    assert refused.value.body["code"] == "invalid_api_key"
    assert row_count(app) == before, "no row for a refused request"


def test_openais_current_model_names_mean_the_default_model(signed_in, tiny_model):
    app, sdk, _token = signed_in
    httpx.post(app.url.rstrip("/") + "/sdapi/v1/options", json={"sd_model_checkpoint": str(tiny_model("flux"))},
               auth=("ann", "pw-ann")).raise_for_status()
    for name in ("gpt-image-2.5-flare", "chatgpt-image-latest", "gpt-image-2-2026-04-21"):
        answer = sdk.images.generate(model=name, prompt="a default gull", size="64x64")
        assert decoded(answer.data[0]).size == (64, 64)
    assert [row["model"] for row in made(app, "a default gull")] == [str(tiny_model("flux"))] * 3


def test_output_format_and_compression_are_honoured(signed_in, tiny_model):
    _app, sdk, token = signed_in
    model = str(tiny_model("flux"))
    for output_format, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF"), ("png", b"\x89PNG")):
        answer = sdk.images.generate(model=model, prompt="a gull", size="64x64", output_format=output_format,
                                     output_compression=50)
        data = base64.b64decode(answer.data[0].b64_json)
        assert data.startswith(magic) and answer.output_format == output_format and answer.size == "64x64"
        assert read_parameters(io.BytesIO(data)).startswith("a gull\nSteps: ")  # converted with the parameters
    url = sdk.images.generate(model=model, prompt="a gull", size="64x64", output_format="jpeg",
                              response_format="url").data[0].url
    served = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert served.headers["content-type"] == "image/jpeg" and served.content.startswith(b"\xff\xd8")


def test_streaming_sends_one_completed_event_per_image(signed_in, tiny_model, photo):
    _app, sdk, _token = signed_in
    events = list(sdk.images.generate(model=str(tiny_model("flux")), prompt="a gull", size="64x64", n=2,
                                      stream=True))
    assert [event.type for event in events] == ["image_generation.completed"] * 2
    assert all(decoded(event).size == (64, 64) and event.size == "64x64" for event in events)
    picture = io.BytesIO()
    photo.save(picture, format="PNG")
    edits = list(sdk.images.edit(model=str(tiny_model("flux")), image=("photo.png", picture.getvalue(), "image/png"),
                                 prompt="at dusk", size="64x64", stream=True, output_format="webp"))
    assert [event.type for event in edits] == ["image_edit.completed"]
    assert edits[0].output_format == "webp" and base64.b64decode(edits[0].b64_json).startswith(b"RIFF")


def test_a_jpeg_is_kept_as_its_own_bytes_cmyk_included(signed_in, tiny_model):
    """A JPEG sent through the SDK is kept as the JPEG it is, less its EXIF (a PNG of its pixels took seconds and
    seven times the bytes for a large photo); a CMYK one too, read as the colours it shows."""
    app, sdk, _token = signed_in
    for mode, colour, prompt in (("RGB", (200, 90, 40), "a jpeg at dusk"), ("CMYK", (0, 128, 128, 0), "cmyk at dusk")):
        sent = io.BytesIO()
        Image.new(mode, (64, 64), colour).save(sent, format="JPEG", exif=Image.Exif().tobytes())
        answer = sdk.images.edit(model=str(tiny_model("flux")), image=("photo.jpg", sent.getvalue(), "image/jpeg"),
                                 prompt=prompt, size="64x64")
        assert decoded(answer.data[0]).size == (64, 64)
        (row,) = made(app, prompt)
        kept = app.studio.config.absolute(row["params"]["init_image"])
        with Image.open(kept) as picture:
            assert (kept.suffix, picture.format, picture.mode) == (".jpg", "JPEG", mode)
            assert picture.tobytes() == Image.open(sent).tobytes(), "its own compressed pixels"


def test_an_edit_s_text_field_sent_as_a_file_gets_a_400_naming_it(signed_in, tiny_model, photo):
    """A text field of an edit's form that arrives as a file part is refused in OpenAI's shape, never used as the
    text "UploadFile(...)" nor a 500."""
    app, _sdk, token = signed_in
    before = row_count(app)
    picture = io.BytesIO()
    photo.save(picture, format="PNG")
    fields = {"prompt": "at dusk", "model": str(tiny_model("flux")), "size": "64x64", "n": "1",
              "response_format": "b64_json", "safety_check": "false"}
    for name in fields:
        answer = httpx.post(app.url.rstrip("/") + "/v1/images/edits", headers={"Authorization": f"Bearer {token}"},
                            data={field: value for field, value in fields.items() if field != name},
                            files=[("image", ("photo.png", picture.getvalue(), "image/png")),
                                   (name, ("notes.txt", b"at dusk", "text/plain"))], timeout=120)
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["error"] == {"message": f"'{name}' must be a text field, not a file.",
                                          "type": "invalid_request_error", "param": name, "code": None}
    assert row_count(app) == before, "no row for a refused request"


def test_a_palette_mask_with_transparent_entries_marks_what_to_edit(signed_in, tiny_model, photo, square_mask):
    """A palette PNG whose transparency is its ``tRNS`` entries (what pngquant writes), not an alpha band."""
    _app, sdk, _token = signed_in
    mask = Image.new("P", (64, 64), 1)
    mask.putpalette([0, 0, 0, 255, 255, 255])
    mask.paste(0, mask=square_mask)  # entry 0, transparent: the square to edit
    picture, masked = io.BytesIO(), io.BytesIO()
    photo.save(picture, format="PNG")
    mask.save(masked, format="PNG", transparency=0)
    assert Image.open(io.BytesIO(masked.getvalue())).mode == "P"
    answer = sdk.images.edit(model=str(tiny_model("flux")), image=("photo.png", picture.getvalue(), "image/png"),
                             mask=("mask.png", masked.getvalue(), "image/png"), prompt="a window", size="64x64")
    out = np.asarray(decoded(answer.data[0]).convert("RGB"), dtype=np.int16)
    original = np.asarray(photo, dtype=np.int16)
    inside = np.asarray(square_mask) > 0
    assert np.array_equal(out[~inside], original[~inside]) and np.abs(out[inside] - original[inside]).mean() > 5


def test_output_compression_is_honoured_in_the_format_images_are_saved_in(signed_in, tiny_model):
    app, sdk, _token = signed_in
    save_defaults(app.studio.config, output_format="WebP")
    try:
        sizes = {}
        for compression in (5, 95):
            answer = sdk.images.generate(model=str(tiny_model("flux")), prompt="a webp gull", size="64x64",
                                         output_format="webp", output_compression=compression)
            data = base64.b64decode(answer.data[0].b64_json)
            assert data.startswith(b"RIFF") and read_parameters(io.BytesIO(data)).startswith("a webp gull\nSteps: ")
            sizes[compression] = len(data)
    finally:
        save_defaults(app.studio.config)  # the shared app's other tests save as PNG, the default
    assert 2 * sizes[5] < sizes[95], sizes  # re-encoded: as saved, both would be about the same size
    saved = app.studio.config.absolute(made(app, "a webp gull")[0]["output_path"])
    assert saved.suffix == ".webp"


def test_output_compression_is_honoured_by_url_answers(signed_in, tiny_model):
    _app, sdk, token = signed_in
    sizes = {}
    for compression in (5, 95):
        url = sdk.images.generate(model=str(tiny_model("flux")), prompt="a gull", size="64x64", output_format="jpeg",
                                  output_compression=compression, response_format="url").data[0].url
        served = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert served.headers["content-type"] == "image/jpeg" and served.content.startswith(b"\xff\xd8")
        sizes[compression] = len(served.content)
    assert 2 * sizes[5] < sizes[95], sizes  # both were quality 100 when the URL carried only the format
    refused = httpx.get(url.replace("compression=95", "compression=120"), headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "output_compression"


def test_variations_and_unknown_routes_answer_an_openai_error(signed_in):
    app, sdk, token = signed_in
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.images.create_variation(image=("photo.png", b"\x89PNG", "image/png"))
    assert "variations are not offered" in missing.value.body["message"]
    assert missing.value.body["code"] == "not_found"
    headers = {"Authorization": f"Bearer {token}"}
    unknown = httpx.delete(app.url.rstrip("/") + "/v1/files/abc", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Invalid URL (DELETE /v1/files/abc)."
    other_method = httpx.get(app.url.rstrip("/") + "/v1/images/generations", headers=headers)
    assert other_method.status_code == 405 and "use POST" in other_method.json()["error"]["message"]
    for method in ("HEAD", "OPTIONS"):
        answer = httpx.request(method, app.url.rstrip("/") + "/v1/models", headers=headers)
        assert answer.status_code == 405, method
    assert httpx.options(app.url.rstrip("/") + "/v1/models", headers=headers).json()["error"]["message"] == \
        "OPTIONS is not allowed on /v1/models: use GET."
    for path in ("/v1/nope", "/v1/images/variations"):  # who calls is asked first, as on every route
        unsigned = httpx.post(app.url.rstrip("/") + path)
        assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "invalid_api_key", path


def test_an_edit_refused_by_the_form_parser_or_with_an_opaque_mask_gets_an_openai_error(signed_in, photo):
    """Starlette refuses a text field over 1 MB while reading the form: the SDK gets OpenAI's error object, not
    FastAPI's ``detail``. An OpenAI mask with no transparent pixel changes nothing: the message speaks of
    transparency, as OpenAI's masks do, not of painting white."""
    app, sdk, token = signed_in
    before = row_count(app)
    picture = io.BytesIO()
    photo.save(picture, format="PNG")
    refused = httpx.post(app.url.rstrip("/") + "/v1/images/edits", headers={"Authorization": f"Bearer {token}"},
                         data={"prompt": "x" * 1_100_000}, files={"image": ("a.png", picture.getvalue())})
    assert refused.status_code == 400 and "maximum size" in refused.json()["error"]["message"]
    opaque = io.BytesIO()
    photo.convert("RGBA").save(opaque, format="PNG")  # alpha 255 everywhere
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.images.edit(image=("a.png", picture.getvalue(), "image/png"), mask=("m.png", opaque.getvalue()),
                        prompt="an opaque mask")
    assert bad.value.body["param"] == "mask" and "transparent (alpha 0)" in bad.value.body["message"]
    assert row_count(app) == before


def test_a_model_that_is_not_downloaded_is_a_503_not_a_500(signed_in):
    """Tests run with HF_HUB_OFFLINE=1: a repo id the cache does not hold cannot be loaded."""
    app, sdk, _token = signed_in
    with pytest.raises(openai.InternalServerError) as unavailable:
        sdk.images.generate(model="nobody/not-downloaded", prompt="a gull", size="64x64")
    assert unavailable.value.status_code == 503 and unavailable.value.body["code"] == "model_not_available"
    assert unavailable.value.body["type"] == "server_error" and "nobody/not-downloaded" in unavailable.value.body[
        "message"]
    a1111 = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", auth=("ann", "pw-ann"), timeout=120,
                       json={"prompt": "x", "override_settings": {"sd_model_checkpoint": "nobody/not-downloaded"}})
    assert a1111.status_code == 503 and a1111.json()["error"] == "ModelUnavailable"
