"""Image-to-image and inpainting on the tiny pipelines: the same weights through from_pipe, recorded like any image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images, plan_request
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.tasks import MIN_STRENGTH, InitImage, auto_task_class, fill_masked, picture_size
from masuka.models import architectures
from masuka.models.catalog import ModelSpec
from masuka.ui.image_modes import fitted_size
from tests.image.conftest import striped_pictures


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)


def run(studio, model, **kw):
    values = dict(prompt="a harbour at dusk", model=str(model), steps=2, seed=5)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))[0]


def derived(studio, task):
    """The class of the task pipeline made from the loaded pipeline."""
    return type(studio.models.get(studio.models.key, lambda: None).masuka_tasks[task]).__name__


@pytest.mark.parametrize("architecture", ["flux", "sd3", "sdxl", "qwen_image", "z_image"])
def test_img2img_starts_from_the_picture_and_is_recorded(studio, tiny_model, pictures, architecture):
    photo, _mask = pictures
    model = tiny_model(architecture)
    plain = run(studio, model, width=64, height=64)
    from_photo = run(studio, model, width=64, height=64, init=InitImage(photo, strength=0.5))
    assert Image.open(from_photo.path).size == (64, 64)
    assert not np.array_equal(pixels(plain), pixels(from_photo))
    row = studio.store.get("generations", from_photo.id)
    assert row["status"] == "completed"
    assert (row["params"]["task"], row["params"]["strength"]) == ("img2img", 0.5)
    kept = studio.config.absolute(row["params"]["init_image"])  # copied into the data dir, so Reuse can redo it
    assert kept.parent.name == "inputs" and Image.open(kept).tobytes() == Image.open(photo).convert("RGB").tobytes()
    assert parse_parameters(read_parameters(from_photo.path)).extra["Denoising strength"] == "0.5"
    assert studio.models.loads == 1, "the img2img pipeline shares the loaded weights"
    assert derived(studio, "img2img") == architectures.require(architecture).pipelines["img2img"]
    weak, strong = (run(studio, model, steps=4, width=64, height=64, init=InitImage(photo, strength=strength))
                    for strength in (0.25, 1.0))
    assert not np.array_equal(pixels(weak), pixels(strong)), "the strength reaches the pipeline"


def test_flux2_img2img_is_refused_before_the_model_loads(studio, tiny_model, pictures):
    """diffusers has no FLUX.2 image-to-image pipeline: the text-to-image one would edit instead, ignoring Strength."""
    with pytest.raises(InvalidInput, match=r"\(FLUX.2\) has no image-to-image pipeline.*Inpaint/Outpaint.*Edit"):
        run(studio, tiny_model("flux2"), width=64, height=64, init=InitImage(pictures[0], strength=0.5))
    assert not studio.store.count("generations") and studio.models.loads == 0


def test_img2img_size_defaults_to_the_picture_rounded_to_the_model(studio, tiny_model, pictures):
    result = run(studio, tiny_model("sdxl"), init=InitImage(pictures[0], strength=0.6))
    assert Image.open(result.path).size == (96, 80)


def test_a_repaint_too_weak_for_one_step_takes_the_steps_it_needs(studio, tiny_model, pictures):
    """3 steps at strength 0.3 would run none (diffusers fails on 0 steps): the steps are raised to the fewest that
    run one, and the row and the parameters say so."""
    photo, mask = pictures
    for init, steps in ((InitImage(photo, strength=0.3), 4), (InitImage(photo, strength=0.5, mask=mask), 2)):
        result = run(studio, tiny_model("sdxl"), steps=steps - 1, init=init)
        assert Image.open(result.path).size == (96, 80)
        assert studio.store.get("generations", result.id)["steps"] == steps
        assert parse_parameters(read_parameters(result.path)).steps == steps


@pytest.mark.parametrize("architecture", ["flux", "sdxl", "flux2", "qwen_image", "z_image"])
def test_inpaint_changes_only_the_masked_part(studio, tiny_model, pictures, architecture):
    photo, mask = pictures
    result = run(studio, tiny_model(architecture), init=InitImage(photo, strength=1.0, mask=mask, mask_blur=2))
    out = pixels(result)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
    inside = np.asarray(Image.open(mask)) > 0
    blurred_reach = Image.open(mask).filter(ImageFilter.MaxFilter(13))  # the mask grown past its 2 px blur
    outside = np.asarray(blurred_reach) == 0
    assert np.array_equal(out[outside], original[outside]), "pixels outside the mask come back identical"
    assert np.abs(out[inside] - original[inside]).mean() > 5, "the masked part is repainted"
    row = studio.store.get("generations", result.id)
    assert (row["params"]["task"], row["params"]["mask_blur"]) == ("inpaint", 2)
    assert parse_parameters(read_parameters(result.path)).extra["Mask blur"] == "2"
    assert derived(studio, "inpaint") == architectures.require(architecture).pipelines["inpaint"]


@pytest.mark.parametrize("blur", [0, 4, 8])
def test_the_mask_blur_feathers_within_the_mask_and_never_changes_a_pixel_outside(studio, tiny_model, tmp_path,
                                                                                  blur):
    Image.new("RGB", (96, 80), (120, 140, 160)).save(tmp_path / "flat.png")
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (24, 20, 72, 60))
    mask.save(tmp_path / "square.png")
    result = run(studio, tiny_model("sdxl"), init=InitImage(tmp_path / "flat.png", strength=1.0,
                                                            mask=tmp_path / "square.png", mask_blur=blur))
    out = pixels(result)
    outside = np.asarray(mask) == 0
    assert out.shape == (80, 96, 3)
    assert (out[outside] == (120, 140, 160)).all(), f"every pixel outside the mask is kept at blur {blur}"
    assert (out[~outside] != (120, 140, 160)).any(axis=1).mean() > 0.5, "the masked part is repainted"


def test_inpaint_keeps_the_pictures_own_size_and_every_outside_pixel_off_the_models_multiple(studio, tiny_model,
                                                                                             tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (75, 100, 3), dtype=np.uint8)  # not a multiple of 8
    Image.fromarray(noise).save(tmp_path / "noise.png")
    mask = Image.new("L", (100, 75), 0)
    mask.paste(255, (24, 20, 72, 60))
    mask.save(tmp_path / "square.png")
    result = run(studio, tiny_model("sdxl"), init=InitImage(tmp_path / "noise.png", strength=1.0,
                                                            mask=tmp_path / "square.png", mask_blur=4))
    out = pixels(result)
    outside = np.asarray(mask) == 0
    assert out.shape == (75, 100, 3), "the output has the picture's own size"
    assert (out[outside] == noise[outside]).all(), "every pixel outside the mask comes back identical"
    assert (out[~outside] != noise[~outside]).any(axis=1).mean() > 0.5, "the masked part is repainted"


@pytest.mark.parametrize("change, message", [
    (dict(strength=0), "strength"), (dict(strength=1.5), "strength"), (dict(mask_blur=99), "mask blur"),
    (dict(mask="black"), "all black"), (dict(path="text"), "not a readable image"),
    (dict(path="missing"), "does not exist"),
])
def test_bad_init_images_are_refused_with_the_reason(studio, tiny_model, pictures, tmp_path, change, message):
    photo, _mask = pictures
    Image.new("L", (96, 80), 0).save(tmp_path / "black.png")
    (tmp_path / "text.png").write_text("not a picture")
    files = {"black": tmp_path / "black.png", "text": tmp_path / "text.png", "missing": tmp_path / "nope.png"}
    values = {"path": photo, "strength": 0.5, **change}
    values = {key: files.get(value, value) if isinstance(value, str) else value for key, value in values.items()}
    with pytest.raises(InvalidInput, match=message) as refused:
        run(studio, tiny_model("flux"), width=64, height=64, init=InitImage(**values))
    assert not studio.store.count("generations")
    assert str(tmp_path) not in str(refused.value)  # the server's folders are not told (an upload's temp path)


def test_cli_inpaints_with_a1111_s_options_and_explains_a_mask_without_an_image(capsys, tmp_path, tiny_model, pictures):
    photo, mask = pictures
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["generate", *data, "--model", str(tiny_model("flux")), "--prompt", "a boat", "--steps", "1",
                 "--init-image", str(photo), "--strength", "0.9", "--mask", str(mask), "--mask-blur", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert Image.open(json.loads(out)["images"][0]).size == (96, 80)
    code = main(["generate", *data, "--model", str(tiny_model("flux")), "--prompt", "a boat", "--mask", str(mask)])
    assert code == 2 and "--mask needs --init-image" in capsys.readouterr().err

    code = main(["generate", *data, "--model", str(tiny_model("flux")), "--prompt", "a lake", "--steps", "1",
                 "--init-image", str(photo), "--strength", "0.9", "--mask", str(mask), "--mask-blur", "0",
                 "--invert-mask", "--fill-masked", "--only-masked", "6", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    made = json.loads(out)
    outside = np.asarray(Image.open(mask).convert("L")) == 0
    original = np.asarray(Image.open(photo).convert("RGB"))
    result = np.asarray(Image.open(made["images"][0]).convert("RGB"))
    assert (result[~outside] == original[~outside]).all() and (result[outside] != original[outside]).any(), \
        "A1111's Inpaint not masked: the black part is repainted"
    extra = parse_parameters(read_parameters(made["images"][0])).extra
    assert (extra["Mask mode"], extra["Masked content"], extra["Inpaint area"], extra["Masked area padding"]) == (
        "Inpaint not masked", "fill", "Only masked", "6")
    code = main(["history", "show", *data, f"g{made['ids'][0]}", "--json"])
    params = json.loads(capsys.readouterr().out)["params"]
    assert code == 0
    assert (params["invert_mask"], params["fill_masked"], params["only_masked_padding"]) == (True, True, 6)


@pytest.mark.parametrize("size", [("100", "84"), ("96", "80")])
def test_cli_inpaint_takes_the_pictures_own_or_default_size(capsys, tmp_path, tiny_model, size):
    """A script that always passes the picture's size (or the size the app runs it at) gets the default."""
    photo, mask = striped_pictures(tmp_path, 100, 84, (24, 16, 71, 63))
    code = main(["generate", "--data-dir", str(tmp_path / "data"), "--model", str(tiny_model("flux")), "--prompt",
                 "a boat", "--steps", "1", "--init-image", str(photo), "--mask", str(mask), "--width", size[0],
                 "--height", size[1], "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert Image.open(json.loads(out)["images"][0]).size == (100, 84)


@pytest.mark.parametrize("size, got", [(["--width", "128", "--height", "128"], "--width 128 --height 128"),
                                       (["--height", "64"], "--height 64")])
def test_cli_inpaint_refuses_another_size_rather_than_stretching_the_picture(capsys, tmp_path, tiny_model, size,
                                                                               got):
    photo, mask = striped_pictures(tmp_path, 100, 84, (24, 16, 71, 63))
    model = str(tiny_model("flux"))
    capsys.readouterr()  # what building the tiny model printed (the first test of a worker to ask builds it)
    code = main(["generate", "--data-dir", str(tmp_path / "data"), "--model", model, "--prompt", "a boat",
                 "--init-image", str(photo), "--mask", str(mask), *size])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == ("error: Inpainting makes an image of the picture's size (100x84, run at 96x80: a multiple of 16) "
                   "so the rest comes back as it was; leave out --width and --height or give that size "
                   f"(got {got}).\n")


def test_generate_image_endpoint_takes_an_init_image_and_mask(live_app, tiny_model, pictures):
    from gradio_client import Client, handle_file

    photo, mask = pictures
    app = live_app()
    client = Client(app.url, verbose=False)
    gallery, seeds, _status = client.predict(prompt="a boat", model=str(tiny_model("flux")), steps=1, seed=4,
                                             width=96, height=80, init_image=handle_file(str(photo)), strength=1.0,
                                             mask=handle_file(str(mask)), api_name="/generate_image")
    assert seeds == "4" and Image.open(gallery[0]["image"]).size == (96, 80)
    row = app.studio.store.find("generations")[0]
    assert row["params"]["task"] == "inpaint" and row["params"]["strength"] == 1.0
    kept = app.studio.config.absolute(row["params"]["mask"])  # the upload is copied into the user's inputs
    assert kept.is_relative_to(app.studio.config.outputs_dir) and kept.parent.name == "inputs"
    with pytest.raises(Exception, match="needs the starting image"):
        client.predict(prompt="a boat", model=str(tiny_model("flux")), mask=handle_file(str(mask)),
                       api_name="/generate_image")


def test_fill_starts_the_masked_part_from_the_surrounding_colours(studio, tiny_model, pictures):
    photo, mask = pictures
    start = fill_masked(Image.open(photo).convert("RGB"), Image.open(mask).convert("L"))
    inside = np.asarray(Image.open(mask)) > 0
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
    filled = np.asarray(start, dtype=np.int16)
    assert np.array_equal(filled[~inside], original[~inside])
    assert filled[inside].std(axis=0).max() < original[inside].std(axis=0).max() / 2, "stripes smoothed away"
    model = tiny_model("flux")
    kept = run(studio, model, init=InitImage(photo, strength=0.5, mask=mask, mask_blur=0))
    refilled = run(studio, model, init=InitImage(photo, strength=0.5, mask=mask, mask_blur=0, fill_masked=True))
    assert not np.array_equal(pixels(kept), pixels(refilled))
    assert np.array_equal(pixels(refilled)[~inside], original[~inside])


@pytest.fixture(scope="module")
def fill_model(tmp_path_factory):
    """FLUX.1 Fill in miniature: a FluxFillPipeline folder whose transformer reads the masked picture and mask."""
    from masuka.models.synthetic import save_tiny_pipeline

    return save_tiny_pipeline("flux", tmp_path_factory.mktemp("tiny-fill"), task="fill")


def test_a_fill_model_inpaints_with_its_own_pipeline_and_keeps_the_rest(studio, fill_model, pictures):
    photo, mask = pictures
    result = run(studio, fill_model, init=InitImage(photo, strength=1.0, mask=mask, mask_blur=2))
    out, original = pixels(result), np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
    outside = np.asarray(Image.open(mask).filter(ImageFilter.MaxFilter(13))) == 0
    assert np.array_equal(out[outside], original[outside]), "pixels outside the mask come back identical"
    row = studio.store.get("generations", result.id)
    assert row["params"]["task"] == "inpaint" and row["params"]["architecture"] == "flux"
    loaded = studio.models.get(studio.models.key, lambda: None)
    assert type(loaded).__name__ == "FluxFillPipeline" and "masuka_tasks" not in loaded.__dict__, \
        "no inpaint pipeline was derived from it"
    grown = run(studio, fill_model, init=InitImage(photo, strength=1.0, outpaint=(16, 0, 0, 0)))
    assert Image.open(grown.path).size == (112, 80), "outpainting runs on the fill model too"
    assert studio.models.loads == 1, "the fill pipeline itself repaints: nothing else is loaded"


@pytest.mark.parametrize("init", [None, "img2img"])
def test_a_fill_model_refuses_what_it_cannot_do(studio, fill_model, pictures, init):
    start = None if init is None else InitImage(pictures[0], strength=0.5)
    with pytest.raises(InvalidInput, match="is an inpaint model: give it a starting image and a mask"):
        run(studio, fill_model, width=64, height=64, init=start)
    assert not studio.store.count("generations")


def test_pictures_are_read_as_they_are_seen(tmp_path):
    """A phone photo turned by its EXIF orientation is used upright, and a 16-bit one keeps its tones."""
    from masuka.image.tasks import open_picture

    sideways = Image.new("RGB", (128, 64), "white")
    exif = sideways.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    sideways.save(tmp_path / "phone.jpg", exif=exif)
    assert open_picture(tmp_path / "phone.jpg", "photo").size == (64, 128)
    ramp = Image.fromarray(np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (96, 1)))
    ramp.save(tmp_path / "ramp16.png")
    grey = np.asarray(open_picture(tmp_path / "ramp16.png", "photo").convert("RGB"), dtype=float)
    assert 120 < grey.mean() < 136 and grey[:, 0].max() < 5 and grey[:, -1].min() > 250


def test_a_mask_of_another_shape_than_the_picture_is_refused(studio, tiny_model, pictures, tmp_path):
    photo, _mask = pictures  # 96x80
    Image.new("L", (40, 10), 255).save(tmp_path / "strip.png")
    with pytest.raises(InvalidInput, match="The mask is 40x10 but the picture is 96x80"):
        generate_images(studio, ImageRequest(prompt="x", model=str(tiny_model("flux")), steps=1,
                                             init=InitImage(photo, 1.0, tmp_path / "strip.png")))
    Image.new("L", (48, 40), 255).save(tmp_path / "half.png")  # the same shape at half the size: taken
    (result,) = generate_images(studio, ImageRequest(prompt="x", model=str(tiny_model("flux")), steps=1,
                                                     init=InitImage(photo, 1.0, tmp_path / "half.png")))
    assert Image.open(result.path).size == (96, 80)


def test_a_picture_too_large_for_pillow_to_open_is_refused(studio, tiny_model, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000)).save(bomb)  # 196 MP in a small file: Pillow's decompression-bomb guard
    with pytest.raises(InvalidInput, match="The init image is too large; at most 64 megapixels"):
        run(studio, tiny_model("sdxl"), init=InitImage(bomb, strength=0.5))
    assert not studio.store.count("generations")
    wide = tmp_path / "wide.png"
    Image.new("1", (9000, 7200)).save(wide)  # each side is named by the limit, not just 8000 a side
    with pytest.raises(InvalidInput, match=r"\(9000x7200\); at most 64 megapixels \(8000x8000, or 9600x6600"):
        run(studio, tiny_model("sdxl"), init=InitImage(wide, strength=0.5))


def test_a_24_mp_phone_photo_starts_an_image_and_is_kept_as_it_came_less_its_exif(studio, tiny_model, tmp_path):
    """iPhones save 24 MP photos (5712x4284) since the iPhone 15: one is a starting picture like any other, and the
    copy its history row keeps is the JPEG it is (a PNG of it was five times the size and took seconds to write),
    less where it was taken. One turned by its EXIF orientation is kept upright."""
    import piexif

    def exif(orientation: int) -> bytes:
        return piexif.dump({"0th": {piexif.ImageIFD.Make: b"Phone", piexif.ImageIFD.Orientation: orientation},
                            "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((48, 1),)}})

    photo = Image.new("RGB", (5712, 4284), (40, 90, 160))
    photo.paste((230, 200, 60), (0, 0, 2856, 4284))  # a yellow left half
    photo.save(tmp_path / "upright.jpg", quality=80, exif=exif(1))
    photo.rotate(90, expand=True).save(tmp_path / "sideways.jpg", quality=80, exif=exif(6))
    copies = []
    for name in ("upright.jpg", "sideways.jpg"):
        made = run(studio, tiny_model("sdxl"), width=128, height=96, init=InitImage(tmp_path / name, strength=0.3))
        copies.append(studio.config.absolute(studio.store.get("generations", made.id)["params"]["init_image"]))
        with Image.open(copies[-1]) as copy:
            assert (copy.format, copy.size, copies[-1].suffix) == ("JPEG", (5712, 4284), ".jpg")
            assert not copy.getexif() and copy.getpixel((100, 100))[2] < 120, "no EXIF, upright: yellow on the left"
    with Image.open(tmp_path / "upright.jpg") as given, Image.open(copies[0]) as copy:
        assert np.array_equal(np.asarray(copy), np.asarray(given)), "the upright photo's own pixels, not re-encoded"


@pytest.fixture(scope="module")
def sdxl_pag_model(tmp_path_factory):
    """A tiny SDXL folder saved as ``StableDiffusionXLPAGPipeline``: a class of no known architecture, whose task
    classes diffusers' AutoPipeline mappings name."""
    import diffusers

    from masuka.models.synthetic import tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny-sdxl-pag")
    diffusers.StableDiffusionXLPAGPipeline(**tiny_pipeline("sdxl").components).save_pretrained(folder)
    return folder


def test_a_model_of_no_known_architecture_gets_diffusers_task_class_without_a_throwaway_pipeline(
        studio, sdxl_pag_model, pictures, monkeypatch):
    """The task class is looked up in diffusers' AutoPipeline mappings: the one pipeline built is the one that
    runs; a class the mappings have no task class for is refused with the reason."""
    import functools

    import diffusers

    photo, _mask = pictures
    cls = diffusers.StableDiffusionXLPAGImg2ImgPipeline
    built, init = [], cls.__init__

    @functools.wraps(init)
    def counted(self, *args, **kwargs):
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", counted)
    result = run(studio, sdxl_pag_model, width=64, height=64, init=InitImage(photo, strength=0.5))
    assert result.path.is_file() and derived(studio, "img2img") == cls.__name__
    assert built == [cls.__name__]
    with pytest.raises(InvalidInput, match="no inpainting or outpainting pipeline in diffusers"):
        auto_task_class("StableDiffusion3PAGPipeline", "inpaint")


def test_a_picture_past_the_sides_limits_keeps_its_shape_or_is_refused(studio, tiny_model, tmp_path, capsys):
    """Both sides scale by one factor into 64-2048 before rounding to the multiple (a 4032x3024 photo is not made
    square), and down to about the model's own pixels where the picture has more (a 3000x1000 picture runs at
    1768x584 for a 1024x1024 model); a shape no size there has (4000x64) is refused, naming the picture and the
    limits."""
    assert picture_size((4032, 3024), 8, 64, 2048) == (2048, 1536)
    assert picture_size((3000, 1000), 8, 64, 2048) == (2048, 680)
    assert picture_size((8, 8), 16, 64, 2048) == (64, 64) and picture_size((100, 32), 16, 64, 2048) == (192, 64)
    with pytest.raises(InvalidInput, match=r"^The init image is 4000x64: .* 64-2048 pixels a side"):
        picture_size((4000, 64), 8, 64, 2048, "init image")
    model = str(tiny_model("sdxl"))
    Image.new("RGB", (3000, 1000), "navy").save(tmp_path / "wide.png")
    plan = plan_request(studio, ImageRequest(prompt="a boat", model=model, init=InitImage(tmp_path / "wide.png", 0.5)))
    assert (plan.width, plan.height) == (1768, 584)
    assert picture_size((4032, 3024), 8, 64, 2048, pixels=1024 * 1024) == (1176, 880)
    assert picture_size((900, 600), 8, 64, 2048, pixels=1024 * 1024) == (896, 600), "a smaller one keeps its size"
    Image.new("RGB", (4000, 64), "navy").save(tmp_path / "strip.png")
    code = main(["generate", "--data-dir", str(tmp_path / "data"), "--model", model, "--prompt", "a boat",
                 "--init-image", str(tmp_path / "strip.png"), "--strength", "0.5"])
    assert code == 2 and "The init image is 4000x64" in capsys.readouterr().err
    with pytest.raises(InvalidInput, match="The picture is 4000x64"):
        fitted_size(str(tmp_path / "strip.png"), ModelSpec("m", "m", None))


def test_a_large_photo_runs_at_the_model_s_own_pixels_and_an_inpaint_comes_back_at_its_size(studio, tiny_model,
                                                                                           tmp_path):
    """A 12 MP photo's default size is its shape at about the model's megapixel, not 2048x1536; inpainted, the
    result is scaled back onto the photo at its own size."""
    Image.new("RGB", (4032, 3024), "olive").save(tmp_path / "photo.jpg", quality=80)
    mask = Image.new("L", (4032, 3024), 0)
    ImageDraw.Draw(mask).rectangle((1000, 1000, 2000, 2000), fill=255)
    mask.save(tmp_path / "mask.png")
    model = str(tiny_model("flux"))
    img2img = plan_request(studio, ImageRequest(prompt="x", model=model, init=InitImage(tmp_path / "photo.jpg", 0.5)))
    assert (img2img.width, img2img.height) == (1168, 880)
    inpaint = plan_request(studio, ImageRequest(prompt="x", model=model, init=InitImage(
        tmp_path / "photo.jpg", 0.5, tmp_path / "mask.png")))
    assert (inpaint.width, inpaint.height) == (1168, 880) and inpaint.task.original.size == (4032, 3024)


def test_only_masked_on_a_large_photo_repaints_the_part_cut_from_the_full_photo(studio, tiny_model, tmp_path):
    """Only masked on a photo larger than the run: the part around the mask is cut from the photo at its own size
    and repainted at the run size (diffusers' own crop would take it from the photo scaled down, at a third of the
    resolution here), then put back in its place; every pixel outside the mask comes back as it was."""
    from masuka.image.tasks import task_kwargs

    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    photo.save(tmp_path / "photo.png")
    mask = Image.new("L", (1600, 1200), 0)
    ImageDraw.Draw(mask).rectangle((760, 560, 839, 619), fill=255)
    mask.save(tmp_path / "mask.png")
    init = InitImage(tmp_path / "photo.png", 0.9, tmp_path / "mask.png", mask_blur=0, only_masked_padding=16)
    request = ImageRequest(prompt="a stone", model=str(tiny_model("flux")), steps=1, seed=2, init=init)
    task = plan_request(studio, request).task
    left, top, right, bottom = task.box
    assert task.image.size == (1168, 880) and "padding_mask_crop" not in task_kwargs(task)
    assert left <= 760 - 16 and top <= 560 - 16 and right >= 840 + 16 and bottom >= 620 + 16
    assert right - left < 300, "a part around the mask, not the whole photo"
    assert np.array_equal(np.asarray(task.image), np.asarray(photo.crop(task.box).resize((1168, 880),
                                                                                         Image.Resampling.LANCZOS)))
    (result,) = generate_images(studio, request)
    made = np.asarray(Image.open(result.path).convert("RGB"))
    inside = np.asarray(mask) > 0
    assert made.shape == (1200, 1600, 3) and np.array_equal(made[~inside], np.asarray(photo)[~inside])
    assert (made[inside] != np.asarray(photo)[inside]).any()


def test_a_transparent_starting_picture_is_flattened_on_white_as_a1111_flattens_it(tmp_path):
    """What lies under a transparent pixel (often black, whatever the tool left there) is not the picture: the
    pipeline starts from white there, as A1111's default background colour for img2img; the canvas's own picture
    reaches MASUKA as the browser sent it (with its alpha), so this holds there too."""
    from masuka.image.tasks import prepare

    picture = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # black, fully transparent
    picture.paste((200, 30, 30, 255), (0, 0, 32, 64))  # an opaque red left half
    picture.save(tmp_path / "cutout.png")
    task = prepare(InitImage(tmp_path / "cutout.png", 0.5), 64, 64, False)
    assert task.image.mode == "RGB" and task.image.getpixel((48, 32)) == (255, 255, 255)
    assert task.image.getpixel((16, 32)) == (200, 30, 30)


def test_a_size_the_caller_gives_is_used_for_a_picture_of_any_shape(studio, tiny_model, tmp_path):
    """A1111 clients always send width and height: a 4000x100 picture is read at the size given, not refused for
    its shape; with a side left out the size still comes from the picture (and such a shape is refused)."""
    model = str(tiny_model("sdxl"))
    Image.new("RGB", (4000, 100), "gray").save(tmp_path / "pano.png")
    init = InitImage(tmp_path / "pano.png", 0.5)
    plan = plan_request(studio, ImageRequest(prompt="a boat", model=model, width=2048, height=64, init=init))
    assert (plan.width, plan.height) == (2048, 64) and plan.task.image.size == (2048, 64)
    with pytest.raises(InvalidInput, match="The init image is 4000x100: its shape does not fit"):
        plan_request(studio, ImageRequest(prompt="a boat", model=model, width=2048, init=init))


def test_an_inpaint_records_the_size_it_saves_and_reuse_remakes_it(studio, tiny_model, tmp_path):
    """Pasted back onto its 100x84 picture, an inpaint (run at 96x80) records 100x84 in its row and PNG; Reuse of
    that row in the Inpaint/Outpaint mode runs at 96x80 again and remakes the same image."""
    from masuka.history.actions import reuse_parameters
    from masuka.ui.image import GENERATE_FIELDS, image_request
    from masuka.ui.image_modes import reuse_fields

    photo, mask = striped_pictures(tmp_path, 100, 84, (24, 16, 71, 63))
    result = run(studio, tiny_model("flux"), init=InitImage(photo, strength=0.8, mask=mask))
    row = studio.store.get("generations", result.id)
    parameters = parse_parameters(read_parameters(result.path))
    assert Image.open(result.path).size == (row["width"], row["height"]) == (parameters.width, parameters.height) \
        == (100, 84)
    fields = reuse_fields(reuse_parameters(studio, "local", False, f"g{row['id']}")[1])
    again = generate_images(studio, image_request("local", *[fields.get(name) for name in GENERATE_FIELDS]))[0]
    assert np.array_equal(pixels(again), pixels(result)), "Reuse remakes the same image"


def test_the_strength_has_one_lower_limit_everywhere(studio, tiny_model, pictures):
    """The domain's least strength is the form's slider minimum and step (the API takes the slider's range); below
    it the CLI and the REST APIs are refused alike."""
    from masuka.ui.app import build_app

    (slider,) = [block for block in build_app(studio).blocks.values() if getattr(block, "label", None) == "Strength"]
    assert slider.minimum == slider.step == MIN_STRENGTH == 0.01
    model = str(tiny_model("sdxl"))
    with pytest.raises(InvalidInput, match=r"must be at least 0.01 and at most 1 \(got 0.005\)"):
        plan_request(studio, ImageRequest(prompt="a boat", model=model, init=InitImage(pictures[0], 0.005)))
    plan = plan_request(studio, ImageRequest(prompt="a boat", model=model, steps=4,
                                             init=InitImage(pictures[0], MIN_STRENGTH)))
    assert plan.steps == 100, "the steps raised so that one runs"


@pytest.mark.parametrize("scale", [0.5, 2])
@pytest.mark.parametrize("blur", [0, 8])
def test_a_mask_of_another_size_repaints_only_the_part_it_covers(studio, tiny_model, tmp_path, scale, blur):
    """A mask at half or double the picture's size covers the same box: no pixel outside it changes at any blur (a
    Lanczos resize rang around the box, and every faint non-zero pixel of the ring was repainted)."""
    Image.new("RGB", (96, 80), (120, 140, 160)).save(tmp_path / "flat.png")
    box = (24, 20, 72, 60)  # in the picture's pixels
    mask = Image.new("L", (int(96 * scale), int(80 * scale)), 0)
    mask.paste(255, tuple(int(side * scale) for side in box))
    mask.save(tmp_path / "mask.png")
    result = run(studio, tiny_model("sdxl"), init=InitImage(tmp_path / "flat.png", strength=1.0,
                                                            mask=tmp_path / "mask.png", mask_blur=blur))
    out = pixels(result)
    inside = np.zeros((80, 96), dtype=bool)
    inside[box[1]:box[3], box[0]:box[2]] = True
    assert out.shape == (80, 96, 3)
    assert (out[~inside] == (120, 140, 160)).all(), f"a pixel outside the box changed at blur {blur}"
    assert (out[inside] != (120, 140, 160)).any(axis=1).mean() > 0.5, "the box is repainted"


def test_strokes_thinner_than_a_pixel_at_the_picture_s_size_still_mark_their_pixels(studio, tiny_model, tmp_path):
    """A mask three times the picture's size with 1-px lines: each picture pixel a line touches is repainted (at
    half coverage they vanished: the mask was emptied, or refused as all black), and no other."""
    Image.new("RGB", (96, 80), (120, 140, 160)).save(tmp_path / "flat.png")
    mask = Image.new("L", (288, 240), 0)
    mask.paste(255, (31, 30, 32, 150))  # a vertical line in picture column 10, rows 10-49
    mask.paste(255, (120, 200, 270, 201))  # a horizontal one in picture row 66, columns 40-89
    mask.save(tmp_path / "mask.png")
    result = run(studio, tiny_model("sdxl"), init=InitImage(tmp_path / "flat.png", strength=1.0,
                                                            mask=tmp_path / "mask.png", mask_blur=0))
    changed = (pixels(result) != (120, 140, 160)).any(axis=2)
    touched = np.zeros((80, 96), dtype=bool)
    touched[10:50, 10] = touched[66, 40:90] = True
    assert not changed[~touched].any(), "a pixel no line touches changed"
    assert changed[touched].mean() > 0.5, "the lines' pixels are repainted"


@pytest.mark.parametrize("size, padding, message", [
    ((3072, 64), (1024, 0, 0, 0), r"The picture \(3072x64\) plus the outpaint padding makes a 4096x64 canvas, too "
                                  r"long and thin to run at: each side of an image must be between 64 and 2048 "
                                  r"pixels, and this shape does not fit them; pad less"),
    ((96, 20), (0, 0, 8, 8), r"The picture \(96x20\) plus the outpaint padding makes a 96x48 canvas, below the "
                             r"limit: .* 64 and 2048 pixels; pad more"),
])
@pytest.mark.parametrize("given", [None, (1024, 1024)])
def test_an_outpaint_canvas_no_size_fits_is_refused_in_its_own_terms(studio, tiny_model, tmp_path, size,
                                                                            padding, message, given):
    """The caller gave no width (or one of their own): the refusal says the picture plus the padding makes a
    canvas too small, or too long and thin to run at any size, not "Width must be between 64 and 2048 (got
    4096)"."""
    Image.new("RGB", size, "teal").save(tmp_path / "picture.png")
    width, height = given or (None, None)
    request = ImageRequest(prompt="x", model=str(tiny_model("flux")), steps=1, width=width, height=height,
                           init=InitImage(tmp_path / "picture.png", 1.0, outpaint=padding))
    with pytest.raises(InvalidInput, match=message):
        plan_request(studio, request)
