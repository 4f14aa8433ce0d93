"""The generation aids on the REST routes, through the real clients against a live app with tiny models: ADetailer
units (`webuiapi`'s ``adetailer=[ADetailer(...)]``) as face detail, a mandatory safety check on both APIs, and
MASUKA's extension fields sent with the `openai` SDK's ``extra_body``."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
import webuiapi
from PIL import Image

from masuka.image.aid_settings import AidSettings, save_aid_settings
from masuka.image.face_detail import DETECTOR
from masuka.image.safety import PLACEHOLDER
from tests.api.test_a1111 import client
from tests.image.tiny_aids import WORDS, save_tiny_classifier, save_tiny_llm

SIZE = 256


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api-classifiers")
    return {says: save_tiny_classifier(folder / says, says) for says in ("nsfw", "normal")}


@pytest.fixture
def app(shared_app):
    """One app for the module: each test starts from the default aid settings and reads the rows it made."""
    app = shared_app()
    save_aid_settings(app.studio.config, AidSettings())
    return app


def rows_since(app, last: int) -> list[dict]:
    """The history rows made after row ``last``, oldest first."""
    return app.studio.store.find("generations", "id > ?", [last], order_by="id")


def last_id(app) -> int:
    return max((row["id"] for row in app.studio.store.find("generations", limit=1)), default=0)


@pytest.fixture
def portrait(tmp_path):
    """A 256 px picture with the astronaut's portrait in its top-left, and a mask repainting only a band at the
    right edge, so the face is still there for the detector after the inpaint."""
    from skimage.data import astronaut

    picture = Image.new("RGB", (SIZE, SIZE), "gray")
    picture.paste(Image.fromarray(astronaut()).resize((192, 192), Image.LANCZOS), (0, 0))
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (SIZE - 24, 0, SIZE, SIZE))
    return picture, mask


def test_an_adetailer_face_unit_repaints_the_face(app, tiny_model, portrait):
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("sdxl"))})
    assert "adetailer" in api.get_scripts()["txt2img"]
    picture, mask = portrait
    values = dict(images=[picture], mask_image=mask, mask_blur=0, denoising_strength=1.0, inpainting_fill=1,
                  inpaint_full_res=False, prompt="a portrait of an astronaut", steps=2, seed=7, width=SIZE,
                  height=SIZE)
    plain = api.img2img(**values)  # webuiapi sends ADetailer's "off" ({"args": [False]}) when it lists the script
    detailed = api.img2img(**values, adetailer=[webuiapi.ADetailer(ad_model="face_yolov8n.pt",
                                                                   ad_denoising_strength=0.5)])
    before = np.asarray(plain.image.convert("RGB"), dtype=np.int16)
    after = np.asarray(detailed.image.convert("RGB"), dtype=np.int16)
    row = app.studio.store.get("generations", detailed.info["history_ids"][0])
    face = row["params"]["face_detail"]
    assert face["detector"] == DETECTOR and face["strength"] == 0.5 and len(face["faces"]) == 1
    left, top, right, bottom = face["faces"][0]
    assert np.abs(after - before)[top:bottom, left:right].mean() > 1, "the face is repainted"
    assert "face_detail" not in app.studio.store.get("generations", plain.info["history_ids"][0])["params"]
    assert "ADetailer denoising strength: 0.5" in detailed.info["infotexts"][0]
    hands = httpx.post(api.baseurl + "/txt2img", timeout=60, json={
        "prompt": "x", "alwayson_scripts": {"ADetailer": {"args": [True, False, {"ad_model": "hand_yolov8n.pt"}]}}})
    assert hands.status_code == 422 and "'hand_yolov8n.pt' is not available" in hands.json()["detail"]


def test_a_mandatory_safety_check_withholds_on_both_apis(app, tiny_model, classifiers):
    last = last_id(app)
    save_aid_settings(app.studio.config, AidSettings(safety_model=str(classifiers["nsfw"]), safety_action="withhold",
                                                     safety_mandatory=True))
    api = client(app)
    result = api.txt2img(prompt="a harbour", steps=1, width=64, height=64,
                         override_settings={"sd_model_checkpoint": str(tiny_model("flux"))})
    assert (np.asarray(result.image.convert("RGB")) == PLACEHOLDER).all(), "only the grey placeholder comes back"
    assert result.info["safety"][0]["flagged"] is True and result.info["safety"][0]["action"] == "withhold"
    sdk = openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key="local", max_retries=0, timeout=120)
    answer = sdk.images.generate(model=str(tiny_model("flux")), prompt="a harbour", size="64x64")
    picture = Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))).convert("RGB")
    assert (np.asarray(picture) == PLACEHOLDER).all()
    rows = rows_since(app, last)
    assert [r["params"]["safety"]["action"] for r in rows] == ["withhold", "withhold"]


def test_openai_extension_fields_through_extra_body(app, tiny_model, classifiers, portrait):
    last = last_id(app)
    save_aid_settings(app.studio.config, AidSettings(safety_model=str(classifiers["normal"])))
    sdk = openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key="local", max_retries=0, timeout=120)
    sdk.images.generate(model=str(tiny_model("flux")), prompt="a harbour", size="64x64",
                        extra_body={"safety_check": True})
    picture, mask = portrait
    files = {}
    for name, image in (("image", picture), ("mask", mask)):
        files[name] = io.BytesIO()
        (image if name == "image" else Image.merge("LA", (mask, mask.point(lambda v: 0 if v else 255)))).save(
            files[name], format="PNG")
        files[name] = (f"{name}.png", files[name].getvalue(), "image/png")
    sdk.images.edit(model=str(tiny_model("sdxl")), image=files["image"], mask=files["mask"], prompt="an astronaut",
                    size=f"{SIZE}x{SIZE}", extra_body={"face_detail": True, "face_strength": 0.3})
    first, second = rows_since(app, last)
    assert first["params"]["safety"]["flagged"] is False and "face_detail" not in first["params"]
    assert second["params"]["face_detail"]["strength"] == 0.3 and len(second["params"]["face_detail"]["faces"]) == 1
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.images.generate(model=str(tiny_model("flux")), prompt="a harbour", size="64x64",
                            extra_body={"face_detail": True, "face_strength": 3})
    assert "face detail strength" in bad.value.body["message"]


def test_openai_optimize_prompt_answers_the_rewrite_as_revised_prompt(app, tiny_model, tmp_path):
    last = last_id(app)
    save_aid_settings(app.studio.config, AidSettings(prompt_llm=str(save_tiny_llm(tmp_path / "tiny-llm"))))
    sdk = openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key="local", max_retries=0, timeout=120)
    answer = sdk.images.generate(model=str(tiny_model("flux")), prompt="a fox in snow", size="64x64",
                                 extra_body={"optimize_prompt": True})
    (row,) = rows_since(app, last)
    assert answer.data[0].revised_prompt == row["prompt"] and set(row["prompt"].split()) <= set(WORDS)
    assert row["params"]["original_prompt"] == "a fox in snow"
    plain = sdk.images.generate(model=str(tiny_model("flux")), prompt="a fox in snow", size="64x64")
    assert plain.data[0].revised_prompt == "a fox in snow"
