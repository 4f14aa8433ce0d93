"""A1111 infotext and EXIF as other tools write and read them: piexif, JSON-quoted values, every LoRA tag form."""

from __future__ import annotations

import hashlib
import shutil
import struct

import pytest
from PIL import Image

from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import Parameters, format_parameters, parse_parameters, read_parameters, save_image
from masuka.loras.library import match_loras
from masuka.store import LOCAL_USER

# As AUTOMATIC1111 1.10 writes it (hires fix, LoRAs, a Civitai resource list, a dynamic-prompts template)
A1111_TEXT = r'''masterpiece, a cat <lora:one> <lora:two:0.6:0.9>, <lora:three:te=0.3:unet=0.7>
Negative prompt: lowres, "bad"
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.7, Hires prompt: "a,\nb caf\u00e9 <lora:hq:1>", Hires upscale: 2, Lora hashes: "one: 0123456789ab, two: ba9876543210", Civitai resources: [{"type":"lora","weight":0.8,"modelVersionId":1},{"type":"checkpoint","ids":[1,2],"modelVersionId":2}], Template: "a photo of {cat|dog}, 8k", Version: v1.10.1'''


def a1111_read(path) -> str | None:
    """What AUTOMATIC1111's ``modules/images.py`` (``read_info_from_image``) reads from a JPEG or WebP."""
    import piexif
    import piexif.helper

    with Image.open(path) as image:
        items = (image.info or {}).copy()
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        exif = piexif.load(items.pop("exif"))
        exif_comment = (exif or {}).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
        try:
            exif_comment = piexif.helper.UserComment.load(exif_comment)
        except ValueError:
            exif_comment = exif_comment.decode("utf8", errors="ignore")
        if exif_comment:
            geninfo = exif_comment
    return geninfo


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_jpeg_and_webp_parameters_read_in_a1111_as_written(tmp_path, image_format):
    text = "a café, “quoted”\nNegative prompt: blur\nSteps: 2, Sampler: Euler, CFG scale: 3, Seed: 5, Size: 64x64"
    path = tmp_path / f"image.{image_format.lower()}"
    save_image(Image.new("RGB", (64, 64), "teal"), path, text, image_format)
    assert a1111_read(path) == text
    assert read_parameters(path) == text


def test_a1111_infotext_reads_with_json_values_and_every_lora_form():
    p = parse_parameters(A1111_TEXT)
    assert p.prompt.startswith("masterpiece, a cat") and "<lora" not in p.prompt
    assert p.loras == [("one", 1.0), ("two", 0.9), ("three", 0.7)]
    assert p.negative_prompt == 'lowres, "bad"'
    assert (p.steps, p.sampler, p.guidance, p.seed, p.width, p.height, p.model) == \
        (20, "DPM++ 2M", 7.0, 1234, 512, 768, "v1-5")
    assert p.extra["Hires prompt"] == "a,\nb café <lora:hq:1>"
    assert p.extra["Lora hashes"] == "one: 0123456789ab, two: ba9876543210"
    assert p.extra["Civitai resources"].startswith('[{"type":"lora"') and p.extra["Civitai resources"].endswith("}]")
    assert p.extra["Template"] == "a photo of {cat|dog}, 8k"
    assert p.extra["Version"] == "v1.10.1"


def test_kept_fields_are_written_back_unchanged_and_newlines_are_quoted():
    written = format_parameters(parse_parameters(A1111_TEXT))
    settings = written.splitlines()[-1]
    for field in (r'Hires prompt: "a,\nb café <lora:hq:1>"', 'Lora hashes: "one: 0123456789ab, two: ba9876543210"',
                  'Civitai resources: [{"type":"lora","weight":0.8,"modelVersionId":1},{"type":"checkpoint",'
                  '"ids":[1,2],"modelVersionId":2}]', 'Template: "a photo of {cat|dog}, 8k"'):
        assert field in settings
    assert parse_parameters(written) == parse_parameters(A1111_TEXT)


def test_a_tag_with_words_for_weights_stays_in_the_prompt():
    p = parse_parameters("a <lora:x:strong> b <lora:y:dyn=4>\nSteps: 1, Seed: 2, Size: 64x64")
    assert p.prompt == "a <lora:x:strong> b" and p.loras == [("y", 1.0)]


def addnet_hash(path) -> str:
    """A1111's ``addnet_hash_safetensors``: SHA-256 of everything after the header, 12 hex digits."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + length:]).hexdigest()[:12]


def test_generated_lora_hash_is_a1111s_and_reading_it_back_finds_the_lora(studio, tiny_model, tiny_lora):
    library = studio.config.loras_dir / "fox.safetensors"
    shutil.copy(tiny_lora("flux"), library)
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=1,
                           loras=[("fox", 0.6)])
    p = parse_parameters(read_parameters(generate_images(studio, request)[0].path))
    assert p.extra["Lora hashes"] == f"fox: {addnet_hash(library)}"
    assert match_loras(studio, LOCAL_USER, p.loras, p.extra["Lora hashes"]) == ([("fox", 0.6)], [])


def test_loras_match_by_name_or_by_hash_and_the_rest_are_named_missing(studio, tiny_lora):
    shutil.copy(tiny_lora("flux"), studio.config.loras_dir / "renamed.safetensors")
    shutil.copy(tiny_lora("sdxl"), studio.config.loras_dir / "castle.safetensors")
    hashes = f"fox: {addnet_hash(tiny_lora('flux'))}, ghost: 0123456789ab"
    found, missing = match_loras(studio, LOCAL_USER, [("castle", 0.5), ("fox", 0.8), ("ghost", 1.0)], hashes)
    assert found == [("castle", 0.5), ("renamed", 0.8)]
    assert missing == ["ghost"]


def test_read_parameters_in_the_app_fills_the_loras_and_names_the_missing(live_app, tiny_lora, tmp_path):
    from gradio_client import Client, handle_file

    app = live_app()
    shutil.copy(tiny_lora("flux"), app.studio.config.loras_dir / "fox.safetensors")
    path = tmp_path / "other-tool.png"
    save_image(Image.new("RGB", (64, 64)), path, "a fox <lora:fox:0.6> <lora:ghost:te=1:unet=0.4>\n"
               "Steps: 2, Sampler: Euler, CFG scale: 3, Seed: 9, Size: 64x64")
    outputs = Client(app.url, verbose=False).predict(handle_file(str(path)), api_name="/read_parameters")
    prompt, loras, summary = outputs[0], outputs[8], outputs[9]
    assert prompt == "a fox" and loras == ["fox:0.6"]
    assert "Not in your LoRA library:** ghost" in summary


def test_a_tiny_lora_weight_is_written_without_exponent_and_read_back():
    text = format_parameters(Parameters(prompt="a fox", steps=2, seed=1, loras=[("style", 0.00001), ("ink", 0.8)]))
    assert text.startswith("a fox <lora:style:0.00001> <lora:ink:0.8>")
    assert parse_parameters(text).loras == [("style", 0.00001), ("ink", 0.8)]
    assert parse_parameters("a fox <lora:style:1e-05>\nSteps: 2, Seed: 1, Size: 64x64").loras == [("style", 1e-05)]
