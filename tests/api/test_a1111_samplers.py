"""The AUTOMATIC1111 API's ``sampler_name``: used when the model can take it, else the model's own scheduler."""

from __future__ import annotations

from masuka.image.metadata import parse_parameters

from .test_a1111 import client


def test_sampler_name_is_used_when_it_fits_and_ignored_otherwise(live_app, tiny_model):
    app = live_app()
    api = client(app)
    assert {"Euler a", "DPM++ 2M Karras", "Euler Karras"} <= {s["name"] for s in api.get_samplers()}
    fits = api.txt2img(prompt="a castle", seed=3, steps=2, width=64, height=64, sampler_name="DPM++ 2M Karras",
                       override_settings={"sd_model_checkpoint": str(tiny_model("sdxl"))})
    assert parse_parameters(fits.info["infotexts"][0]).sampler == "DPM++ 2M Karras"
    flux = api.txt2img(prompt="a castle", seed=3, steps=2, width=64, height=64, sampler_name="DPM++ 2M Karras",
                       override_settings={"sd_model_checkpoint": str(tiny_model("flux"))})
    assert parse_parameters(flux.info["infotexts"][0]).sampler == "Euler"  # Flux keeps its flow-matching Euler
