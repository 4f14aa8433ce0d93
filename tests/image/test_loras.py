"""LoRAs: checked before use, applied with weights, refused when unusable."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput, NotFound
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.loras.files import inspect_lora
from masuka.loras.library import list_loras


def make(studio, model, loras=(), seed=3):
    request = ImageRequest(prompt="a castle", model=str(model), steps=2, width=64, height=64, seed=seed,
                           loras=list(loras))
    return np.asarray(Image.open(generate_images(studio, request, allow_any_path=True)[0].path), dtype=np.int16)


@pytest.mark.parametrize("architecture", ["flux", "sdxl"])
def test_lora_changes_the_output_and_weight_zero_matches_no_lora(studio, tiny_model, tiny_lora, architecture):
    model, lora = tiny_model(architecture), str(tiny_lora(architecture))
    plain = make(studio, model)
    styled = make(studio, model, [(lora, 1.0)])
    assert np.abs(plain - styled).mean() > 1.0
    assert np.array_equal(make(studio, model, [(lora, 0.0)]), plain)
    assert np.array_equal(make(studio, model), plain), "removing the LoRA restores the plain output"


def test_lora_is_recorded_in_row_and_png(studio, tiny_model, tiny_lora):
    lora = tiny_lora("flux")
    request = ImageRequest(prompt="a castle", model=str(tiny_model("flux")), steps=2, width=64, height=64, seed=1,
                           loras=[(str(lora), 0.7)])
    result = generate_images(studio, request, allow_any_path=True)[0]
    assert studio.store.get("generations", result.id)["loras"][0]["weight"] == 0.7
    assert parse_parameters(read_parameters(result.path)).loras == [(lora.stem, 0.7)]


def test_library_lists_files_dropped_in_the_lora_folder(studio, tiny_lora):
    shutil.copy(tiny_lora("sdxl"), studio.config.loras_dir / "mine.safetensors")
    (studio.config.loras_dir / "junk.safetensors").write_bytes(b"not a lora")
    rows = list_loras(studio, "local")
    assert [(r["name"], r["architecture"]) for r in rows] == [("mine", "sdxl")]


def test_lora_by_library_name(studio, tiny_model, tiny_lora):
    shutil.copy(tiny_lora("flux"), studio.config.loras_dir / "fox.safetensors")
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=1,
                           loras=[("fox", 1.0)])
    assert generate_images(studio, request)[0].path.is_file()


def test_lora_tags_in_the_prompt_are_loras_not_words(studio, tiny_model, tiny_lora):
    """A tag typed in the prompt works as the picker does, so the PNG's tag (read back, it turns the LoRA on)
    tells the truth; the text encoder never sees it."""
    shutil.copy(tiny_lora("flux"), studio.config.loras_dir / "fox.safetensors")
    base = dict(model=str(tiny_model("flux")), steps=2, width=64, height=64, seed=3)
    picked = generate_images(studio, ImageRequest(prompt="a castle", loras=[("fox", 0.8)], **base))[0]
    tagged = generate_images(studio, ImageRequest(prompt="a castle <lora:fox:0.8>", **base))[0]
    pixels = [np.asarray(Image.open(result.path), dtype=np.int16) for result in (picked, tagged)]
    assert np.array_equal(*pixels)
    written = parse_parameters(read_parameters(tagged.path))
    assert (written.prompt, written.loras) == ("a castle", [("fox", 0.8)])
    row = studio.store.get("generations", tagged.id)
    assert (row["prompt"], [(lora["name"], lora["weight"]) for lora in row["loras"]]) == ("a castle", [("fox", 0.8)])
    with pytest.raises(InvalidInput, match="LoRA 'nowhere' was not found"):
        generate_images(studio, ImageRequest(prompt="a castle <lora:nowhere:1>", **base))


def test_a_lora_given_twice_is_one_lora_at_the_sum_of_its_weights(studio, tiny_model, tiny_lora):
    """The LoRA picked and tagged (or listed twice, by name and by path) is applied once at the sum of its weights,
    as Forge stacks it, and the row, the PNG's tag and its Lora hashes record just that."""
    lora = studio.config.loras_dir / "fox.safetensors"
    shutil.copy(tiny_lora("flux"), lora)
    base = dict(model=str(tiny_model("flux")), steps=2, width=64, height=64, seed=3)
    summed = generate_images(studio, ImageRequest(prompt="a castle", loras=[("fox", 1.2)], **base))[0]
    twice = [generate_images(studio, request)[0] for request in (
        ImageRequest(prompt="a castle <lora:fox:0.7>", loras=[("fox", 0.5)], **base),
        ImageRequest(prompt="a castle", loras=[("fox", 0.5), (studio.config.relative(lora), 0.7)], **base))]
    for result in twice:
        assert np.array_equal(*(np.asarray(Image.open(r.path), dtype=np.int16) for r in (result, summed)))
        written = parse_parameters(read_parameters(result.path))
        assert (written.loras, written.extra["Lora hashes"].count("fox:")) == ([("fox", 1.2)], 1)
        assert [(row["name"], row["weight"]) for row in studio.store.get("generations", result.id)["loras"]] == [
            ("fox", 1.2)]
    with pytest.raises(InvalidInput, match="'fox' is given more than once and its weights add up to 4.5"):
        generate_images(studio, ImageRequest(prompt="a castle <lora:fox:2.5>", loras=[("fox", 2)], **base))


def test_architecture_detection(tiny_lora):
    assert inspect_lora(tiny_lora("flux")).architecture == "flux"
    assert inspect_lora(tiny_lora("sdxl")).architecture == "sdxl"
    assert inspect_lora(tiny_lora("flux")).rank == 4


def test_lora_for_another_architecture_is_refused(studio, tiny_model, tiny_lora):
    with pytest.raises(InvalidInput, match="made for SDXL"):
        make(studio, tiny_model("flux"), [(str(tiny_lora("sdxl")), 1.0)])
    assert studio.store.count("generations") == 0


def test_pickle_truncated_missing_and_outside_loras_are_refused(studio, tiny_model, tiny_lora, tmp_path):
    model = tiny_model("flux")
    pickle = tmp_path / "evil.safetensors"
    pickle.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle stream renamed .safetensors
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(tiny_lora("flux").read_bytes()[:-100])
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"PK\x03\x04")
    cases = [(pickle, InvalidInput, "not a safetensors"), (truncated, InvalidInput, "truncated"),
             (ckpt, InvalidInput, "must be a .safetensors"), (tmp_path / "nope.safetensors", InvalidInput, "not found")]
    for path, error, message in cases:
        with pytest.raises(error, match=message):
            make(studio, model, [(str(path), 1.0)])
    no_lora = tmp_path / "plain.safetensors"
    header = b'{"weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    no_lora.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 4)
    with pytest.raises(InvalidInput, match="no LoRA weights"):
        inspect_lora(no_lora)
    with pytest.raises(NotFound):
        inspect_lora(tmp_path / "absent.safetensors")
    assert studio.store.count("generations") == 0


def test_ui_paths_outside_the_data_dir_are_refused(studio, tiny_model, tiny_lora):
    request = ImageRequest(prompt="x", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           loras=[(str(tiny_lora("flux")), 1.0)])
    with pytest.raises(InvalidInput, match="was not found"):
        generate_images(studio, request)  # the UI/API path: allow_any_path is False
    request.loras = [("../../../etc/passwd", 1.0)]
    with pytest.raises(InvalidInput):
        generate_images(studio, request)
