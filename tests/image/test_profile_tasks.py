"""What a profile lets a model do, checked before anything runs: a LoRA for another size of the architecture, a
folder saved as a task's own class, "only masked" inpainting, a profile that does not train; and SD3.5 inpaints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageFilter
from safetensors.torch import load_file, save_file

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.tasks import InitImage
from masuka.loras.files import inspect_lora
from masuka.models import architectures
from masuka.models.synthetic import save_tiny_lora, tiny_components
from tests.image.conftest import striped_pictures, write_random_lora


@pytest.fixture
def pictures(tmp_path):
    """A striped 64x64 photo and a mask whose white square is the part to repaint."""
    return striped_pictures(tmp_path, 64, 64, (16, 16, 47, 47))


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def run(studio, model, **kw):
    values = dict(prompt="a harbour at dusk", model=str(model), steps=2, width=64, height=64, seed=5)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values), allow_any_path=True)[0]


def save_sd3(folder, **transformer):
    """The tiny SD3 pipeline with its transformer's config changed by ``transformer`` (and a VAE to match)."""
    import diffusers

    from masuka.models.architectures.shared import tiny_vae

    components = tiny_components("sd3")
    config = {**components["transformer"].config, **transformer}
    components["transformer"] = diffusers.SD3Transformer2DModel.from_config(config)
    vae = components["vae"].config
    components["vae"] = tiny_vae(config["out_channels"], shift_factor=vae.shift_factor,
                                 scaling_factor=vae.scaling_factor)
    diffusers.StableDiffusion3Pipeline(**components).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def wide_sd3(tmp_path_factory):
    """Another size of the tiny SD3 (twice the width), as SD3.5 Large is of Medium: LoRAs of one fit the names of
    the other, not its widths."""
    config = tiny_components("sd3")["transformer"].config
    return save_sd3(tmp_path_factory.mktemp("sd3-wide"), attention_head_dim=2 * config.attention_head_dim,
                    caption_projection_dim=2 * config.caption_projection_dim)


def test_a_lora_for_another_size_is_refused_and_the_pipeline_stays_clean(studio, wide_sd3, tmp_path):
    narrow = save_tiny_lora("sd3", tmp_path / "medium-style.safetensors")
    fitting = write_random_lora(wide_sd3, tmp_path / "large-style.safetensors")
    save_file(load_file(fitting), fitting, metadata={"masuka.architecture": "sd3"})  # its names fit FLUX.1 too
    assert inspect_lora(narrow).architecture == inspect_lora(fitting).architecture == "sd3"
    plain = pixels(run(studio, wide_sd3).path)
    styled = pixels(run(studio, wide_sd3, loras=[(str(fitting), 1.0)]).path)
    with pytest.raises(InvalidInput, match="'medium-style' was made for another size of SD3 than this model"):
        run(studio, wide_sd3, loras=[(str(fitting), 1.0), (str(narrow), 1.0)])
    assert np.array_equal(pixels(run(studio, wide_sd3, loras=[(str(fitting), 1.0)]).path), styled)
    with pytest.raises(InvalidInput, match="another size of SD3"):
        run(studio, wide_sd3, loras=[(str(narrow), 1.0)])
    assert np.array_equal(pixels(run(studio, wide_sd3).path), plain), "nothing of the refused LoRA stays attached"
    assert studio.models.loads == 1


def test_a_lora_whose_text_encoder_part_is_another_size_leaves_nothing_attached(studio, tiny_model, tmp_path):
    """The denoiser's part loads first and fits; the text encoder's does not: the denoiser's is taken off again."""
    import json

    import torch

    model = tiny_model("sd3")
    lora = save_tiny_lora("sd3", tmp_path / "style.safetensors")
    width = json.loads((model / "text_encoder" / "config.json").read_text())["hidden_size"]
    layer = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    tensors = load_file(lora) | {f"{layer}.lora_A.weight": torch.ones(4, 2 * width),
                                 f"{layer}.lora_B.weight": torch.ones(width, 4)}
    save_file(tensors, lora, metadata={"masuka.architecture": "sd3"})
    plain = pixels(run(studio, model).path)
    with pytest.raises(InvalidInput, match="another size of SD3"):
        run(studio, model, loras=[(str(lora), 1.0)])
    loaded = studio.models.get(studio.models.key, lambda: None)
    assert not any(loaded.get_list_adapters().values())
    assert np.array_equal(pixels(run(studio, model).path), plain)


def test_the_cli_refuses_a_lora_for_another_size_in_one_line(capsys, studio, wide_sd3, tmp_path):
    lora = save_tiny_lora("sd3", tmp_path / "medium-style.safetensors")
    code = main(["generate", "--data-dir", str(studio.config.data_dir), "--model", str(wide_sd3), "--prompt", "a cat",
                 "--steps", "1", "--width", "64", "--height", "64", "--lora", str(lora)])
    err = capsys.readouterr().err
    assert code == 2 and "another size of SD3" in err
    assert "size mismatch" not in err and "Traceback" not in err


@pytest.mark.parametrize("task, class_name", [("img2img", "StableDiffusionXLImg2ImgPipeline"),
                                              ("inpaint", "StableDiffusionXLInpaintPipeline")])
def test_a_folder_saved_as_a_task_class_does_that_task_and_asks_for_a_picture(studio, tmp_path, pictures, task,
                                                                               class_name):
    """The SDXL refiner's model_index names StableDiffusionXLImg2ImgPipeline, an inpainting checkpoint's the inpaint
    class: they run their task, and text alone is refused before the model loads."""
    import diffusers

    folder = tmp_path / "sdxl-task"
    getattr(diffusers, class_name)(**tiny_components("sdxl")).save_pretrained(folder, safe_serialization=True)
    with pytest.raises(InvalidInput, match="give it a starting image"):
        run(studio, folder)
    assert not studio.store.count("generations") and studio.models.loads == 0
    photo, mask = pictures
    result = run(studio, folder, init=InitImage(photo, strength=0.6, mask=mask if task == "inpaint" else None))
    assert studio.store.get("generations", result.id)["params"]["task"] == task
    assert not np.array_equal(pixels(result.path), pixels(photo))


@pytest.mark.parametrize("model", ["z_image", "fill"])
def test_only_masked_inpainting_is_refused_where_the_pipeline_cannot_crop(studio, tiny_model, tmp_path, pictures,
                                                                          model):
    """Z-Image's inpaint pipeline and FLUX.1 Fill take no padding_mask_crop: the request is refused, not run on the
    whole picture as if "only masked" had not been asked."""
    from masuka.models.synthetic import save_tiny_pipeline

    folder = save_tiny_pipeline("flux", tmp_path / "fill", task="fill") if model == "fill" else tiny_model(model)
    photo, mask = pictures
    with pytest.raises(InvalidInput, match="cannot repaint only the masked area"):
        run(studio, folder, init=InitImage(photo, strength=1.0, mask=mask, only_masked_padding=8))
    assert not studio.store.count("generations") and studio.models.loads == 0


@pytest.fixture(scope="module")
def sd35(tmp_path_factory):
    """The tiny SD3 with SD3.5's 16 latent channels, which StableDiffusion3InpaintPipeline needs."""
    return save_sd3(tmp_path_factory.mktemp("sd3-16"), in_channels=16, out_channels=16)


def test_sd35_inpaints_only_the_masked_part_also_around_a_crop(studio, sd35, pictures):
    photo, mask = pictures
    original = pixels(photo)
    outside = np.asarray(Image.open(mask).filter(ImageFilter.MaxFilter(5))) == 0
    results = [run(studio, sd35, init=InitImage(photo, strength=1.0, mask=mask, mask_blur=0, only_masked_padding=pad))
               for pad in (None, 8)]
    for result in results:
        assert np.array_equal(pixels(result.path)[outside], original[outside])
        assert np.abs(pixels(result.path)[~outside] - original[~outside]).mean() > 5
    assert not np.array_equal(pixels(results[0].path), pixels(results[1].path)), "only masked reaches the pipeline"
    loaded = studio.models.get(studio.models.key, lambda: None)
    assert type(loaded.masuka_tasks["inpaint"]).__name__ == "StableDiffusion3InpaintPipeline"


def test_a_profile_that_does_not_train_still_gets_a_tiny_lora(monkeypatch, studio, tiny_model, tmp_path):
    """ADDING.md's profile tests need a LoRA for every profile: one without training gets its attention adapted."""
    monkeypatch.setitem(architectures.PROFILES, "sdxl", dataclasses.replace(architectures.PROFILES["sdxl"],
                                                                            training=None))
    lora = save_tiny_lora("sdxl", tmp_path / "style.safetensors")
    assert inspect_lora(lora).architecture == "sdxl"
    plain = pixels(run(studio, tiny_model("sdxl")).path)
    assert np.abs(pixels(run(studio, tiny_model("sdxl"), loras=[(str(lora), 1.0)]).path) - plain).mean() > 1.0
