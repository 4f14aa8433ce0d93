"""The fast path on tiny pipelines: right-size images, the same picture as the plain path, LoRA hotswap
without recompiling (dynamo's recompile guard), and one-LoRA-at-a-time refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images


def request(model, **kw) -> ImageRequest:
    values = dict(prompt="a red fox in the snow", model=str(model), steps=2, width=64, height=64, seed=5)
    values.update(kw)
    return ImageRequest(**values)


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path)).astype(int)


@pytest.mark.parametrize("architecture", ["flux", "sd3", "sdxl"])
def test_fast_path_makes_the_same_picture_at_the_right_size(studio, tiny_model, tracing_compiler, architecture):
    plain = generate_images(studio, request(tiny_model(architecture), width=96))[0]
    fast = generate_images(studio, request(tiny_model(architecture), fast=True, width=96))[0]
    assert Image.open(fast.path).size == (96, 64)
    assert np.abs(pixels(fast) - pixels(plain)).max() <= 3  # fused QKV, compiled blocks: the same maths
    assert studio.store.get("generations", fast.id)["params"]["fast"] is True
    assert studio.models.loads == 2


def test_lora_hotswap_does_not_recompile(studio, tiny_model, tiny_lora, tracing_compiler):
    model = tiny_model("flux")
    first = generate_images(studio, request(model, fast=True, loras=[(str(tiny_lora("flux", 1)), 1.0)]),
                            allow_any_path=True)[0]
    with torch._dynamo.config.patch(error_on_recompile=True):
        other = generate_images(studio, request(model, fast=True, loras=[(str(tiny_lora("flux", 2, rank=8)), 1.0)]),
                                allow_any_path=True)[0]
        back = generate_images(studio, request(model, fast=True, loras=[(str(tiny_lora("flux", 1)), 1.0)]),
                               allow_any_path=True)[0]
        weaker = generate_images(studio, request(model, fast=True, loras=[(str(tiny_lora("flux", 1)), 0.3)]),
                                 allow_any_path=True)[0]
        without = generate_images(studio, request(model, fast=True))[0]
    plain = generate_images(studio, request(model))[0]
    assert np.abs(pixels(back) - pixels(first)).max() <= 3  # the first LoRA again (zero-padded rank: rounding)
    assert np.abs(pixels(other) - pixels(first)).max() > 10
    assert np.abs(pixels(weaker) - pixels(first)).max() > 3
    assert np.abs(pixels(without) - pixels(plain)).max() <= 3  # weight 0 in the slot: no LoRA effect
    assert studio.models.loads == 2  # the fast pipeline stayed resident through every swap, then the plain one


def test_first_lora_after_compiling_without_one_then_swaps_freely(studio, tiny_model, tiny_lora, tracing_compiler):
    model = tiny_model("flux")
    generate_images(studio, request(model, fast=True))
    with_lora = generate_images(studio, request(model, fast=True, loras=[(str(tiny_lora("flux", 1)), 1.0)]),
                                allow_any_path=True)[0]  # unfuses QKV and recompiles once
    with torch._dynamo.config.patch(error_on_recompile=True):
        swapped = generate_images(studio, request(model, fast=True, loras=[(str(tiny_lora("flux", 2)), 1.0)]),
                                  allow_any_path=True)[0]
    assert np.abs(pixels(swapped) - pixels(with_lora)).max() > 10


def test_fast_path_takes_one_lora_at_a_time(studio, tiny_model, tiny_lora, tracing_compiler):
    loras = [(str(tiny_lora("flux", 1)), 1.0), (str(tiny_lora("flux", 2)), 0.5)]
    with pytest.raises(InvalidInput, match="one LoRA at a time"):
        generate_images(studio, request(tiny_model("flux"), fast=True, loras=loras), allow_any_path=True)
    plain = generate_images(studio, request(tiny_model("flux"), loras=loras), allow_any_path=True)
    assert len(plain) == 1  # the normal path still combines LoRAs


@pytest.mark.parametrize("plan", ["model_offload", "fp8_offload", "group_offload"])
def test_fast_path_runs_under_each_offloading_plan(studio, tiny_model, tracing_compiler, plan):
    result = generate_images(studio, request(tiny_model("flux"), fast=True, memory_plan=plan, width=96))[0]
    assert Image.open(result.path).size == (96, 64)
    assert studio.store.get("generations", result.id)["params"]["memory_plan"] == plan


def test_fp8_is_only_applied_to_compiled_blocks(studio, tiny_model, tracing_compiler, monkeypatch):
    """torchao's fp8 is slower than bf16 uncompiled, so a pipeline the step cache keeps uncompiled stays bf16."""
    asked = []
    monkeypatch.setattr("masuka.image.fast._fp8", lambda denoiser, plan: asked.append(plan.step_cache) or False)
    generate_images(studio, request(tiny_model("flux"), fast=True, step_cache=0.1))
    assert asked == []
    generate_images(studio, request(tiny_model("flux"), fast=True))
    assert asked == [0.0]


def test_a_lora_for_another_size_is_refused_on_the_fast_path_too(studio, tracing_compiler, tmp_path):
    from masuka.models.synthetic import save_tiny_lora, tiny_components
    from tests.image.test_profile_tasks import save_sd3

    config = tiny_components("sd3")["transformer"].config
    wide = save_sd3(tmp_path / "sd3-wide", attention_head_dim=2 * config.attention_head_dim,
                    caption_projection_dim=2 * config.caption_projection_dim)
    narrow = save_tiny_lora("sd3", tmp_path / "medium-style.safetensors")
    with pytest.raises(InvalidInput, match="'medium-style' was made for another size of SD3 than this model"):
        generate_images(studio, request(wide, fast=True, loras=[(str(narrow), 1.0)]), allow_any_path=True)
    assert generate_images(studio, request(wide, fast=True), allow_any_path=True)[0].path.is_file()
    assert studio.models.loads == 1


def test_a_wider_flux_lora_swapped_in_is_refused_and_the_fast_pipeline_keeps_working(studio, tiny_model, tiny_lora,
                                                                                      tracing_compiler, tmp_path):
    from tests.image.test_loras_wider import variant

    model, good = tiny_model("flux"), str(tiny_lora("flux", 1))
    control = str(variant(tiny_lora("flux", 2), tmp_path / "control.safetensors", widen_all=False))
    styled = generate_images(studio, request(model, fast=True, loras=[(good, 1.0)]), allow_any_path=True)[0]
    with pytest.raises(InvalidInput, match="'control' was made for another size of FLUX.1 than this model, or for "
                                           "a control variant"):
        generate_images(studio, request(model, fast=True, loras=[(control, 1.0)]), allow_any_path=True)
    again = generate_images(studio, request(model, fast=True, loras=[(good, 1.0)]), allow_any_path=True)[0]
    assert np.abs(pixels(again) - pixels(styled)).max() <= 3
    assert studio.models.loads == 1


def test_a_lora_file_diffusers_cannot_read_is_refused_on_a_swap(studio, tiny_model, tiny_lora, tracing_compiler,
                                                                 tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model, good = tiny_model("flux"), str(tiny_lora("flux", 1))
    tensors = load_file(tiny_lora("flux", 2))
    tensors["transformer.transformer_blocks.0.attn.to_q.alpha"] = torch.tensor(4)  # an alpha diffusers refuses
    metadata = safe_open(str(tiny_lora("flux", 2)), "pt").metadata()
    save_file(tensors, str(tmp_path / "odd.safetensors"), metadata=metadata)
    generate_images(studio, request(model, fast=True, loras=[(good, 1.0)]), allow_any_path=True)
    with pytest.raises(InvalidInput, match="'odd' cannot be swapped in on the fast path"):
        generate_images(studio, request(model, fast=True, loras=[(str(tmp_path / "odd.safetensors"), 1.0)]),
                        allow_any_path=True)


def test_a_lora_is_checked_for_wider_layers_once_per_model(studio, tiny_model, tiny_lora, tracing_compiler,
                                                           monkeypatch):
    """The check reads and converts the whole file (seconds for a real FLUX.1 LoRA): swapping back to a LoRA
    checked before reads it only for diffusers' own load."""
    from diffusers import FluxPipeline

    monkeypatch.setattr("masuka.image.lora_weights._FITTING", {})  # none checked yet in this process
    reads = []
    read = FluxPipeline.lora_state_dict.__func__
    monkeypatch.setattr(FluxPipeline, "lora_state_dict", classmethod(lambda cls, *a, **k: reads.append(a[0])
                                                                    or read(cls, *a, **k)))
    model, one, two = tiny_model("flux"), str(tiny_lora("flux", 1)), str(tiny_lora("flux", 2))
    for lora in (one, two):
        generate_images(studio, request(model, fast=True, loras=[(lora, 1.0)]), allow_any_path=True)
    first = len(reads)
    generate_images(studio, request(model, fast=True, loras=[(one, 1.0)]), allow_any_path=True)
    assert first == 4 and len(reads) == first + 1, reads
