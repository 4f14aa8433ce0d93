"""ControlNet and IP-Adapter units through the real `webuiapi` client (``controlnet_units``, which builds
sd-webui-controlnet's ``alwayson_scripts`` payload) against a live app with tiny SDXL models."""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image, ImageDraw

from masuka.models.architectures import PROFILES
from masuka.models.tiny_control import save_tiny_controlnet, save_tiny_depth_model, save_tiny_ip_adapter
from tests.api.test_a1111 import client
from tests.image.guides import point_profile


@pytest.fixture(scope="module")
def tiny_guides(tmp_path_factory):
    """A tiny SDXL ControlNet, IP-Adapter and depth model, as folders their real loaders read."""
    return (save_tiny_controlnet("sdxl", tmp_path_factory.mktemp("api-cn")),
            save_tiny_ip_adapter("sdxl", tmp_path_factory.mktemp("api-ip")),
            save_tiny_depth_model(tmp_path_factory.mktemp("api-depth")))


@pytest.fixture
def sdxl_app(shared_app, tiny_model, tiny_guides, monkeypatch):
    """A live app whose SDXL profile serves every control kind and style references with the tiny models (the
    profile and the depth model are read per request: the module's tests share one app)."""
    net, adapter, depth = tiny_guides
    monkeypatch.setenv("MASUKA_DEPTH_MODEL", str(depth))
    point_profile(monkeypatch, "sdxl", controlnet=str(net), reference=str(adapter))
    app = shared_app()
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("sdxl"))})
    return app, api


@pytest.fixture
def square() -> Image.Image:
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).rectangle((16, 16, 47, 47), fill="black")
    return picture


def made(result) -> np.ndarray:
    return np.asarray(result.image.convert("RGB"), dtype=np.int16)


def generate(api, **kw):
    return api.txt2img(prompt="a lighthouse", seed=7, steps=2, width=64, height=64, **kw)


def test_controlnet_units_steer_the_image_and_are_recorded(sdxl_app, tiny_guides, square):
    app, api = sdxl_app
    plain = generate(api)
    canny = generate(api, controlnet_units=[webuiapi.ControlNetUnit(image=square, module="canny", weight=0.8,
                                                                     guidance_start=0.0, guidance_end=0.5)])
    assert np.abs(made(canny) - made(plain)).mean() > 1, "the control changes the image"
    row = app.studio.store.get("generations", canny.info["history_ids"][0])
    (control,) = row["params"]["controls"]
    assert (control["kind"], control["weight"], control["start"], control["end"]) == ("canny", 0.8, 0.0, 0.5)
    assert control["model"] == str(tiny_guides[0]), "no model named: the profile's ControlNet for the kind"
    assert 'ControlNet 0: "Module: canny' in canny.info["infotexts"][0]
    two = generate(api, controlnet_units=[
        webuiapi.ControlNetUnit(image=square, module="depth_midas", model="control_v11f1p_sd15_depth [cfd03158]"),
        webuiapi.ControlNetUnit(image=square, module="none", model=str(tiny_guides[0]), weight=0.5),
        webuiapi.ControlNetUnit(image=square, module="canny", enabled=False)])
    kept = app.studio.store.get("generations", two.info["history_ids"][0])["params"]["controls"]
    assert [(c["kind"], c["weight"]) for c in kept] == [("depth", 1.0), ("image", 0.5)]
    parked = generate(api, controlnet_units=[webuiapi.ControlNetUnit(image=square, module="canny", weight=0)])
    assert np.array_equal(made(parked), made(plain)), "weight 0 parks a unit, as in A1111"
    again = generate(api)  # webuiapi clears the units of the calls before
    assert np.array_equal(made(again), made(plain)) and "controls" not in app.studio.store.get(
        "generations", again.info["history_ids"][0])["params"]


def test_an_ip_adapter_unit_is_a_style_reference(sdxl_app, square):
    app, api = sdxl_app
    plain = generate(api)
    styled = generate(api, controlnet_units=[webuiapi.ControlNetUnit(image=square, module="ip-adapter_clip_sdxl",
                                                                      model="ip-adapter_sdxl [7d943a46]",
                                                                      weight=0.6)])
    assert np.abs(made(styled) - made(plain)).mean() > 1
    row = app.studio.store.get("generations", styled.info["history_ids"][0])
    assert [r["weight"] for r in row["params"]["style_references"]] == [0.6] and "controls" not in row["params"]
    parked = generate(api, controlnet_units=[webuiapi.ControlNetUnit(image=square, module="ip-adapter_clip_sdxl",
                                                                      weight=0)])
    assert np.array_equal(made(parked), made(plain)), "weight 0 parks a reference unit too"
    assert "style_references" not in app.studio.store.get("generations", parked.info["history_ids"][0])["params"]


def test_units_refused_with_the_reason(sdxl_app, tiny_guides, square):
    app, api = sdxl_app
    rows = app.studio.store.count("generations")
    url = api.baseurl + "/txt2img"
    body = {"prompt": "a boat", "steps": 1, "width": 64, "height": 64}
    image = webuiapi.raw_b64_img(square)
    for unit, reason in (({"input_image": image, "module": "openpose_full"}, "'openpose_full' is not available"),
                         ({"module": "canny"}, "unit 1 has no image"),
                         ({"image": image, "module": "canny", "weight": 5}, "weight must be between 0 and 2"),
                         ({"image": image, "module": "canny", "guidance_start": 0.9, "guidance_end": 0.2},
                          "start < end")):
        answer = httpx.post(url, json={**body, "alwayson_scripts": {"controlnet": {"args": [unit]}}}, timeout=120)
        assert answer.status_code == 422 and reason in answer.json()["detail"], answer.text
    assert app.studio.store.count("generations") == rows, "no row for a refused request"
    assert api.has_controlnet and api.controlnet_version() == 2, "webuiapi sees the extension"
    assert {"none", "canny", "depth_midas", "ip-adapter_clip_sdxl"} <= set(api.controlnet_module_list())
    models = api.controlnet_model_list()
    flux = set(PROFILES["flux"].controlnets.repos.values())  # SDXL's are the tiny one here
    assert models[0] == "None" and {str(tiny_guides[0]), *flux} <= set(models)


def test_a_user_may_name_no_controlnet_folder_of_the_studio_they_may_not_read(live_app, tiny_guides, square):
    """A named folder is checked like a named checkpoint (masuka.access.usable_model)."""
    app = live_app(auth="ann:pw-ann")
    hidden = shutil.copytree(tiny_guides[0], app.studio.config.data_dir / "private" / "cn")
    unit = {"image": webuiapi.raw_b64_img(square), "module": "canny", "model": str(hidden)}
    answer = httpx.post(app.url.rstrip("/") + "/sdapi/v1/txt2img", auth=("ann", "pw-ann"), timeout=60, json={
        "prompt": "a boat", "override_settings": {"sd_model_checkpoint": "sdxl"},
        "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert answer.status_code == 422 and "no model folder of yours" in answer.json()["detail"]
    assert not app.studio.store.count("generations")
    assert httpx.get(app.url.rstrip("/") + "/controlnet/model_list").status_code == 401, "signed in, like /sdapi"
