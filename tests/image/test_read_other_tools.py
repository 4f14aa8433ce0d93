"""Reading parameters from other tools' images (A1111, Forge, NovelAI, Fooocus, SwarmUI, ComfyUI, InvokeAI) and
from odd metadata: what fills the form, what is refused and why."""

from __future__ import annotations

import json
import zlib

import gradio as gr
import piexif
import pytest
from PIL import Image, PngImagePlugin

from masuka.errors import InvalidInput
from masuka.image.metadata import parse_parameters, read_metadata, read_parameters, save_image
from masuka.image.upscale.job import upscale_image
from masuka.image.upscale.request import UpscaleRequest
from masuka.ui import image
from masuka.ui.image_modes import task_from_parameters
from tests.markdown_text import rendered, shown_text

SKIP = gr.skip()
#: read_image_parameters' outputs by name, in order (then the guides)
OUTPUTS = ("prompt", "negative", "model", "steps", "guidance", "width", "height", "seed", "loras", "summary",
           "strength", "mask_blur", "outpaint", "mode", "sampler", *image.GUIDE_FIELDS, "face_detail", "face_strength")
FORGE = ("a fox\nSteps: 20, Sampler: {sampler}, Schedule type: {schedule}, CFG scale: 1, Distilled CFG Scale: 3.5, "
         "Seed: 1, Size: 896x1152, Model hash: 4610115bb0, Model: {model}")


def png(path, **texts) -> str:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    return str(path)


def read(studio, path) -> dict:
    """What Read parameters fills, by output; its summary as the page shows it (Markdown rendered)."""
    values = dict(zip(OUTPUTS, image.read_image_parameters(studio, str(path))))
    return {**values, "summary": shown_text(values["summary"]), "markdown": values["summary"]}


def with_user_comment(path, comment) -> str:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    Image.new("RGB", (64, 64)).save(path, exif=exif.tobytes())
    return str(path)


def test_a_user_comment_that_is_a_number_is_no_parameters(studio, tmp_path):
    path = with_user_comment(tmp_path / "numbers.jpg", 1000)
    assert read_parameters(path) is None
    with pytest.raises(gr.Error, match="carries no generation parameters"):
        image.read_image_parameters(studio, path)
    result = upscale_image(studio, UpscaleRequest(path, scale=2))[0]
    assert parse_parameters(read_parameters(result.path)).extra["Postprocess upscale by"] == "2"


@pytest.mark.parametrize("body", ["le prompt".encode("utf-16-le"), "\ufeffbom prompt".encode("utf-16-le"),
                                  "be prompt".encode("utf-16-be")])
def test_a_unicode_user_comment_reads_in_either_byte_order(tmp_path, body):
    path = tmp_path / "comment.jpg"
    Image.new("RGB", (64, 64)).save(path, exif=piexif.dump({"Exif": {piexif.ExifIFD.UserComment: b"UNICODE\0" + body}}))
    assert read_parameters(path).endswith(" prompt") and read_parameters(path)[:2] in ("le", "bo", "be")


@pytest.mark.parametrize("prompt", ["一个女孩, 微笑", "Āron at dusk", "Ѐ", "一"])  # first character's low byte is 0
def test_a_prompt_whose_first_character_ends_in_a_zero_byte_reads_back_from_webp_jpeg_and_a1111s_writer(tmp_path,
                                                                                                       prompt):
    from piexif.helper import UserComment

    text = f"{prompt}\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: sdxl"
    for suffix, kind in ((".webp", "WebP"), (".jpg", "JPEG")):
        save_image(Image.new("RGB", (64, 64)), tmp_path / f"own{suffix}", text, kind)
        assert read_parameters(tmp_path / f"own{suffix}") == text, kind
    a1111 = tmp_path / "a1111.jpg"  # as A1111 writes a JPEG's parameters
    Image.new("RGB", (64, 64)).save(a1111, exif=piexif.dump(
        {"Exif": {piexif.ExifIFD.UserComment: UserComment.dump(text, encoding="unicode")}}))
    assert read_parameters(a1111) == text


def test_values_outside_the_form_are_left_and_named(studio, tmp_path):
    path = png(tmp_path / "odd.png", parameters="a fox\nSteps: 100000, Sampler: Euler, CFG scale: 99, "
                                               "Seed: 99999999999999999999999, Size: 100000x7")
    values = read(studio, path)
    assert [values[k] for k in ("steps", "guidance", "seed", "width", "height")] == [SKIP] * 5
    for named in ("Steps 100000", "CFG scale 99.0", "Seed 99999999999999999999999", "Size 100000x7"):
        assert f"{named} left as it was:" in values["summary"], named


def test_values_that_are_not_numbers_are_left_and_named(studio, tmp_path):
    path = png(tmp_path / "typo.png", parameters="a fox\nSteps: 1e3, Sampler: Euler, CFG scale: abc, Seed: 7.5, "
                                                "Size: 512X512, Model: [link](http://x)")
    values = read(studio, path)
    assert [values[k] for k in ("steps", "guidance", "seed", "width", "height")] == [SKIP] * 5
    summary = values["summary"]
    for named, reads in (("Steps 1e3", "a whole number"), ("CFG scale abc", "a number"),
                         ("Seed 7.5", "a whole number"), ("Size 512X512", "a size in whole pixels")):
        assert f"{named} left as it was: not {reads}" in summary, named
    assert "Model '[link](http://x)' is not available here" in summary, "the model's name shown as written"
    written = parse_parameters("a fox\nSteps: 1e3, Sampler: Euler, Seed: 2, Size: 64x64")
    assert written.unread == {"Steps": "1e3"} and "Steps" not in written.extra, "noted once, never written back"


def test_parameters_that_hold_markdown_show_as_written_and_make_no_link_or_picture(studio, tmp_path):
    """A picture's text is shown in a code block no line of it can close, and the names the notes quote are
    escaped: a crafted picture makes no link, and no image the browser would fetch."""
    text = ("a fox\n```\n![seen](http://x.y/t.png) [click](http://x.y)\n````\nSteps: 2, Sampler: [s](http://x.y), "
            "Seed: 1, Size: 64x64, Model: ![m](http://x.y/m.png), ADetailer model: <img src=x>, Lora hashes: a")
    values = read(studio, png(tmp_path / "crafted.png", parameters=text + " <lora:![l](http://x.y/l.png):1>"))
    page = rendered(values["markdown"])
    assert "<a " not in page and "<img" not in page, page
    assert text.split("\nSteps")[0] in values["summary"], "the text as written"
    assert "Model '![m](http://x.y/m.png)' is not available here" in values["summary"]
    assert "Sampler '[s](http://x.y)' left as it was" in values["summary"]


def test_a_seed_of_minus_one_fills_the_form_as_random(studio, tmp_path):
    path = png(tmp_path / "random.png", parameters="a fox\nSteps: 20, Sampler: Euler, Seed: -1, Size: 64x64")
    values = read(studio, path)
    assert values["seed"] == -1 and "left as it was" not in values["summary"]


def test_an_over_long_prompt_is_refused_with_its_length(studio, tmp_path):
    path = png(tmp_path / "long.png", parameters="word " * 3000 + "\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64")
    with pytest.raises(gr.Error, match="14,999 characters long, over the 4,000"):
        image.read_image_parameters(studio, path)
    long_field = png(tmp_path / "field.png", parameters="a fox\nSteps: 2, Seed: 1, Size: 64x64, Note: " + "x" * 50_000)
    summary = read(studio, long_field)["summary"]
    assert len(summary) < 6000 and "characters in all" in summary


def test_detail_upscale_refuses_to_borrow_an_over_long_prompt(studio, tiny_model, tmp_path):
    path = png(tmp_path / "long.png", parameters="word " * 3000 + "\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64")
    with pytest.raises(InvalidInput, match="own prompt is 14,999 characters long.*type a prompt"):
        upscale_image(studio, UpscaleRequest(path, scale=2, detail=True, model=str(tiny_model("flux")), steps=1))


def big_ztxt(path) -> str:
    """A PNG whose compressed text field inflates past Pillow's 1 MB limit."""
    Image.new("RGB", (64, 64)).save(path)
    data = path.read_bytes()
    body = b"parameters\0\0" + zlib.compress(b"x" * 2_000_000)
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    path.write_bytes(data[:33] + chunk + data[33:])  # after the 8-byte signature and the IHDR chunk
    return str(path)


def test_metadata_too_large_to_read_is_said_so(studio, tmp_path):
    path = big_ztxt(tmp_path / "big.png")
    with pytest.raises(gr.Error, match="metadata is too large to read"):
        image.read_image_parameters(studio, path)


def test_a_picture_whose_metadata_is_too_large_still_upscales(studio, tmp_path):
    """Only its text is unreadable: the pixels upscale (with no parameters borrowed) and the source is untouched."""
    path = big_ztxt(tmp_path / "big.png")
    before = (tmp_path / "big.png").read_bytes()
    result = upscale_image(studio, UpscaleRequest(path, scale=2, upscaler="Nearest"))[0]
    assert Image.open(result.path).size == (128, 128)
    assert "Postprocess upscale by: 2" in read_parameters(result.path)
    assert (tmp_path / "big.png").read_bytes() == before


def test_text_after_the_pixels_is_read(tmp_path):
    path = tmp_path / "late.png"
    Image.new("RGB", (64, 64)).save(path)
    data = path.read_bytes()
    body = b"parameters\0a fox\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64"
    chunk = len(body).to_bytes(4, "big") + b"tEXt" + body + zlib.crc32(b"tEXt" + body).to_bytes(4, "big")
    path.write_bytes(data[:-12] + chunk + data[-12:])  # before IEND
    assert read_parameters(path).startswith("a fox\nSteps: 2")


@pytest.mark.parametrize("fields, face", [
    ("ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, ADetailer denoising strength: 0.35", (True, 0.35)),
    ("ADetailer model: opencv-haar-frontalface, ADetailer denoising strength: 0.6", (True, 0.6)),  # MASUKA's own
    ("ADetailer model: mediapipe_face_full", (True, 0.4)),  # ADetailer's default strength
    ("ADetailer model: hand_yolov8n.pt, ADetailer denoising strength: 0.5", (SKIP, SKIP)),
    ("Model hash: 1234", (SKIP, SKIP)),
])
def test_adetailer_fields_fill_face_detail(studio, tmp_path, fields, face):
    """An image made with face detail (ADetailer's, or MASUKA's own, which writes ADetailer's fields) turns Face
    detail on at its strength; a hand or person detector is said not reproduced."""
    values = read(studio, png(tmp_path / "ad.png", parameters=f"a face\nSteps: 2, Seed: 1, Size: 64x64, {fields}"))
    assert (values["face_detail"], values["face_strength"]) == face
    assert ("hand_yolov8n.pt' is not reproduced" in values["summary"]) == ("hand" in fields)


def test_utf8_written_into_a_latin1_text_field_is_read_as_utf8(tmp_path):
    """Some tools write UTF-8 into a PNG's tEXt field, which the standard says is Latin-1: "café, 猫" must not come
    back as "cafÃ©, ç\x8c«"; genuine Latin-1 text stays as written."""
    path = tmp_path / "utf8.png"
    for text, raw in (("café, 猫", "café, 猫".encode()), ("crème brûlée", "crème brûlée".encode("latin-1"))):
        Image.new("RGB", (64, 64)).save(path)
        data = path.read_bytes()
        body = b"parameters\0" + raw + b"\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64"
        chunk = len(body).to_bytes(4, "big") + b"tEXt" + body + zlib.crc32(b"tEXt" + body).to_bytes(4, "big")
        path.write_bytes(data[:33] + chunk + data[33:])
        assert parse_parameters(read_parameters(path)).prompt == text


def test_forge_hires_schedule_and_distilled_guidance_fill_the_form(studio, tmp_path):
    hires = png(tmp_path / "hires.png", parameters="a cat\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, "
                "CFG scale: 7, Seed: 5, Size: 832x1216, Model: sdxl, Denoising strength: 0.4, Hires upscale: 1.5, "
                "Hires steps: 15, Hires upscaler: 4x-UltraSharp")
    values = read(studio, hires)
    assert (values["mode"], values["strength"], values["sampler"], values["model"]) == \
        ("Text", 0.75, "DPM++ 2M Karras", "sdxl"), "a text-to-image: its denoising strength is the second pass's"
    assert "Hires fix is not reproduced" in values["summary"]
    flux = read(studio, png(tmp_path / "flux.png", parameters=FORGE.format(sampler="Euler", schedule="Beta",
                                                                           model="flux-dev")))
    assert (flux["guidance"], flux["sampler"]) == (3.5, "Euler Beta")
    simple = read(studio, png(tmp_path / "simple.png", parameters=FORGE.format(sampler="Euler", schedule="Simple",
                                                                               model="flux-schnell")))
    assert (simple["guidance"], simple["sampler"]) == (1.0, "Euler")  # schnell takes no distilled guidance
    assert "Schedule type 'Simple'" in simple["summary"]
    automatic = read(studio, png(tmp_path / "auto.png", parameters=FORGE.format(sampler="Euler", schedule="Automatic",
                                                                                model="flux-dev")))
    assert automatic["sampler"] == "Euler" and "Schedule type 'Automatic'" not in automatic["summary"]


def test_a_model_not_available_here_leaves_the_model_field(studio, tmp_path):
    text = "a cat\nSteps: 30, Sampler: Euler, Seed: 5, Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0"
    values = read(studio, png(tmp_path / "other.png", parameters=text))
    assert values["model"] == SKIP
    assert "Model 'sd_xl_base_1.0' (hash 31e35c80fc) is not available here" in values["summary"]


FOOOCUS = {"Prompt": "a fox", "Negative Prompt": "bad", "Steps": 30, "Guidance Scale": 4, "Seed": "123",
           "Resolution": "(1024, 1024)", "Base Model": "juggernautXL_v8", "Version": "Fooocus v2.1.0"}
SWARM = {"sui_image_params": {"prompt": "a fox", "negativeprompt": "bad", "model": "sdxl", "seed": 5, "steps": 20,
                              "cfgscale": 7, "width": 1024, "height": 1024}, "sui_extra_data": {}}


@pytest.mark.parametrize("data", [FOOOCUS, {k.lower().replace(" ", "_"): v for k, v in FOOOCUS.items()}, SWARM])
def test_fooocus_and_swarmui_json_fill_the_form(studio, tmp_path, data):
    values = read(studio, png(tmp_path / "json.png", parameters=json.dumps(data)))
    assert [values[k] for k in ("prompt", "negative", "width", "height")] == ["a fox", "bad", 1024, 1024]
    assert values["steps"] in (20, 30) and values["seed"] in (5, 123)


def test_other_tools_are_named_and_novelai_is_converted(studio, tmp_path):
    with pytest.raises(gr.Error, match="made with ComfyUI: its workflow can't be read here"):
        image.read_image_parameters(studio, png(tmp_path / "c.png", prompt="{}", workflow='{"nodes": []}'))
    with pytest.raises(gr.Error, match="made with InvokeAI"):
        image.read_image_parameters(studio, png(tmp_path / "i.png", invokeai_metadata='{"positive_prompt": "a"}'))
    with pytest.raises(gr.Error, match=r"made with another tool \(JSON metadata\)"):
        image.read_image_parameters(studio, png(tmp_path / "j.png", parameters='{"what": 1}'))
    novelai = png(tmp_path / "n.png", Description="a fox, snow", Software="NovelAI", Comment=json.dumps(
        {"prompt": "a fox, snow", "steps": 28, "scale": 5, "seed": 99, "sampler": "k_euler_ancestral", "uc": "lowres"}))
    values = read(studio, novelai)
    assert [values[k] for k in ("prompt", "negative", "steps", "guidance", "seed", "width", "sampler")] == \
        ["a fox, snow", "lowres", 28, 5.0, 99, 64, "Euler a"]
    assert read_metadata(novelai).items["Software"] == "NovelAI"
    assert read_parameters(png(tmp_path / "t.png", parameters="{red|blue} fox\nSteps: 2, Seed: 1, Size: 64x64")) \
        .startswith("{red|blue} fox")  # a dynamic-prompts template is no JSON


def test_hires_fix_is_text_to_image():
    assert task_from_parameters({"Denoising strength": "0.4", "Hires upscale": "2"}) == (0.75, 4, "", "Text")
    assert task_from_parameters({"Denoising strength": "0.4", "Hires upscale": "2", "Mask blur": "4"})[3] == \
        "Inpaint/Outpaint"


def test_save_image_round_trip_still_reads(tmp_path):
    path = tmp_path / "own.webp"
    save_image(Image.new("RGB", (64, 64)), path, "a fox\nSteps: 2, Seed: 1, Size: 64x64", "WEBP")
    assert read_parameters(path) == "a fox\nSteps: 2, Seed: 1, Size: 64x64"
