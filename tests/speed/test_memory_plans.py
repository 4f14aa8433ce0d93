"""Memory plans: the automatic choice from free GPU memory, each plan making an image, plan changes reloading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput
from masuka.gpu import MEMORY_PLANS, choose_memory_plan
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.pipelines import get_pipeline
from masuka.models import architectures
from masuka.models.catalog import resolve_image_model


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path), dtype=float)


def request(model, **kw) -> ImageRequest:
    values = dict(prompt="a red fox in the snow", model=str(model), steps=2, width=64, height=64, seed=3)
    values.update(kw)
    return ImageRequest(**values)


@pytest.mark.parametrize("model, free_gb, plan", [
    ("flux-dev", 80, "full"),            # H100 80 GB
    ("flux-dev", 42, "full"),            # A100 40 GB (40 GiB, about 42 GB free): 39.5 GB + headroom fits
    ("flux-dev", 30, "model_offload"),
    ("flux-dev", 23.5, "fp8_offload"),   # RTX 4090 / L4 class
    ("flux-dev", 14.7, "group_offload"),  # T4: 16 GB card, ~14.7 GB free
    ("flux-dev", 6, MEMORY_PLANS[-1]),   # nothing fits: the smallest plan is the best chance
    ("sdxl", 14.7, "full"),
    ("sdxl", 9, "model_offload"),
    ("sd35-large", 24, "model_offload"),
])
def test_auto_plan_is_the_fastest_that_fits(model, free_gb, plan):
    assert choose_memory_plan(free_gb, resolve_image_model(model).memory_needs_gb) == plan


@pytest.mark.parametrize("plan", [name for name in MEMORY_PLANS if name != "full"])
def test_every_automatic_plan_has_a_figure_in_every_profile_and_catalog_image_entry(plan):
    """``auto`` compares each automatic plan's figure with free memory: a profile or catalog entry without one would
    never get that plan."""
    from masuka.models.catalog import image_models

    assert [name for name, profile in architectures.PROFILES.items() if plan not in profile.memory_gb] == []
    assert [model for model in image_models() if resolve_image_model(model).memory_needs_gb.get(plan) is None] == []


def test_a_model_without_figures_gets_the_full_gpu():
    assert choose_memory_plan(8, resolve_image_model("someone/some-model").memory_needs_gb) == "full"


@pytest.mark.parametrize("plan", MEMORY_PLANS)
def test_each_plan_makes_an_image_of_the_right_size(studio, tiny_model, plan):
    result = generate_images(studio, request(tiny_model("flux"), memory_plan=plan, width=96))[0]
    assert Image.open(result.path).size == (96, 64)
    assert studio.store.get("generations", result.id)["params"]["memory_plan"] == plan
    spec = resolve_image_model(str(tiny_model("flux")))
    assert get_pipeline(studio.models, spec, memory=plan).vae.use_tiling == (plan != "full")  # same pipeline
    assert studio.models.loads == 1


@pytest.mark.parametrize("plan", ["model_offload", "fp8_offload"])
def test_a_lora_under_an_offloading_plan_on_the_cpu_changes_the_image_as_under_full(studio, tiny_model, tmp_path,
                                                                                   plan):
    from masuka.models.synthetic import save_tiny_lora

    model, lora = tiny_model("flux"), save_tiny_lora("flux", tmp_path / "style.safetensors")
    made = {(memory, bool(loras)): pixels(generate_images(studio, request(model, memory_plan=memory, loras=loras),
                                                          allow_any_path=True)[0])
            for memory in ("full", plan) for loras in ([], [(str(lora), 1.0)])}
    change = {memory: np.abs(made[memory, True] - made[memory, False]).mean() for memory in ("full", plan)}
    assert change[plan] > 0.5 and abs(change[plan] - change["full"]) < 0.5 * change["full"]


def test_fp8_plan_stores_the_denoiser_in_a_quarter_of_the_memory(studio, tiny_model):
    spec = resolve_image_model(str(tiny_model("sdxl")))
    full = get_pipeline(studio.models, spec, memory="full").unet.get_memory_footprint()
    generate_images(studio, request(spec.source, memory_plan="fp8_offload"))
    fp8 = get_pipeline(studio.models, spec, memory="fp8_offload").unet.get_memory_footprint()
    assert fp8 < 0.4 * full  # fp32 -> fp8 storage, norms kept in full precision
    assert studio.models.loads == 2


def test_changing_the_plan_reloads_and_keeping_it_does_not(studio, tiny_model):
    model = tiny_model("flux")
    generate_images(studio, request(model))
    generate_images(studio, request(model, memory_plan="auto", seed=4))
    assert studio.models.loads == 1
    generate_images(studio, request(model, memory_plan="model_offload"))
    assert studio.models.loads == 2
    generate_images(studio, request(model, memory_plan="model_offload", fast=True, step_cache=0.1))
    assert studio.models.loads == 3


@pytest.mark.parametrize("change, message", [
    ({"memory_plan": "tiny"}, "Unknown memory plan"),
    ({"step_cache": 0.2}, "turn Fast on"),
    ({"fast": True, "step_cache": 0.9}, "between 0"),
])
def test_bad_speed_settings_are_refused(studio, tiny_model, change, message):
    with pytest.raises(InvalidInput, match=message):
        generate_images(studio, request(tiny_model("flux"), **change))
    assert studio.store.count("generations") == 0


@pytest.mark.parametrize("architecture", list(architectures.PROFILES))
def test_every_profile_runs_the_smallest_plans(studio, tiny_model, architecture):
    """fp8 storage goes to the denoiser the profile names; leaf-level group offload streams every profile."""
    spec = resolve_image_model(str(tiny_model(architecture)))
    profile = architectures.get(architecture)
    full = getattr(get_pipeline(studio.models, spec, memory="full"), profile.denoiser).get_memory_footprint()
    for plan in ("fp8_offload", "group_offload"):
        result = generate_images(studio, request(spec.source, memory_plan=plan))[0]
        assert Image.open(result.path).size == (64, 64)
    fp8 = getattr(get_pipeline(studio.models, spec, memory="fp8_offload"), profile.denoiser).get_memory_footprint()
    assert fp8 < full  # (tiny models keep much in embeddings and norms, which stay in full precision)


@pytest.mark.parametrize("profile", [p for p in architectures.PROFILES.values() if p.big_text_encoder],
                         ids=lambda p: p.id)
def test_the_smallest_plans_load_the_big_text_encoder_in_8_bit(monkeypatch, profile):
    from masuka.gpu import DevicePlan
    from masuka.image import memory

    monkeypatch.setattr(memory.importlib.util, "find_spec", lambda name: name == "bitsandbytes" or None)
    for plan, quantized in (("full", False), ("model_offload", False), ("fp8_offload", True),
                            ("group_offload", True), ("gguf_offload", True), ("nf4_offload", False)):
        config = memory.text_encoder_quantization(profile.id, DevicePlan("cuda", "bfloat16", plan))
        assert (config.components_to_quantize if config else None) == ([profile.big_text_encoder] if quantized
                                                                       else None)
    assert memory.text_encoder_quantization(profile.id, DevicePlan("cpu", "float32", "group_offload")) is None


def test_group_offload_on_cuda_pins_layers_as_they_move_not_a_copy_of_every_weight():
    """With streams, diffusers otherwise keeps a pinned copy of every weight beside the weights themselves: more
    than double the host memory (Qwen-Image, 53.5 GiB in bf16, would need about 143 GiB)."""
    from masuka.gpu import DevicePlan
    from masuka.image.memory import apply_memory_plan

    class Pipeline:  # stands in for a CUDA pipeline (a CPU cannot make streams)
        vae = None

        def enable_group_offload(self, **kwargs):
            self.offload = kwargs

    pipe = Pipeline()
    apply_memory_plan(pipe, DevicePlan("cuda", "bfloat16", "group_offload"))
    assert pipe.offload["use_stream"] and pipe.offload["low_cpu_mem_usage"]
    assert pipe.offload["offload_type"] == "leaf_level" and pipe.offload["exclude_modules"] == ["vae"]
