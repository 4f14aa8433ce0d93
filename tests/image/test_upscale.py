"""Upscaling: ESRGAN files through spandrel (without torchvision), tiled and blended; the detail upscale on a
tiny pipeline; each recorded in history with A1111's fields."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from masuka.errors import InvalidInput
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.upscale.job import upscale_image
from masuka.image.upscale.models import list_upscalers, load_upscaler, run_model, upscalers_dir
from masuka.image.upscale.request import DEFAULT_TILE, UpscaleRequest
from masuka.image.upscale.tiles import Blender, feather, tile_boxes
from masuka.testing.upscalers import write_esrgan
from tests.conftest import ROOT


@pytest.fixture
def photo(tmp_path):
    """A 48x40 picture with edges and gradients, the kind of detail an upscaler works on."""
    picture = Image.new("RGB", (48, 40), "navy")
    draw = ImageDraw.Draw(picture)
    for x in range(0, 48, 8):
        draw.rectangle((x, 0, x + 3, 40), fill=(250, 200 - x * 3, 40 + x * 4))
    draw.ellipse((10, 8, 34, 30), fill="white")
    picture.save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


@pytest.fixture
def upscalers(config):
    """A 4x ESRGAN as Real-ESRGAN ships it (.pth) and a 2x one as .safetensors, in the data dir's folder."""
    folder = upscalers_dir(config)
    return {"tiny4x": write_esrgan(folder / "tiny4x.pth", 4), "tiny2x": write_esrgan(folder / "tiny2x.safetensors", 2)}


def test_model_upscale_is_exact_in_size_and_recorded(studio, photo, upscalers):
    assert list(list_upscalers(studio.config)) == ["tiny2x", "tiny4x"]
    four = upscale_image(studio, UpscaleRequest(photo, scale=4, upscaler="tiny4x", tile=32, overlap=8))[0]
    assert Image.open(four.path).size == (192, 160)
    two = upscale_image(studio, UpscaleRequest(photo, scale=2, upscaler="tiny4x"))[0]  # 4x model, then Lanczos
    twice = upscale_image(studio, UpscaleRequest(photo, scale=4, upscaler="tiny2x"))[0]  # a 2x model, twice
    assert Image.open(two.path).size == (96, 80) and Image.open(twice.path).size == (192, 160)
    parsed = parse_parameters(read_parameters(two.path))
    assert parsed.extra["Postprocess upscaler"] == "tiny4x" and parsed.extra["Postprocess upscale by"] == "2"
    row = studio.store.get("generations", four.id)
    assert (row["kind"], row["status"], row["model"], row["width"], row["height"]) == \
        ("upscale", "completed", "tiny4x", 192, 160)
    params = row["params"]
    kept = studio.config.absolute(params["init_image"])
    assert params["task"] == "upscale" and params["scale"] == 4 and kept.is_file() and kept != photo
    assert np.array_equal(np.asarray(Image.open(kept).convert("RGB")), np.asarray(Image.open(photo).convert("RGB")))


def test_model_upscale_keeps_the_source_parameters(studio, tmp_path, upscalers):
    from masuka.image.metadata import save_image

    made = tmp_path / "made.png"
    save_image(Image.new("RGB", (32, 32), "teal"), made,
               "a red fox\nSteps: 4, Seed: 7, Size: 32x32, Model: flux-schnell")
    result = upscale_image(studio, UpscaleRequest(made, scale=2, upscaler="tiny2x"))[0]
    parsed = parse_parameters(read_parameters(result.path))
    assert (parsed.prompt, parsed.seed, parsed.extra["Postprocess upscaler"]) == ("a red fox", 7, "tiny2x")


def test_tiled_matches_untiled_for_a_convolutional_model(upscalers, photo):
    model = load_upscaler(upscalers["tiny4x"], "cpu")
    picture = Image.open(photo).convert("RGB")
    whole = np.asarray(run_model(model, picture, 0, 0), dtype=np.float64)
    tiles = []
    tiled = np.asarray(run_model(model, picture, 24, 8, on_tile=lambda done, total: tiles.append(total)),
                       dtype=np.float64)
    assert tiles and tiles[-1] == 6  # 3 x 2 tiles of 24 px, overlapping by 8 or more, over 48x40
    difference = np.abs(whole - tiled)
    assert difference.mean() < 1.0 and difference.max() < 48  # only near seams, and faded there
    assert whole.std() > 5  # the model does something to compare


def test_blend_weights_sum_to_one_and_fade_without_a_step():
    width, height, overlap = 200, 150, 16
    boxes = tile_boxes(width, height, 64, overlap)
    covered = np.zeros((height, width), dtype=np.float64)
    raw = []
    for box in boxes:
        left, top, right, bottom = box
        assert right - left == 64 and bottom - top == 64  # every tile the asked size
        canvas = np.zeros((height, width))
        canvas[top:bottom, left:right] = feather(box, width, height, overlap)
        raw.append(canvas)
        covered += canvas
    assert covered.min() > 0  # every pixel belongs to some tile
    for canvas in raw:
        share = canvas / covered
        assert np.allclose(sum(c / covered for c in raw), 1)
        steps = max(np.abs(np.diff(share, axis=0)).max(), np.abs(np.diff(share, axis=1)).max())
        assert steps <= 1 / overlap + 1e-6  # a tile's share changes gradually: no seam
    blender = Blender(width, height, overlap)
    for index, (left, top, right, bottom) in enumerate(boxes):  # tiles of opposite colours
        blender.add((left, top, right, bottom), np.full((bottom - top, right - left, 3), index % 2, np.float32))
    result = np.asarray(blender.image(), dtype=np.int16)
    assert max(np.abs(np.diff(result, axis=0)).max(), np.abs(np.diff(result, axis=1)).max()) <= 255 / overlap + 1


@pytest.mark.parametrize(("change", "message"), [
    ({"upscaler": "nope"}, "Unknown upscaler 'nope': use one of Lanczos, Nearest, tiny2x, tiny4x"),
    ({"scale": 3}, "must be 2 or 4"),
    ({"tile": -1}, "Tile size must be between 0 and 4096"),
    ({"tile": 8}, "tile size must be 0 \\(the whole picture\\) or 32-4096"),
    ({"tile": 64, "overlap": 32}, "Overlap must be between 0 and 31"),
    ({"detail": True}, "needs the diffusion model"),
])
def test_bad_requests_are_refused_with_the_reason(studio, photo, upscalers, change, message):
    with pytest.raises(InvalidInput, match=message):
        upscale_image(studio, UpscaleRequest(photo, **{"scale": 2, "upscaler": "tiny2x", **change}))
    assert studio.store.count("generations") == 0


def test_too_large_images_and_unsafe_files_are_refused(studio, tmp_path, upscalers):
    big = tmp_path / "big.png"
    Image.new("RGB", (2100, 64)).save(big)
    with pytest.raises(InvalidInput, match="too large to upscale 4x: the result would be 8400x256"):
        upscale_image(studio, UpscaleRequest(big, scale=4))

    class Payload:  # a pickle that would run code when loaded without weights_only
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"params_ema": Payload()}, upscalers_dir(studio.config) / "evil.pth")
    small = tmp_path / "small.png"
    Image.new("RGB", (16, 16)).save(small)
    with pytest.raises(InvalidInput, match="evil.pth cannot be read as weights"):
        upscale_image(studio, UpscaleRequest(small, scale=2, upscaler="evil"))


def test_a_bad_upscaler_file_is_one_line_without_torch_s_advice(capsys, config, photo):
    from masuka.cli import main

    class Payload:  # a pickle that would run code when loaded without weights_only
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    folder = upscalers_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": Payload()}, folder / "evil.pth")
    (folder / "junk.pth").write_bytes(b"junk" * 10)
    (folder / "junk2.safetensors").write_bytes(b"junk" * 10)
    for name, file in (("evil", "evil.pth"), ("junk", "junk.pth"), ("junk2", "junk2.safetensors")):
        assert main(["upscale", "--data-dir", str(config.data_dir), "--image", str(photo), "--upscaler", name]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: Upscaler file {file} cannot be read as weights: it is not a weights file")
        assert err.count("\n") == 1 and "weights_only" not in err and "could not be loaded" not in err


def test_spandrel_loads_beside_a_torchvision_that_does_not_import(tmp_path, upscalers):
    """PyPI's torchvision beside a CPU torch fails on import; spandrel still loads an ESRGAN."""
    broken = tmp_path / "site" / "torchvision"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    script = textwrap.dedent(f"""
        import sys
        from masuka.image.upscale.models import load_upscaler
        model = load_upscaler(__import__("pathlib").Path({str(upscalers["tiny2x"])!r}), "cpu")
        print(model.architecture.name, model.scale, "LaMa" in sys.modules["spandrel"].MAIN_REGISTRY)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ESRGAN", "2", "True"]


def test_detail_upscale_repaints_tile_by_tile_deterministically(studio, tiny_model, photo, upscalers):
    tiles = []
    request = UpscaleRequest(photo, scale=2, detail=True, model=str(tiny_model("flux")), prompt="a harbour",
                             strength=0.5, steps=2, seed=3, tile=64, overlap=16, upscaler="tiny2x")
    first = upscale_image(studio, request, on_tile=lambda done, total: tiles.append((done, total)))[0]
    again = upscale_image(studio, request)[0]
    assert tiles == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 96x80 in 64 px tiles: 2 x 2
    made = np.asarray(Image.open(first.path).convert("RGB"), dtype=np.int16)
    assert made.shape == (80, 96, 3) and first.seed == 3
    assert np.array_equal(made, np.asarray(Image.open(again.path).convert("RGB"), dtype=np.int16))
    parsed = parse_parameters(read_parameters(first.path))
    assert (parsed.prompt, parsed.seed, parsed.width, parsed.height) == ("a harbour", 3, 96, 80)
    assert parsed.extra["Denoising strength"] == "0.5" and parsed.extra["SD upscale overlap"] == "16"
    assert parsed.extra["SD upscale upscaler"] == "tiny2x"
    row = studio.store.get("generations", first.id)
    assert (row["kind"], row["status"], row["steps"], row["params"]["tiles"]) == ("upscale", "completed", 2, 4)


def test_detail_upscale_takes_the_source_prompt_or_asks_for_one(studio, tiny_model, tmp_path):
    from masuka.image.metadata import save_image

    bare, made = tmp_path / "bare.png", tmp_path / "made.png"
    Image.new("RGB", (32, 32), "teal").save(bare)
    save_image(Image.new("RGB", (32, 32), "teal"), made, "a teal wall\nSteps: 4, Seed: 7, Size: 32x32")
    request = UpscaleRequest(bare, scale=2, detail=True, model=str(tiny_model("flux")), steps=1, tile=64)
    with pytest.raises(InvalidInput, match="needs a prompt"):
        upscale_image(studio, request)
    request.image = made
    result = upscale_image(studio, request)[0]
    assert parse_parameters(read_parameters(result.path)).prompt == "a teal wall"
    assert Image.open(result.path).size == (64, 64)


def test_cli_upscales_with_json_and_refuses_bad_input_in_one_line(capsys, config, photo, upscalers):
    import json

    from masuka.cli import main

    data = ["--data-dir", str(config.data_dir)]
    assert main(["upscale", *data, "--image", str(photo), "--scale", "4", "--upscaler", "tiny4x", "--tile", "32",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"images", "seeds", "ids"} and out["seeds"] == [None] and len(out["ids"]) == 1
    assert Image.open(out["images"][0]).size == (192, 160)
    for bad, message in ((["--upscaler", "nope"], "use one of Lanczos, Nearest, tiny2x, tiny4x"),
                         (["--scale", "3"], "must be 2 or 4"),
                         (["--model", "flux-schnell"], "turn detail on (--detail)")):
        assert main(["upscale", *data, "--image", str(photo), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err


def test_upscale_image_endpoint_upscales_keeps_transparency_and_refuses_with_the_reason(live_app, tmp_path, photo):
    """(One live app for both endpoint checks: each start costs seconds of CPU.) The panel's picture reaches the
    upscale as it was uploaded: Gradio does not turn it to RGB first."""
    from gradio_client import Client, handle_file

    from masuka.config import Config

    data_dir = tmp_path / "app-data"
    write_esrgan(upscalers_dir(Config.from_env(data_dir=data_dir, auth="")) / "tiny2x.pth", 2)
    app = live_app(data_dir=data_dir)
    client = Client(app.url, verbose=False)
    path, status = client.predict(image=handle_file(str(photo)), scale=4, upscaler="tiny2x", tile=32,
                                  api_name="/upscale_image")
    assert Image.open(path).size == (192, 160) and status.startswith("Done")
    row = app.studio.store.find("generations")[0]
    assert (row["kind"], row["model"], row["params"]["scale"]) == ("upscale", "tiny2x", 4)
    gallery, _table = client.predict(1, api_name="/history")
    shown = gallery["value"]  # the upscale is shown with the images
    assert len(shown) == 1 and Image.open(shown[0]["image"]).size == (192, 160)
    with pytest.raises(Exception, match="Unknown upscaler 'nope': use one of Lanczos, Nearest, tiny2x"):
        client.predict(image=handle_file(str(photo)), upscaler="nope", api_name="/upscale_image")

    logo = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(logo).rectangle((8, 8, 23, 23), fill=(220, 30, 30, 255))
    logo.save(tmp_path / "logo.png")
    path, status = client.predict(image=handle_file(str(tmp_path / "logo.png")), scale=2, upscaler="Lanczos",
                                  api_name="/upscale_image")
    result = Image.open(path)
    assert status.startswith("Done") and result.mode == "RGBA"
    assert result.getpixel((0, 0))[3] == 0 and result.getpixel((32, 32))[3] == 255


def test_stop_cancels_between_tiles_and_is_recorded(studio, photo, upscalers):
    import threading

    from masuka.errors import Cancelled

    stop = threading.Event()
    with pytest.raises(Cancelled):
        upscale_image(studio, UpscaleRequest(photo, scale=4, upscaler="tiny4x", tile=32, overlap=8), stop=stop,
                      on_tile=lambda done, total: stop.set())
    row = studio.store.find("generations")[0]
    assert (row["kind"], row["status"], row["output_path"]) == ("upscale", "cancelled", None)


@pytest.mark.parametrize("upscaler", ["Lanczos", "tiny2x"])
def test_transparency_is_kept_by_a_resampler_and_a_model(studio, tmp_path, upscalers, upscaler):
    logo = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(logo).rectangle((8, 8, 23, 23), fill=(220, 30, 30, 255))
    logo.save(tmp_path / "logo.png")
    result = Image.open(upscale_image(studio, UpscaleRequest(tmp_path / "logo.png", scale=2, upscaler=upscaler))[0]
                        .path)
    assert result.mode == "RGBA" and result.size == (64, 64)
    assert result.getpixel((0, 0))[3] == 0 and result.getpixel((32, 32))[3] == 255


@pytest.mark.parametrize("mode", ["P", "RGB"])
def test_palette_and_colour_key_transparency_is_kept(studio, tmp_path, mode):
    """A palette PNG with a transparent index, or an RGB one with a transparent colour, has no alpha band: its
    transparency is still kept."""
    logo = Image.new("RGB", (32, 32), (0, 0, 0))
    ImageDraw.Draw(logo).rectangle((8, 8, 23, 23), fill=(220, 30, 30))
    if mode == "P":
        logo = logo.convert("P")
        logo.save(tmp_path / "keyed.png", transparency=logo.getpixel((0, 0)))
    else:
        logo.save(tmp_path / "keyed.png", transparency=(0, 0, 0))
    assert "A" not in Image.open(tmp_path / "keyed.png").getbands()
    result = Image.open(upscale_image(studio, UpscaleRequest(tmp_path / "keyed.png", scale=2))[0].path)
    assert result.mode == "RGBA" and result.getpixel((0, 0))[3] == 0 and result.getpixel((32, 32))[3] == 255


def test_a_detail_upscale_records_a_negative_prompt_only_where_it_has_effect(studio, tiny_model, tmp_path,
                                                                             upscalers):
    Image.new("RGB", (32, 32), "teal").save(tmp_path / "small.png")
    [made] = upscale_image(studio, UpscaleRequest(tmp_path / "small.png", scale=2, detail=True, upscaler="tiny2x",
                                                  model=str(tiny_model("flux")), prompt="a harbour", steps=1,
                                                  negative_prompt="blurry", tile=64))
    assert studio.store.get("generations", made.id)["negative_prompt"] == ""  # FLUX.1 takes none
    assert parse_parameters(read_parameters(made.path)).negative_prompt == ""


def test_a_detail_upscale_from_the_panel_tiles_as_the_command_line_does(studio, tiny_model, tmp_path):
    """Checking Detail turns the panel's Tile size to 0, the model's native size (the CLI's default). The panel and
    the CLI then make the same picture (a 512 px tile would cut it in two)."""
    from masuka.ui import upscale as panel

    Image.new("RGB", (288, 32), "teal").save(tmp_path / "wide.png")
    model = str(tiny_model("flux"))
    assert (panel.default_tile(True), panel.default_tile(False)) == (0, DEFAULT_TILE)
    path, status = panel.upscale(studio, str(tmp_path / "wide.png"), 2, "Lanczos", True, model, 0.5, "a wall",
                                 panel.default_tile(True), 3, progress=lambda *_a, **_k: None)
    [from_cli] = upscale_image(studio, UpscaleRequest(tmp_path / "wide.png", scale=2, detail=True, model=model,
                                                      strength=0.5, prompt="a wall", seed=3))
    first, second = studio.store.find("generations", order_by="id")
    assert first["params"]["tiles"] == second["params"]["tiles"] == 1 and first["params"]["tile"] == [576, 64]
    assert status == "Done, seed 3: saved and recorded in History."
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(from_cli.path)))


@pytest.mark.parametrize("size, tile", [((96, 32), 64), ((32, 96), 0)])
def test_reuse_of_a_detail_upscale_cuts_the_same_tiles_and_makes_the_same_picture(studio, tiny_model, tmp_path,
                                                                                  size, tile):
    """Reuse fills the Tile size with the entry's tiles (it showed 0, the model's native size, and the re-run
    repainted other tiles): their longer side, which for an entry made at the native size (its tiles cut to the
    picture, here 64x192) cuts the same tiles too."""
    from masuka.history.actions import reuse_parameters
    from masuka.ui import upscale as panel

    Image.new("RGB", size, "teal").save(tmp_path / "source.png")
    quiet = {"progress": lambda *_a, **_k: None}
    first, _status = panel.upscale(studio, str(tmp_path / "source.png"), 2, "Lanczos", True, str(tiny_model("flux")),
                                   0.5, "a wall", tile, 3, **quiet)
    [row] = studio.store.find("generations")
    values = panel.reuse_fields(reuse_parameters(studio, "local", False, f"g{row['id']}")[1])
    assert values["tile"] == (tile or 192) and row["params"]["tile"] == ([64, 64] if tile else [64, 192])
    again, _status = panel.upscale(studio, *[values[name] for name in panel.FIELDS], **quiet)
    assert studio.store.find("generations", order_by="id")[1]["params"]["tiles"] == row["params"]["tiles"]
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    assert panel.detail_tile(None) == panel.detail_tile([16, 16]) == 0, "no tile kept; a picture under any tile"


def test_the_stop_button_ends_the_panel_s_upscale_in_the_panel(studio, photo, upscalers):
    """The Image tab's Stop ends an upscale between tiles: the panel's status says so (no error toast, the
    generation's status left alone), its result is emptied, and nothing is left to stop afterwards."""
    from masuka.ui import upscale as panel
    from masuka.ui.common import IMAGE_TAB, NOTHING_TO_STOP, stop_work

    request = gr.Request(session_hash="upscale-stop")
    said = []

    def press_stop(*_args, **_kwargs) -> None:
        said.append(stop_work(studio, panel.PANEL, "tile", request))
        said.append(stop_work(studio, IMAGE_TAB, "step", request))

    result = panel.upscale(studio, str(photo), 4, "tiny4x", tile=32, request=request, progress=press_stop)
    assert result == (None, "Stopped: nothing saved.")
    assert said[:2] == ["Stopping after the current tile…", NOTHING_TO_STOP]
    assert stop_work(studio, panel.PANEL, "tile", request) == NOTHING_TO_STOP and not studio.stops._flags
    assert studio.store.find("generations")[0]["status"] == "cancelled"


def test_a_stop_while_the_panel_s_upscale_waits_ends_it_at_once(studio, photo):
    """The queue arms the Stop as it takes the upscale: pressed while the upscale waits there, or while another job
    holds the GPU, it ends the upscale within a moment and nothing is saved."""
    import threading

    from masuka.ui import upscale as panel
    from masuka.ui.common import stop_key, stop_work

    request = gr.Request(session_hash="upscale-waits")

    def upscale() -> tuple:
        return panel.upscale(studio, str(photo), 2, "Lanczos", request=request, progress=lambda *_a, **_k: None)

    studio.stops.arm(stop_key(panel.PANEL, request))  # the queue accepts it: the upscale now waits
    assert stop_work(studio, panel.PANEL, "tile", request) == "Stopping after the current tile…"
    assert upscale() == (None, "Stopped: nothing saved.")
    with studio.gpu.hold("training run 1"):
        studio.stops.arm(stop_key(panel.PANEL, request))
        threading.Timer(0.3, stop_work, (studio, panel.PANEL, "tile", request)).start()
        assert upscale() == (None, "Stopped: nothing saved."), "not a 'GPU busy' refusal once the wait is over"
    assert not studio.store.find("generations") and not studio.stops._flags


def test_an_unexpected_upscale_failure_names_its_type_and_clears_the_last_result(studio, photo, monkeypatch):
    """The toast shows the error's type and message (escaped: the toast reads HTML), and the Upscale button empties
    the previous result and its "Done" before the upscale runs."""
    from masuka.ui import upscale as panel
    from masuka.ui.app import build_app

    def broken(*_args, **_kwargs):
        raise TypeError("<class 'int'> is not a tile")

    monkeypatch.setattr(panel, "upscale_image", broken)
    with pytest.raises(gr.Error) as raised:
        panel.upscale(studio, str(photo), progress=lambda *_a, **_k: None)
    assert raised.value.message == "Upscale failed: TypeError: &lt;class 'int'&gt; is not a tile."
    demo = build_app(studio)
    run = next(fn for fn in demo.fns.values() if fn.api_name == "upscale_image")
    before = demo.fns[run.trigger_after]
    assert before.name == "starting" and before.outputs == run.outputs
    assert panel.starting() == (None, "")


def test_a_detail_upscale_holds_its_repo_from_its_download_to_its_last_tile(studio, tiny_model, photo, monkeypatch,
                                                                          tmp_path):
    from masuka.models.manage import delete_model
    from tests.models.in_use import cached_repo, deletion_tried_in

    repo = cached_repo(monkeypatch, tmp_path / "hf-cache", tiny_model("flux"), "acme/tiny-flux")
    refusals = deletion_tried_in(monkeypatch, studio, repo, studio.gpu)
    request = UpscaleRequest(photo, scale=2, detail=True, model=repo, prompt="a harbour", steps=1, tile=64,
                             upscaler="Lanczos")
    assert upscale_image(studio, request) and len(refusals) == 2
    assert delete_model(studio, repo) > 0  # once the upscale is over


def test_a_detail_upscale_with_a_model_not_downloaded_is_refused_offline_before_the_gpu(studio, photo, monkeypatch,
                                                                                      tmp_path):
    from masuka.errors import ModelUnavailable
    from tests.models.in_use import use_cache

    use_cache(monkeypatch, tmp_path / "empty-hf-cache")
    slots = []
    monkeypatch.setattr(studio.gpu, "hold", lambda *args, **kwargs: slots.append(args))
    request = UpscaleRequest(photo, scale=2, detail=True, model="flux-schnell", prompt="a harbour", steps=1, tile=64,
                             upscaler="Lanczos")
    with pytest.raises(ModelUnavailable, match="black-forest-labs/FLUX.1-schnell is not downloaded .* cannot be "
                                               "reached .*: download it in the Models tab"):
        upscale_image(studio, request)
    assert slots == []


def _nothing_kept(studio) -> bool:
    """No History row, no queued job and no copy of a picture in an inputs folder."""
    kept = list(studio.config.outputs_dir.rglob("upscale-source-*"))
    return studio.store.count("generations") == studio.store.count("queue") == 0 and not kept


@pytest.mark.parametrize("change", [{"strength": 0}, {"steps": 0}, {"guidance": -3}, {"model": "nosuch/model"}])
def test_a_refused_detail_upscale_keeps_no_copy_of_its_picture(studio, tiny_model, tmp_path, change):
    """Generation's checks (model, steps, guidance, strength) refuse a detail upscale before its picture, which
    carries its own prompt, is copied into the owner's inputs folder."""
    from masuka.errors import ModelUnavailable
    from masuka.image.metadata import save_image

    made = tmp_path / "made.png"
    save_image(Image.new("RGB", (32, 32), "teal"), made, "a teal wall\nSteps: 4, Seed: 7, Size: 32x32")
    request = UpscaleRequest(made, scale=2, detail=True, **{"model": str(tiny_model("sdxl")), "steps": 1, **change})
    with pytest.raises((InvalidInput, ModelUnavailable)):
        upscale_image(studio, request)
    assert _nothing_kept(studio)


def test_an_upscaler_file_that_is_not_weights_is_refused_before_anything_is_kept(studio, photo):
    """A file in the upscalers folder that is no upscaler's weights (junk, a LoRA renamed) is refused, upscaled or
    queued, with no History row, job or copy of the picture left."""
    from safetensors.torch import save_file

    from masuka.queue.jobs import queue_upscale

    folder = upscalers_dir(studio.config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "junk.pth").write_bytes(b"junk")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 8)}, folder / "4x-Fake.safetensors")
    for name, message in (("junk", "junk.pth cannot be read as weights"),
                          ("4x-Fake", "4x-Fake.safetensors is not a model architecture spandrel knows")):
        for make in (upscale_image, queue_upscale):
            with pytest.raises(InvalidInput, match=message):
                make(studio, UpscaleRequest(photo, scale=2, upscaler=name))
    assert _nothing_kept(studio)


def test_an_upscaler_is_loaded_once_for_its_check_and_its_job(studio, photo, upscalers):
    made = upscale_image(studio, UpscaleRequest(photo, scale=2, upscaler="tiny2x"))[0]
    assert Image.open(made.path).size == (96, 80) and studio.upscalers.loads == 1


def test_an_upscaler_evicts_no_helper_model_and_stays_on_the_cpu(studio, photo, upscalers):
    """Upscalers have a slot of their own: a check (even of a request then refused or queued) and a job leave the
    helper models (prompt LLM, safety classifier, identity model) loaded; a job on a GPU runs a copy there, so the
    upscaler kept stays on the CPU in float32."""
    from masuka.image.upscale.models import on_device, upscaler_model
    from masuka.image.upscale.request import check_request

    helper = studio.aids.get(("prompt-llm", "tiny"), object)
    check_request(studio, UpscaleRequest(photo, scale=2, upscaler="tiny4x"))
    upscale_image(studio, UpscaleRequest(photo, scale=2, upscaler="tiny2x"))
    assert studio.aids.get(("prompt-llm", "tiny"), object) is helper and studio.aids.loads == 1
    kept = upscaler_model(studio, upscalers["tiny2x"])
    moved = on_device(kept, "meta")  # another device's copy, as a job on CUDA takes it
    assert moved is not kept and moved.device.type == "meta"
    assert (kept.device.type, kept.dtype) == ("cpu", torch.float32) and upscaler_model(studio, upscalers["tiny2x"]) \
        is kept and studio.upscalers.loads == 2


@pytest.mark.parametrize(("change", "message"), [({}, "needs a prompt"), ({"prompt": "a wall", "strength": 0},
                                                                          "strength")])
def test_a_queued_detail_upscale_is_refused_as_a_direct_one_is(studio, tiny_model, tmp_path, change, message):
    """A picture with no prompt of its own and none given, or a bad strength: refused when queued, nothing kept."""
    from masuka.queue.jobs import queue_upscale

    bare = tmp_path / "bare.png"
    Image.new("RGB", (32, 32), "teal").save(bare)
    with pytest.raises(InvalidInput, match=message):
        queue_upscale(studio, UpscaleRequest(bare, scale=2, detail=True, model=str(tiny_model("flux")), steps=1,
                                             **change))
    assert _nothing_kept(studio)


def test_a_busy_database_leaves_no_queued_upscale_without_its_history_entry(studio, photo, monkeypatch):
    import sqlite3

    from masuka.queue.jobs import queue_upscale
    from masuka.queue.worker import work_until_empty

    queue_upscale(studio, UpscaleRequest(photo, scale=2, upscaler="Lanczos"), allow_any_path=True)
    written, refused = studio.store.update, []

    def update(table, row_id, **fields):
        if table == "generations" and fields.get("status") == "completed" and not refused:
            refused.append(studio.config.absolute(fields["output_path"]))
            raise sqlite3.OperationalError("database is locked")  # another process held the database
        return written(table, row_id, **fields)

    monkeypatch.setattr(studio.store, "update", update)
    work_until_empty(studio)
    kept = {studio.config.absolute(row["output_path"])
            for row in studio.store.find("generations", "kind = 'upscale' AND output_path IS NOT NULL")}
    made = {path for path in studio.config.outputs_dir.rglob("*.png") if "inputs" not in path.parts}
    assert refused and not refused[0].exists() and made == kept, (made, kept)
