"""Every architecture profile, through the real loading code: a tiny pipeline folder generates from the CLI,
a LoRA written for it is recognised and changes the image, and the PNG says what made it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masuka.cli import main
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.loras.files import inspect_lora
from masuka.models import architectures
from masuka.models.synthetic import save_tiny_lora


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.mark.parametrize("architecture", list(architectures.PROFILES))
def test_each_profile_generates_from_the_cli_and_its_lora_changes_the_image(capsys, studio, tiny_model, tmp_path,
                                                                             architecture):
    model = tiny_model(architecture)
    code = main(["generate", "--data-dir", str(studio.config.data_dir), "--model", str(model), "--prompt",
                 "a lighthouse", "--steps", "2", "--width", "64", "--height", "64", "--seed", "5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    plain = json.loads(out)["images"][0]

    lora = save_tiny_lora(architecture, tmp_path / f"{architecture}.safetensors")
    assert inspect_lora(lora).architecture == architecture
    request = ImageRequest(prompt="a lighthouse", model=str(model), steps=2, width=64, height=64, seed=5,
                           loras=[(str(lora), 1.0)])
    styled = generate_images(studio, request, allow_any_path=True)[0]
    assert pixels(plain).shape == (64, 64, 3)
    assert np.abs(pixels(plain) - pixels(styled.path)).mean() > 1.0
    written = parse_parameters(read_parameters(styled.path))
    assert (written.steps, written.seed, written.loras) == (2, 5, [(lora.stem, 1.0)])
    assert studio.store.get("generations", styled.id)["params"]["architecture"] == architecture


@pytest.mark.parametrize("architecture, off, on, other", [
    # the tiny Qwen-Image's random text encoder barely tells short prompts apart (±1 grey level at 6): a long
    # negative at a high guidance gives a real effect (~3 levels on average); Z-Image's is ~10 at 6
    ("qwen_image", 1.0, 15.0, "zzzz qqqq xxxx " * 8), ("z_image", 0.0, 6.0, "a storm at night, blurry")])
def test_guidance_reaches_the_argument_the_profile_names(studio, tiny_model, architecture, off, on, other):
    """Qwen-Image takes Guidance as ``true_cfg_scale`` (off at 1), Z-Image as ``guidance_scale`` (off at 0): with
    guidance the negative prompt steers the image, without it it does not."""
    def make(guidance: float, negative: str):
        request = ImageRequest(prompt="a lighthouse", negative_prompt=negative, model=str(tiny_model(architecture)),
                               steps=2, width=64, height=64, seed=5, guidance=guidance)
        return pixels(generate_images(studio, request, allow_any_path=True)[0].path)

    assert np.array_equal(make(off, "fog"), make(off, other))
    assert np.abs(make(on, "fog") - make(on, other)).mean() > 1.0



def test_qwen_image_guides_with_an_empty_negative_prompt(studio, tiny_model):
    """diffusers runs Qwen-Image's true CFG only with a negative prompt: an empty box still guides (as the model
    card's " " does), so the recorded CFG scale is the one that made the image."""
    def make(guidance: float):
        request = ImageRequest(prompt="a lighthouse", model=str(tiny_model("qwen_image")), steps=2, width=64,
                               height=64, seed=5, guidance=guidance)
        return pixels(generate_images(studio, request)[0].path)

    assert not np.array_equal(make(1.5), make(8.0))
    assert np.array_equal(make(0.5), make(1.0))  # at 1 or less CFG is off, with or without a negative

@pytest.mark.parametrize("architecture, guidance", [("flux", None), ("flux2", None), ("z_image", 0.0),
                                                    ("sdxl", 1.0)])
def test_a_negative_prompt_without_effect_is_not_recorded(studio, tiny_model, architecture, guidance):
    """No CFG (FLUX), or guidance at which CFG is off: the row (which Reuse reads) and the PNG keep no negative;
    the Image tab empties the box it greys out for a model that takes none."""
    from masuka.ui.image import model_defaults

    def recorded(guidance: float | None) -> tuple[str, str]:
        request = ImageRequest(prompt="a lighthouse", negative_prompt="blurry", model=str(tiny_model(architecture)),
                               steps=1, width=64, height=64, seed=5, guidance=guidance)
        result = generate_images(studio, request)[0]
        return (studio.store.get("generations", result.id)["negative_prompt"],
                parse_parameters(read_parameters(result.path)).negative_prompt)

    assert recorded(guidance) == ("", "")
    takes_one = architectures.require(architecture).negative_prompt
    assert recorded(2.0) == (("blurry",) * 2 if takes_one else ("", ""))
    box = model_defaults(studio, str(tiny_model(architecture)))[4].constructor_args
    assert box == ({"interactive": True} if takes_one else {"interactive": False, "value": ""})


def test_flux2_dev_without_torchvision_says_what_to_install(capsys, monkeypatch, studio, tiny_model, tmp_path):
    """FLUX.2 [dev]'s PixtralProcessor needs torchvision: one line saying so, not a loader traceback."""
    folder = Path(shutil.copytree(tiny_model("flux2"), tmp_path / "flux2-dev"))
    index = json.loads((folder / "model_index.json").read_text())
    index.update(_class_name="Flux2Pipeline", tokenizer=["transformers", "PixtralProcessor"])
    (folder / "model_index.json").write_text(json.dumps(index))
    monkeypatch.setitem(sys.modules, "torchvision", None)  # absent, or a wheel that does not import
    capsys.readouterr()  # what building the tiny folder printed
    code = main(["generate", "--data-dir", str(studio.config.data_dir), "--model", str(folder), "--prompt", "x",
                 "--steps", "1", "--width", "64", "--height", "64"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs torchvision" in err and "pip install torchvision" in err
