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


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The whole app built once (``build_app`` takes over a second of CPU) on a fresh studio of its own that no test
    changes: the tests that only read its structure (events, blocks, their first values) share it."""
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.ui.app import build_app

    studio = Studio.open(Config.from_env(data_dir=tmp_path_factory.mktemp("demo") / "data", auth=""))
    try:
        yield build_app(studio)
    finally:
        studio.close()


def test_a_bound_handler_reads_like_the_function_to_gradio(studio):
    load = bind(history.load, studio)
    assert load.__name__ == "load" and load.__doc__ == history.load.__doc__
    assert list(inspect.signature(load).parameters) == ["page", "text", "kinds", "model", "lora", "status", "since",
                                                        "until", "per_page", "request"]
    inputs = special_args(load, inputs=[1, "", [], "", "", "", "", "", 48], request=gr.Request(username="ann"))[0]
    assert isinstance(inputs[-1], gr.Request), "Gradio finds the request parameter by its type"
    assert inspect.isgeneratorfunction(bind(image.generate_image, studio)), "a generator stays one (streaming)"
    assert not inspect.isgeneratorfunction(load)


def test_the_api_s_generate_image_answers_once_and_the_page_streams(demo):
    def count(up_to: int):
        """Yields 0..up_to."""
        yield from range(up_to + 1)

    final = last_output(count)
    assert not inspect.isgeneratorfunction(final) and final(3) == 3 and final(-1) is None
    assert final.__name__ == "count" and list(inspect.signature(final).parameters) == ["up_to"]
    events = [fn for fn in demo.fns.values() if fn.api_name.startswith("generate_image")]
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
    targets = [("image", "prompt"), ("image", "seed"), ("image", "mode"), ("image", "init_image"),
               ("video", "prompt")]
    forms = {"image": Form("image", {}, adapt=reuse_fields), "video": Form("video", {})}
    *values, note, tab = history.reuse(studio, forms, targets, True, f"g{made.id}")
    assert values == ["a lighthouse", 77, "Text", None, SKIP], "the video form kept; the starting image emptied"
    assert note == f"Filled 4 field(s) of the Image form from g{made.id}." and tab.selected == "image"
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


def test_the_aspect_names_the_size_however_it_is_set(studio, tmp_path, demo):
    """A 200×120 starting picture (192×112 for a model of multiple 16), a non-square entry reused, a model's
    default: the Aspect shows the preset of the size's ratio, else "custom", which leaves the size alone."""
    from PIL import Image

    from masuka.models.catalog import ModelSpec
    from masuka.ui.image_modes import fitted_size

    picture = tmp_path / "wide.png"
    Image.new("RGB", (200, 120), "white").save(picture)
    assert fitted_size(str(picture), ModelSpec("flux-dev", "x", "flux")) == (192, 112)
    assert image.aspect_of(192, 112) == image.CUSTOM_ASPECT
    assert [image.aspect_of(*size) for size in ((768, 512), (512, 512), (576, 448), (1920, 1080), (640, 1536))] \
        == ["3:2", "1:1", "4:3", "16:9", image.CUSTOM_ASPECT], "a preset's size halved, its label's ratio; no 9:21"
    assert {image.aspect_of(*size) for size in ((None, 512), (512, 0), ("x", 1), (-3, 4))} == {image.CUSTOM_ASPECT}
    assert image.aspect_size(studio, image.CUSTOM_ASPECT, "flux-dev") == (SKIP, SKIP)

    (aspect,) = {fn.outputs[0] for fn in demo.fns.values() if fn.name == "aspect_of"}
    assert aspect.label == "Aspect" and (image.CUSTOM_ASPECT, image.CUSTOM_ASPECT) in aspect.choices
    follows = {(demo.blocks[target].label, event) for fn in demo.fns.values() if fn.name == "aspect_of"
               for target, event in fn.targets}
    assert follows == {("Width", "change"), ("Height", "change")}, "whatever sets the size updates the Aspect"


def test_image_and_settings_helpers(studio):
    assert image.aspect_size(studio, "16:9", "flux-dev") == (1344, 768)
    assert image.model_defaults(studio, "") == (SKIP,) * 6, "a model still being typed leaves the form alone"
    assert image.read_image_parameters(studio, None) == SKIP
    settings.store_defaults(studio, "", 12, None, None, "PNG")
    assert settings.image_defaults(studio) == [SKIP, 12, SKIP, SKIP, SKIP], "only the saved defaults pre-fill the form"
    settings.store_defaults(studio, "z-image-turbo", 0, 0, 0, "PNG")  # 0: the model's own
    turbo = image.image_spec(studio, "local", "z-image-turbo")
    assert turbo.guidance == 0 and settings.image_defaults(studio) == [
        "z-image-turbo", turbo.steps, 0, turbo.width, turbo.height], "a saved model comes with its own values"
    settings.store_defaults(studio, "z-image-turbo", 5, 768, 512, "PNG")
    assert settings.image_defaults(studio) == ["z-image-turbo", 5, 0, 768, 512]
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
        assert image.model_defaults(studio, str(anns), request=ann)[0] != SKIP
        assert image.model_defaults(studio, str(anns), request=bob) == (SKIP,) * 6
        assert image.model_defaults(studio, str(anns) + "-absent", request=bob) == (SKIP,) * 6
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


@pytest.mark.filterwarnings("ignore:Unexpected argument")  # the None inputs stand in for any value
def test_every_handler_that_asks_who_is_asking_is_told(demo):
    """Gradio gives the request only to a parameter it can pass by position (none after ``*values``): a handler
    that did not get it would act for the local user, whoever is signed in."""
    from gradio.utils import get_type_hints

    request, asking = gr.Request(username="alice"), []
    for fn in demo.fns.values():
        hints = get_type_hints(fn.fn)
        if "request" in inspect.signature(fn.fn).parameters or gr.Request in hints.values():
            asking.append(fn.name)
            inputs = special_args(fn.fn, inputs=[None] * len(fn.inputs), request=request)[0]
            assert any(value is request for value in inputs), f"{fn.name} is not told who is asking"
    assert {"check_form", "check_edit", "generate_image", "add_images"} <= set(asking)


def test_the_image_checks_take_the_signed_in_user_s_own_lora(tmp_path, tiny_model, monkeypatch):
    """Generate's and Edit's checks (before the event that owns the gallery) run as Gradio runs them, for the
    signed-in user: alice's imported LoRA passes for her and stays refused for bob."""
    import asyncio

    from gradio.state_holder import SessionState
    from PIL import Image

    from masuka.config import Config
    from masuka.loras.imports import import_lora_file
    from masuka.models.synthetic import save_tiny_lora, save_tiny_pipeline
    from masuka.studio import Studio
    from masuka.ui.app import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    picture = tmp_path / "uploads" / "sent" / "picture.png"
    picture.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64), "teal").save(picture)
    kontext = save_tiny_pipeline("flux", tmp_path / "kontext", task="edit")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:pa,bob:pb"))
    try:
        import_lora_file(studio, "alice", save_tiny_lora("flux", tmp_path / "alice-style.safetensors"))
        demo = build_app(studio)
        checks = {fn.name: fn for fn in demo.fns.values() if fn.name in ("check_form", "check_edit")}
        uploaded = {"path": str(picture), "meta": {"_type": "gradio.FileData"}}
        forms = {"check_form": ["a fox", str(tiny_model("flux")), "", 2, 1.0, 64, 64, 1, 1, ["alice-style"]],
                 "check_edit": ["a fox", str(kontext), [uploaded], "", 2, 1.0, 1, 1, ["alice-style"]]}

        def check(name: str, user: str) -> dict:
            return asyncio.run(demo.process_api(block_fn=checks[name], inputs=list(forms[name]),
                                                state=SessionState(demo), request=gr.Request(username=user)))

        for name in forms:
            assert check(name, "alice")["data"] == [], name
            with pytest.raises(gr.Error, match="LoRA 'alice-style' was not found"):
                check(name, "bob")
    finally:
        studio.close()


def test_send_to_datasets_adds_the_user_s_own_result_only(tmp_path):
    """"Send to Datasets" puts a result (a file under outputs/<user>/) in the files to add: the user's own is
    added like an upload, another user's is refused as a missing one."""
    from masuka.config import Config
    from masuka.datasets.library import create_dataset, dataset_images
    from masuka.studio import Studio
    from masuka.ui import datasets
    from masuka.users import output_dir
    from tests.datasets import corpus

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:pa,bob:pb"))
    try:
        result = output_dir(studio.config, "alice") / "images" / "2025-01-01" / "made.png"
        result.parent.mkdir(parents=True)
        corpus.photo(result, 3, size=(400, 300), format="PNG")
        mine = create_dataset(studio, "mine", "alice", "zorp")
        rows, summary = datasets.add_images(studio, "mine", [str(result)], gr.Request(username="alice"))
        assert summary == "Added **1**, refused **0**." and len(dataset_images(studio, mine["id"])) == 1
        create_dataset(studio, "theirs", "bob", "zorp")
        with pytest.raises(gr.Error, match="No file 'made.png' of yours"):
            datasets.add_images(studio, "theirs", [str(result)], gr.Request(username="bob"))
        with pytest.raises(gr.Error, match="outside the folders MASUKA may use"):
            datasets.add_images(studio, "theirs", [str(tmp_path / "elsewhere.png")], gr.Request(username="bob"))
    finally:
        studio.close()


def test_a_deleted_history_entry_leaves_an_empty_detail_panel(studio, tiny_model):
    made = generate_images(studio, ImageRequest(prompt="a lighthouse", model=str(tiny_model("flux")), steps=1,
                                                width=64, height=64, seed=1))[0]
    message, key, _confirm = history.remove(studio, f"g{made.id}")
    assert key == "" and "1" in str(message)
    picture, video, detail, parameters, download, confirm = history.show(studio, key)  # key.change follows
    assert (picture.value, video.visible, detail, parameters, download.interactive, confirm.visible) == \
        (None, False, "", None, False, False)


def test_read_parameters_fills_the_sampler_the_model_can_use(studio, tmp_path):
    from PIL import Image

    from masuka.image.metadata import save_image

    def read(sampler: str):
        path = tmp_path / f"{sampler}.png"
        save_image(Image.new("RGB", (64, 64)), path, f"a fox\nSteps: 2, Sampler: {sampler}, CFG scale: 3, Seed: 9, "
                                                     "Size: 64x64, Model: flux-dev")
        values = image.read_image_parameters(studio, str(path))
        return values[14], values[9]

    assert read("euler karras")[0] == "Euler Karras", "a flow-matching sampler for FLUX.1 [dev]"
    sampler, summary = read("Euler a")
    assert sampler == SKIP and "Sampler 'Euler a' left as it was" in summary


def test_pickers_refresh_when_their_tab_opens(demo):
    """A dataset created in Datasets, a LoRA imported in Models or just trained: the pickers of other tabs get
    them when their tab opens; Compare's pickers are filled when the page opens."""
    labels = {block._id: getattr(block, "label", None) for block in demo.blocks.values()}
    tabs = {block._id: block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)}
    refreshed: dict[str, set] = {}
    for fn in demo.fns.values():
        for block_id, event in fn.targets:
            name = "page" if event == "load" else tabs.get(block_id) if event == "select" else None
            if name:
                refreshed.setdefault(name, set()).update(labels[output._id] for output in fn.outputs)
    assert {"Side A LoRAs", "Side B LoRAs", "A/B test", "LoRAs", "Dataset"} <= refreshed["page"]
    assert "LoRAs" in refreshed["Image"] and "Dataset" in refreshed["Train"] and "Dataset" in refreshed["Datasets"]
    assert {"Side A LoRAs", "A/B test"} <= refreshed["Compare"]


def test_the_negative_prompt_box_follows_the_model_from_the_start(studio, tiny_model, demo):
    """FLUX.1 [dev] (the first model) takes no negative prompt: the box starts greyed out; a model set by other
    means than picking it (saved defaults, Reuse, Read parameters) greys it or frees it too."""
    negative = next(block for block in demo.blocks.values() if getattr(block, "label", None) == "Negative prompt"
                    and isinstance(block, gr.Textbox))
    assert negative.interactive is False
    box, sampler = image.model_fit(studio, str(tiny_model("sdxl")))
    assert box.interactive is True and "Euler a" in [value for _label, value in sampler.choices]
    assert image.model_fit(studio, "flux-dev")[0].interactive is False
    assert image.model_fit(studio, "") == (SKIP, SKIP)


def test_a_number_box_that_starts_empty_says_what_0_means_and_0_does_it(studio, demo):
    """The browser shows an empty number box as 0 and sends 0: a box that starts empty says in its label what 0
    does, and its handler does that; the upscale tile starts at its default (0 there is the whole picture)."""
    from masuka.image.upscale.request import DEFAULT_TILE

    numbers = [block for block in demo.blocks.values() if isinstance(block, gr.Number)]
    empty = [block.label for block in numbers if block.value is None and block.visible]
    assert empty and all("0 = " in label for label in empty), empty
    assert next(block.value for block in numbers if block.label.startswith("Tile size")) == DEFAULT_TILE
    assert queue.queue_control(studio, "pause", 0) == "0 jobs paused."  # job 0: all of yours


def test_judging_with_no_a_b_test_loaded_says_what_to_do(studio):
    from masuka.ui import compare

    with pytest.raises(gr.Error, match="Choose an A/B test and press Load"):
        compare.judge(studio, "left", None, gr.Request(username=None))


def test_every_catalog_model_s_default_guidance_fits_the_slider_and_the_request(studio, tiny_model):
    """FLUX.1 Fill's default guidance (30) is on the Guidance slider, whose range is what a request takes."""
    from masuka.errors import InvalidInput
    from masuka.image.generate import plan_request
    from masuka.models.catalog import image_models

    low, high = image.GUIDANCE_RANGE
    assert {key: m["guidance"] for key, m in image_models().items() if not low <= m["guidance"] <= high} == {}
    assert image.model_defaults(studio, "flux-fill-dev")[1] == 30
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), width=64, height=64, guidance=high)
    assert plan_request(studio, request).guidance == high
    with pytest.raises(InvalidInput, match=f"between {low} and {high}"):
        plan_request(studio, ImageRequest(prompt="a fox", model=request.model, guidance=high + 0.1))


def test_picking_a_model_keeps_the_starting_picture_s_size(studio, tiny_model, tmp_path):
    """Image mode starts from a picture: a model picked after it keeps the picture's size, rounded to the new
    model's multiple, so nothing is stretched; Inpaint/Outpaint, which keeps its picture's size whatever the form
    says, leaves the size alone (and takes no canvas); Text mode takes the model's size."""
    from PIL import Image

    Image.new("RGB", (300, 203), "teal").save(tmp_path / "photo.png")
    photo, flux, sdxl = str(tmp_path / "photo.png"), str(tiny_model("flux")), str(tiny_model("sdxl"))
    assert image.model_defaults(studio, flux, "Image", photo)[2:4] == (288, 192)  # FLUX: multiples of 16
    assert image.model_defaults(studio, sdxl, "Image", photo)[2:4] == (296, 200)  # SDXL: of 8
    assert image.model_defaults(studio, flux, "Inpaint/Outpaint", photo)[2:4] == (SKIP, SKIP)
    assert image.model_defaults(studio, flux, "Text", photo)[2:4] == (1024, 1024), "a hidden picture does not count"
    assert image.model_defaults(studio, flux, "Image", str(tmp_path / "gone.png"))[2:4] == (1024, 1024)


def test_image_mode_without_a_picture_is_refused_not_run_as_text(studio, tiny_model):
    from masuka.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"Add the starting image to vary \(or choose Text mode\)"):
        image.image_request("local", "a fox", str(tiny_model("flux")), "", 1, 1.0, 64, 64, 1, 1, [], "auto", False,
                            0.0, mode="Image")
    assert image.image_request("local", "a fox", "flux-dev", "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0.0,
                               mode="Text").init is None


def test_reuse_of_an_upscale_opens_the_upscale_panel(studio, tmp_path):
    """The Upscale panel sits in a closed accordion: Reuse opens it, as "Send to Upscale" does."""
    from PIL import Image

    from masuka.image.upscale.job import upscale_image
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.ui.upscale import reuse_fields as upscale_fields

    Image.new("RGB", (20, 16), "teal").save(tmp_path / "small.png")
    made = upscale_image(studio, UpscaleRequest(tmp_path / "small.png", scale=2, upscaler="Nearest"))[0]
    forms = {"image": Form("image", {}, adapt=reuse_fields),
             "upscale": Form("upscale", {}, tab="image", adapt=upscale_fields, accordion=gr.Accordion())}
    *_values, note, tab, opened = history.reuse(studio, forms, [("upscale", "scale")], True, f"g{made.id}")
    assert note == f"Filled 1 field(s) of the Upscale form from g{made.id}."
    assert tab.selected == "image" and opened.open is True


def test_the_stop_flag_lives_as_long_as_the_generation(studio, tiny_model):
    """A Stop after the generation has ended stops nothing and shows nothing (the "Done" status stays), and no
    flag is left behind."""
    from masuka.ui.common import IMAGE_TAB, NOTHING_TO_STOP, stop_work

    request = gr.Request(session_hash="stop-session")
    outputs = list(image.generate_image(studio, "a fox", str(tiny_model("flux")), steps=1, width=64, height=64,
                                        request=request, progress=lambda *_a, **_k: None))
    assert outputs[-1][2].startswith("Done")
    assert stop_work(studio, IMAGE_TAB, "step", request) == NOTHING_TO_STOP
    assert not studio.stops._flags
    with studio.stops.armed("key") as flag:
        assert studio.stops.stop("key") and flag.is_set()
    assert not studio.stops.stop("key") and not studio.stops._flags


def test_a_stop_while_the_generation_waits_in_the_queue_ends_it_before_it_runs(studio, tiny_model):
    """The queue arms the Stop as it takes the generation: pressed while the generation waits there, it ends the
    generation as it leaves the queue (no model loaded, nothing recorded), and the next click runs."""
    from masuka.ui.common import IMAGE_TAB, NOTHING_TO_STOP, stop_key, stop_work

    request = gr.Request(session_hash="queued-stop")
    form = ["a fox", str(tiny_model("flux")), "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0.0]

    def leave_the_queue() -> list:
        return list(image.generate_image(studio, *form, request=request, progress=lambda *_a, **_k: None))

    studio.stops.arm(stop_key(IMAGE_TAB, request))  # the queue accepts it: the generation now waits
    assert stop_work(studio, IMAGE_TAB, "step", request) == "Stopping after the current step…"
    assert leave_the_queue() == [([], "", "Stopped: 0 image(s) kept.")]
    assert not studio.store.find("generations") and studio.models.loads == 0
    assert stop_work(studio, IMAGE_TAB, "step", request) == NOTHING_TO_STOP and not studio.stops._flags
    studio.stops.arm(stop_key(IMAGE_TAB, request))
    assert leave_the_queue()[-1][2].startswith("Done") and not studio.stops._flags


def test_a_stop_while_the_generation_waits_for_the_gpu_ends_it_at_once(studio, tiny_model):
    """Another job holds the GPU: a Stop ends the wait within a moment, before any model loads, and shows as
    stopped (not as a "GPU busy" refusal once the wait is over)."""
    from masuka.ui.common import IMAGE_TAB, stop_work

    request = gr.Request(session_hash="gpu-wait-stop")
    shown: list[str] = []

    def progress(*_args, desc: str = "", **_kwargs) -> None:
        shown.append(desc)
        if "waiting for the GPU" in desc:  # the page says what it waits for; the user presses Stop
            stop_work(studio, IMAGE_TAB, "step", request)

    with studio.gpu.hold("image generation for alice"):  # the generation itself runs on a worker thread
        outputs = list(image.generate_image(studio, "a fox", str(tiny_model("flux")), steps=1, width=64, height=64,
                                            request=request, progress=progress))
    assert any(desc.startswith("waiting for the GPU (image generation for alice") for desc in shown)
    assert outputs[-1][2] == "Stopped: 0 image(s) kept."
    assert studio.models.loads == 0 and not studio.store.find("generations") and not studio.stops._flags


def test_a_stop_s_answer_never_covers_the_status_its_work_ends_with(demo):
    """A Stop skips the queue, so its answer may land after its work has ended: it goes to a hidden component of
    its own, labelled as the work's status (the API returns it), which only the toast that follows reads; no
    work's output is written by a Stop ("Stopping after the current step…" stayed over "Stopped"/"Done")."""
    from masuka.ui.common import acknowledge

    fns = list(demo.fns.values())
    stops = [fn for fn in fns if fn.name == "stop_work"]
    assert {"stop_image", "stop_upscale", "stop_captioning"} <= {fn.api_name for fn in stops}
    works = {"stop_image": "generate_image", "stop_upscale": "upscale_image", "stop_captioning": "caption_dataset"}
    for stop in stops:
        [said] = stop.outputs
        assert not said.visible and [fn.name for fn in fns if said in fn.outputs and fn is not stop] == [
            "acknowledge"], f"{stop.api_name or 'a private Stop'} writes nothing else's output"
        if stop.api_name in works:
            work = next(fn for fn in fns if fn.api_name == works[stop.api_name])
            assert said.label == "Status" == work.outputs[-1].label and said not in work.outputs
    assert acknowledge("Stopping after the current step…") == acknowledge(None) == ""


def test_the_stop_endpoint_still_answers_with_its_status(live_app):
    from gradio_client import Client

    from masuka.gpu import stop_key
    from masuka.store import LOCAL_USER
    from masuka.ui.common import IMAGE_TAB

    app = live_app()
    client = Client(app.url, verbose=False)
    app.studio.stops.arm(stop_key(IMAGE_TAB, client.session_hash, LOCAL_USER))  # a generation of this session waits
    assert client.predict(api_name="/stop_image") == "Stopping after the current step…"


def test_send_to_follows_the_gallery_s_own_selection(demo):
    """The gallery keeps its selection at the same place, within the results shown, when new results come, and
    drops it when its picture is closed: "Send to" takes the picture the gallery shows selected, else the first
    (not one picked among the previous results)."""
    from masuka.ui.image_modes import picked, still_selected

    old, new = [(f"old{i}.png", "") for i in range(4)], [(f"new{i}.png", "") for i in range(4)]
    assert still_selected(new[:1], 2) == 0 and still_selected(new[:2], 0) == 0  # a new batch streams in
    assert still_selected(new, 2) == 2 and still_selected(new, None) is None and still_selected([], 2) is None
    assert picked(new, still_selected(new, None)) == "new0.png" and picked(old, 2) == "old2.png"
    fns = demo.fns.values()
    remember = next(fn for fn in fns if fn.name == "remember")
    gallery, selected = remember.targets[0][0], remember.outputs
    follows = {event for fn in fns for block, event in fn.targets if block == gallery and fn.outputs == selected}
    assert {"select", "preview_close", "change"} <= follows
    closed = next(fn for fn in fns if (gallery, "preview_close") in fn.targets)
    assert closed.fn() is None


def test_history_s_filters_follow_every_generation_as_its_table_does(demo):
    """A model or LoRA used for the first time is in History's filters after the generation, not only after the
    tab is opened again."""
    followers = [fn for fn in demo.fns.values() if fn.trigger_after is not None]

    def after(name: str, labels: list) -> list[int]:
        return sorted(fn.trigger_after for fn in followers
                      if fn.fn.__name__ == name and [getattr(out, "label", None) for out in fn.outputs] == labels)

    table = after("load", ["Outputs on this page", "Entries", None, "Page"])
    assert table, "History's table follows the generations"
    assert len(after("choices", ["Kind", "Model", "LoRA", "Status"])) == len(table)  # one after each, as the table


def test_a_result_sent_to_video_sets_the_size_of_its_shape_as_an_upload_does(demo, tmp_path):
    """"Send to Video first frame" puts the result in and then runs what an upload of it runs: a portrait image
    sends Size to the model's portrait size."""
    from PIL import Image

    from masuka.ui.video import size_of_frame

    fns = list(demo.fns.values())
    button = next(block for block in demo.blocks.values()
                  if isinstance(block, gr.Button) and block.value == "Send to Video first frame")
    [sent] = [fn for fn in fns if (button._id, "click") in fn.targets]
    [then] = [fn for fn in fns if fn.trigger_after == sent._id]
    upload = next(fn for fn in fns if fn.name == "size_of_frame" and fn.trigger_after is None)
    assert then.fn.__name__ == "size_of_frame" and then.inputs == upload.inputs and then.outputs == upload.outputs
    assert "Size" in [getattr(block, "label", None) for block in then.outputs]
    Image.new("RGB", (832, 1216)).save(tmp_path / "portrait.png")  # what an image model makes for 2:3
    _seconds, size, _negative = size_of_frame("gemini", "veo-3.1-generate-001", str(tmp_path / "portrait.png"),
                                              "1280x720")
    assert size.value == "720x1280"


def test_render_pairs_refreshes_the_test_picker_even_when_stopped(demo):
    """A stopped render stores its finished pairs as a test that the message names: the picker lists it at once,
    whether the render ended or was stopped (a failure skips the success chain)."""
    fns = list(demo.fns.values())
    [make] = [fn for fn in fns if fn.name == "make"]
    refreshed = [fn for fn in fns if fn.name == "test_choices" and fn.trigger_after == make._id]
    assert [fn.trigger_only_on_success for fn in refreshed] == [False]
