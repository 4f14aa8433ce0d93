"""The tabs' handlers called as plain functions (no live app), and how tabs register through ``UIContext``."""

from __future__ import annotations

import inspect

import gradio as gr
import pytest
from gradio.helpers import special_args

from masuka.image.generate import ImageRequest, generate_images
from masuka.ui import history, image, queue, settings
from masuka.ui.common import Form, UIContext, bind, last_output
from masuka.ui.image_modes import reuse_fields

SKIP = gr.skip()


def test_a_bound_handler_reads_like_the_function_to_gradio(studio):
    load = bind(history.load, studio)
    assert load.__name__ == "load" and load.__doc__ == history.load.__doc__
    assert list(inspect.signature(load).parameters) == ["page", "text", "kinds", "model", "lora", "status", "since",
                                                        "until", "per_page", "request"]
    inputs = special_args(load, inputs=[1, "", [], "", "", "", "", "", 48], request=gr.Request(username="ann"))[0]
    assert isinstance(inputs[-1], gr.Request), "Gradio finds the request parameter by its type"
    assert inspect.isgeneratorfunction(bind(image.generate_image, studio)), "a generator stays one (streaming)"
    assert not inspect.isgeneratorfunction(load)


def test_the_api_s_generate_image_answers_once_and_the_page_streams(studio):
    from masuka.ui.app import build_app

    def count(up_to: int):
        """Yields 0..up_to."""
        yield from range(up_to + 1)

    final = last_output(count)
    assert not inspect.isgeneratorfunction(final) and final(3) == 3 and final(-1) is None
    assert final.__name__ == "count" and list(inspect.signature(final).parameters) == ["up_to"]
    events = [fn for fn in build_app(studio).fns.values() if fn.api_name.startswith("generate_image")]
    public = [fn for fn in events if fn.api_visibility == "public"]
    assert [fn.api_name for fn in public] == ["generate_image"] and not inspect.isgeneratorfunction(public[0].fn)
    streamed = [fn for fn in events if fn.api_visibility == "private"]
    assert len(streamed) == 2 and all(inspect.isgeneratorfunction(fn.fn) for fn in streamed), "button and Enter"
    assert list(inspect.signature(public[0].fn).parameters) == list(inspect.signature(streamed[0].fn).parameters)


def test_tabs_register_forms_page_loads_and_generations(studio):
    ctx, built = UIContext(studio), []
    with gr.Blocks() as demo:
        with gr.Tabs() as ctx.tabs:
            with gr.Tab("Image", id="image"):
                prompt, run, out = gr.Textbox(), gr.Button(), gr.Textbox()
                form = ctx.register_form("image", {"prompt": prompt}, buttons={"queue": run})
                ctx.generated(run.click(lambda text: text, prompt, out))
            with gr.Tab("History", id="history"):
                listing = gr.Textbox()
                ctx.on_page_load(lambda: "page", listing)
                ctx.on_generation(lambda: "refreshed", None, listing)
                ctx.once_built(lambda: built.append(sorted(ctx.forms)))
        ctx.finish(demo)
    assert ctx.form("image") is form and form.pick(["prompt"]) == [prompt] and form.buttons["queue"] is run
    with pytest.raises(LookupError, match="No video form"):
        ctx.form("video")
    assert built == [["image"]], "once_built hooks run after every tab, once"
    events = list(demo.fns.values())
    assert [fn.outputs for fn in events if any(event == "load" for _id, event in fn.targets)] == [[listing]]
    assert [fn.outputs for fn in events if fn.trigger_after is not None] == [[listing]], "History follows Generate"


def test_reuse_fills_the_form_that_made_the_entry(studio, tiny_model):
    made = generate_images(studio, ImageRequest(prompt="a lighthouse", model=str(tiny_model("flux")), steps=2,
                                                width=64, height=64, seed=77))[0]
    targets = [("image", "prompt"), ("image", "seed"), ("image", "mode"), ("image", "canvas"), ("video", "prompt")]
    forms = {"image": Form("image", {}, adapt=reuse_fields), "video": Form("video", {})}
    *values, note, tab = history.reuse(studio, forms, targets, True, f"g{made.id}")
    assert values == ["a lighthouse", 77, "Text", SKIP, SKIP], "the video form and fields the entry lacks are kept"
    assert note == f"Filled 3 field(s) of the Image form from g{made.id}." and tab.selected == "image"
    with pytest.raises(gr.Error, match="needs a Image form"):
        history.reuse(studio, {"video": forms["video"]}, [("video", "prompt")], False, f"g{made.id}")


def test_reuse_of_an_upscale_fills_the_upscale_panel_in_the_image_tab(studio, tmp_path):
    from PIL import Image

    from masuka.image.upscale.job import upscale_image
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.ui.upscale import reuse_fields as upscale_fields

    Image.new("RGB", (20, 16), "teal").save(tmp_path / "small.png")
    made = upscale_image(studio, UpscaleRequest(tmp_path / "small.png", scale=4, upscaler="Nearest"))[0]
    names = ("image", "scale", "upscaler", "detail", "model", "tile")
    forms = {"upscale": Form("upscale", {}, tab="image", adapt=upscale_fields)}
    *values, note, tab = history.reuse(studio, forms, [("upscale", name) for name in names], True, f"g{made.id}")
    assert Image.open(values[0]).size == (20, 16), "the kept source picture"
    assert values[1:] == [4, "Nearest", False, None, 512] and tab.selected == "image"
    assert note == f"Filled 6 field(s) of the Upscale form from g{made.id}."


def test_the_image_form_queues_one_job_per_prompt_line(studio, tiny_model):
    model = str(tiny_model("flux"))
    form = dict(prompt="", model=model, negative_prompt="", steps=2, guidance=1.0, width=64, height=64, seed=1,
                batch=1, loras=[], memory_plan="auto", fast=False, step_cache=0.0, prompts="a red car\na blue car",
                random_picks=0,
                optimize_prompt=False, safety_check=False, face_detail=False, face_strength=0.4, init_image=None,
                strength=0.75, mask=None)
    result = queue.queue_form(studio, **form)
    assert queue.added(result) == f"Queued jobs {', '.join(map(str, result['jobs']))}." and len(result["jobs"]) == 2
    assert [row[5] for row in queue.rows(studio, None)] == ["a red car", "a blue car"]
    with pytest.raises(gr.Error, match="A mask needs the starting image"):
        queue.queue_form(studio, **dict(form, mask="mask.png"))


def test_image_and_settings_helpers(studio):
    assert image.aspect_size(studio, "16:9", "flux-dev") == (1344, 768)
    assert image.model_defaults(studio, "") == (SKIP,) * 6, "a model still being typed leaves the form alone"
    assert image.read_image_parameters(studio, None) == [SKIP] * (14 + len(image.READ_GUIDES))
    settings.store_defaults(studio, "", 12, None, None, "PNG")
    assert settings.image_defaults(studio) == [SKIP, 12, SKIP, SKIP], "only the saved defaults pre-fill the form"
    assert history.add_keys("g1, g2", [["g2"], ["g3"]]) == "g1, g2, g3"


def test_another_users_model_folder_fills_in_nothing(tmp_path, tiny_model):
    """Picking a model folder fills in its defaults only for a user who may use it: another user's folder, like
    a missing one, leaves the form alone (it would tell what the folder holds)."""
    import shutil

    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.users import output_dir

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:pw,bob:pw"))
    try:
        anns = output_dir(studio.config, "ann") / "models" / "mine"
        shutil.copytree(tiny_model("sdxl"), anns)
        ann, bob = gr.Request(username="ann"), gr.Request(username="bob")
        assert image.model_defaults(studio, str(anns), ann)[0] != SKIP
        assert image.model_defaults(studio, str(anns), bob) == (SKIP,) * 6
        assert image.model_defaults(studio, str(anns) + "-absent", bob) == (SKIP,) * 6
        assert image.aspect_size(studio, "1:1", str(anns), bob) == image.aspect_size(studio, "1:1", "nothing", bob)
    finally:
        studio.close()


def test_ids_beyond_sqlite_s_integers_are_not_found_in_the_tabs(studio):
    from masuka.ui import datasets, train

    request = gr.Request(username="alice")
    huge = "99999999999999999999"
    with pytest.raises(gr.Error, match=f"No dataset '{huge}'"):
        datasets.ask_delete(studio, huge, request)
    with pytest.raises(gr.Error, match=f"No dataset '{huge}'"):
        datasets.export_dataset(studio, huge, "kohya", request)
    with pytest.raises(gr.Error, match="Training run 1e\\+30 does not exist"):
        train.resume_training(studio, 1e30, request)
