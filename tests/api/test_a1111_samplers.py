"""The AUTOMATIC1111 API's ``sampler_name`` and ``scheduler``: used when the model can take them, else the model's
own scheduler."""

from __future__ import annotations

import json

import httpx

from masuka.image.metadata import parse_parameters

from .test_a1111 import client


def test_sampler_name_is_used_when_it_fits_and_ignored_otherwise(shared_app, tiny_model):
    app = shared_app()
    api = client(app)
    assert {"Euler a", "DPM++ 2M Karras", "Euler Karras"} <= {s["name"] for s in api.get_samplers()}
    fits = api.txt2img(prompt="a castle", seed=3, steps=2, width=64, height=64, sampler_name="DPM++ 2M Karras",
                       override_settings={"sd_model_checkpoint": str(tiny_model("sdxl"))})
    assert parse_parameters(fits.info["infotexts"][0]).sampler == "DPM++ 2M Karras"
    flux = api.txt2img(prompt="a castle", seed=3, steps=2, width=64, height=64, sampler_name="DPM++ 2M Karras",
                       override_settings={"sd_model_checkpoint": str(tiny_model("flux"))})
    assert parse_parameters(flux.info["infotexts"][0]).sampler == "Euler"  # Flux keeps its flow-matching Euler


def test_scheduler_joins_the_sampler_and_unknown_samplers_are_refused(shared_app, tiny_model):
    app = shared_app()  # the module's one app: this test counts the rows it makes
    made_before = app.studio.store.count("generations")
    api = client(app)
    assert {"automatic", "karras", "exponential", "beta"} <= {s["name"] for s in api.get_schedulers()}
    karras = next(s for s in api.get_samplers() if s["name"] == "DPM++ 2M Karras")
    assert karras["options"] == {"scheduler": "karras"}
    sdxl, flux = str(tiny_model("sdxl")), str(tiny_model("flux"))

    def used(model, **kw):
        result = api.txt2img(prompt="a castle", seed=3, steps=2, width=64, height=64,
                             override_settings={"sd_model_checkpoint": model}, **kw)
        return parse_parameters(result.info["infotexts"][0]).sampler, result.info

    sampler, info = used(sdxl, sampler_name="DPM++ 2M", scheduler="karras")
    assert sampler == "DPM++ 2M Karras" and (info["sampler_name"], info["scheduler"]) == ("DPM++ 2M", "karras")
    assert used(flux, sampler_name="Euler", scheduler="exponential")[0] == "Euler Exponential"
    assert used(sdxl, sampler_name="Euler", scheduler="beta")[0] == "Euler", "no beta Euler for SDXL: plain Euler"
    assert used(sdxl, sampler_name="DPM++ 3M SDE", scheduler="karras")[0] == "Euler", "A1111's, not here: own"
    answer = httpx.post(api.baseurl + "/txt2img", json={"prompt": "a castle", "sampler_index": "Heun", "steps": 1,
                                                        "width": 64, "height": 64,
                                                        "override_settings": {"sd_model_checkpoint": sdxl}})
    assert parse_parameters(json.loads(answer.json()["info"])["infotexts"][0]).sampler == "Heun"
    bad = httpx.post(api.baseurl + "/txt2img", json={"prompt": "a castle", "sampler_name": "Eulr a"})
    assert bad.status_code == 422 and "Unknown sampler 'Eulr a'" in bad.json()["detail"]
    assert app.studio.store.count("generations") == made_before + 5
