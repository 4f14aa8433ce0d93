"""Named Gradio endpoints called with values of the wrong type, null, numbers as text or paths for files, on one
live app: each is refused naming the parameter (no Python error text, one log line and no traceback), or taken
as the README's Gradio API section says."""

from __future__ import annotations

import json
import logging
import math
import re

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.photos import SIDEWAYS_HEIC, difference, upright

INF, NAN = float("inf"), float("nan")
UPLOAD = "gradio_client's handle_file"
#: endpoint, keyword arguments, what the refusal says
REFUSED = {
    "empty prompt queued": ("/queue_add", {"prompt": "", "model": "m"}, "The prompt is empty: describe the image"),
    "batch as text": ("/queue_add", {"prompt": "a", "model": "m", "batch": "x"}, "batch must be a whole number"),
    "batch NaN": ("/queue_add", {"prompt": "a", "model": "m", "batch": NAN}, "batch must be a whole number"),
    "batch infinite": ("/queue_add", {"prompt": "a", "model": "m", "batch": INF}, "batch must be a whole number"),
    "guidance as text": ("/queue_add", {"prompt": "a", "model": "m", "guidance": "x"}, "guidance must be a number"),
    "model a number": ("/queue_add", {"prompt": "a", "model": 5}, "model must be text"),
    "prompt a number": ("/queue_add", {"prompt": 5, "model": "m"}, "prompt must be text"),
    "prompts a number": ("/queue_add", {"prompt": "a", "model": "m", "prompts": 5}, "prompts must be text"),
    "loras a number": ("/queue_add", {"prompt": "a", "model": "m", "loras": 5}, "loras must be a list of text"),
    "loras a text": ("/queue_add", {"prompt": "a", "model": "m", "loras": "abc"}, "loras must be a list of text"),
    "strength null: its default": ("/queue_add", {"prompt": "a", "model": "m", "init_image": "{png}",
                                                  "strength": None}, "Unknown model 'm'"),
    "init image a path": ("/queue_add", {"prompt": "a", "model": "m", "init_image": "/etc/hosts"}, UPLOAD),
    "key a number": ("/history_reuse", {"key": 5}, "key must be text"),
    "job a bool": ("/queue_control", {"action": "cancel", "job_id": True}, "job_id must be a whole number"),
    "model to delete a number": ("/delete_model", {"model": 5}, "must be a name .got int"),
    "download to stop a number": ("/stop_download", {"model": 5}, "must be a name .got int"),
    "download a number": ("/download_model", {"model": 5}, "must be a name .got int"),
    "default model a number": ("/save_defaults", {"model": 5}, "Model must be a name"),
    "base model a number": ("/start_training", {"dataset": "mine", "base": 5}, "Base model must be a name"),
    "grid model a number": ("/grid", {"prompt": "a", "model": 5}, "Model must be a name"),
    "queued grid model a number": ("/queue_grid", {"prompt": "a", "model": 5}, "Model must be a name"),
    "video model a number": ("/generate_video", {"prompt": "a", "model": 5}, "Model must be a name"),
    "video seconds infinite": ("/generate_video", {"prompt": "a", "seconds": INF}, "Seconds must be a number"),
    "history model a list": ("/history", {"model": ["a"]}, "Model must be a name .got list"),
    "history model beyond SQLite": ("/history", {"model": 10**30}, "Model must be a name .got int"),
    "dataset size infinite": ("/create_dataset", {"name": "big", "trigger": "t", "size": INF}, "must be a number"),
    "upscaler a list": ("/upscale_image", {"image": "{png}", "upscaler": ["a"]}, "Upscaler must be a name"),
    "picture to upscale a path": ("/upscale_image", {"image": "/etc/hosts"}, f"Picture to upscale: .*{UPLOAD}"),
    "dataset files as paths": ("/add_images", {"dataset": "mine", "files": ["/etc/hosts"]}, UPLOAD),
    "captions row too short": ("/save_captions", {"dataset": "mine", "table": {
        "headers": ["id", "file", "caption"], "data": [[1, "a.png", "ok"], [2]]}}, "Row 2 of the captions table"),
    "character steps null": ("/train_character", {"character": "nobody", "steps": None}, "No character 'nobody'"),
    "steps a whole float": ("/queue_add", {"prompt": "a", "model": "m", "steps": 2.0}, "Unknown model 'm'"),
    "job a huge whole float": ("/queue_control", {"action": "cancel", "job_id": 1e15}, "no queued job 10{15} "),
    "job a whole float": ("/queue_control", {"action": "cancel", "job_id": 99.0}, "no queued job 99 of yours"),
    "parameters of no picture": ("/read_parameters", {"path": "{unreadable}"}, "PNG made .*: not an image MASUKA"),
    "no picture to upscale": ("/upscale_image", {"image": "{unreadable}"}, "Picture to upscale: not an image"),
    "picture too large to upscale": ("/upscale_image", {"image": "{huge}"}, "Picture to upscale: .*9000x8000"),
    "picture a decompression bomb": ("/upscale_image", {"image": "{bomb}"}, "Picture to upscale: too large in pixels"),
    "queued init image no picture": ("/queue_add", {"prompt": "a", "model": "m", "init_image": "{unreadable}"},
                                     "init_image: not an image MASUKA can read"),
    "queued init image too large": ("/queue_add", {"prompt": "a", "model": "m", "init_image": "{huge}"},
                                    "init_image: too large in pixels .9000x8000"),
    "queued mask a decompression bomb": ("/queue_add", {"prompt": "a", "model": "m", "init_image": "{png}",
                                                        "mask": "{bomb}"}, "mask: too large in pixels"),
    "init image no picture": ("/generate_image", {"prompt": "a", "init_image": "{unreadable}"},
                               "Starting image: not an image MASUKA can read"),
    "steps below the slider": ("/generate_image", {"prompt": "a", "steps": -1}, "Steps must be at least 1 .got -1"),
    "memory plan not a choice": ("/generate_image", {"prompt": "a", "memory_plan": ""},
                                 "Memory plan must be one of: auto, full, .*got ''"),
    "video image no picture": ("/generate_video", {"prompt": "a", "image": "{unreadable}"},
                              "First frame .*: not an image MASUKA can read"),
}
#: pictures the app fixture makes, by the name a case sends them as: readable, no picture, 72 MP, 225 MP
PICTURES = {"{png}": "small.png", "{unreadable}": "unreadable.png", "{huge}": "huge.png", "{bomb}": "bomb.png"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with auth off, a dataset ``mine``, and a small PNG to send; yields (client, PNG path)."""
    from masuka.config import Config
    from masuka.server import launch
    from tests.conftest import free_port

    root = tmp_path_factory.mktemp("api-inputs")
    png = root / "small.png"
    Image.new("RGB", (64, 64), "teal").save(png)
    (root / "unreadable.png").write_bytes(b"not a png")
    Image.new("1", (9000, 8000)).save(root / "huge.png")  # above MASUKA's 64 MP, below Pillow's refusal
    Image.new("1", (15000, 15000)).save(root / "bomb.png")  # which Pillow refuses to open
    running = launch(Config.from_env(data_dir=root / "data", auth=""), host="127.0.0.1", port=free_port(),
                     block=False)
    client = Client(running.url, verbose=False)
    client.predict("mine", "zorp", api_name="/create_dataset")
    yield client, png
    running.close()


def call(client: Client, api: str, arguments: dict) -> str:
    """The error an endpoint answers ``arguments`` with (keyword arguments as ``/call/v2`` takes them: NaN and
    infinities go as JSON's extensions, which ``gradio_client`` does not send)."""
    http = httpx.Client(base_url=client.src, timeout=60)
    joined = http.post(f"/gradio_api/call/v2{api}", content=json.dumps(arguments),
                       headers={"Content-Type": "application/json"})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", f"/gradio_api/call/v2{api}/{joined.json()['event_id']}") as stream:
        lines = list(stream.iter_lines())
    assert "event: error" in lines, lines
    return lines[lines.index("event: error") + 1]


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_value_of_the_wrong_kind_is_refused_by_name_in_one_log_line(case, app, caplog, capfd):
    client, png = app
    api, arguments, pattern = REFUSED[case]
    arguments = {name: handle_file(str(png.with_name(PICTURES[value])))
                 if isinstance(value, str) and value in PICTURES else value for name, value in arguments.items()}
    caplog.set_level(logging.WARNING, logger="masuka.ui.common")
    if any(isinstance(value, float) and not math.isfinite(value) for value in arguments.values()):
        answer = call(client, api, arguments)
    else:
        with pytest.raises(Exception) as refused:
            client.predict(**arguments, api_name=api)
        answer = str(refused.value)
    assert re.search(pattern, answer), answer
    for python_error in ("index out of range", "has no attribute", "invalid literal", "Could not preprocess",
                         "validation error", "binding parameter", "NoneType", "/tmp", "Error:"):
        assert python_error not in answer
    assert "refused:" in caplog.text
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("field", ["background", "layers", "composite"])
def test_an_unreadable_canvas_picture_is_refused_by_name(field, app):
    """The canvas's background, each layer and its composite are checked like an image input's picture."""
    client, png = app
    bad = handle_file(str(png.with_name("unreadable.png")))
    canvas = {"background": handle_file(str(png)), "layers": [], "composite": None,
              field: [bad] if field == "layers" else bad}
    with pytest.raises(Exception) as refused:
        client.predict(prompt="a", canvas=canvas, api_name="/generate_image")
    name = "layer 1" if field == "layers" else field
    assert re.search(rf"Mask: paint over what to repaint \({name}\): not an image MASUKA can read",
                     str(refused.value)), refused.value
    assert "/tmp" not in str(refused.value) and "Could not preprocess" not in str(refused.value)


def test_a_refusal_that_repeats_a_100000_character_name_is_short_and_says_what_was_wrong(app, caplog):
    client, _png = app
    caplog.set_level(logging.WARNING, logger="masuka.ui.common")
    with pytest.raises(Exception) as refused:
        client.predict(dataset="x" * 100_000, table=None, api_name="/save_captions")
    answer = str(refused.value)
    assert len(answer) <= 1000 and "No dataset 'xxx" in answer and "characters left out" in answer
    assert answer.endswith("x': create it first (Datasets tab or `dataset create`).")
    assert "refused:" in caplog.text and all(len(record.getMessage()) < 1100 for record in caplog.records)


def test_whole_floats_in_a_list_of_whole_numbers_are_taken_as_ints():
    from masuka.ui.checked_blocks import as_hinted, hint_problem

    for hint in (list[int], list[int] | None):
        assert hint_problem("ids", hint, [2.0, 3]) is None
        taken = as_hinted(hint, [2.0, 3])
        assert taken == [2, 3] and all(type(item) is int for item in taken)
    assert as_hinted(list[float], [2.0]) == [2.0] and type(as_hinted(list[float], [2.0])[0]) is float
    assert hint_problem("ids", list[int], [2.5]).startswith("ids must be a list of")


def test_numbers_as_view_api_shows_them_and_null_take_the_defaults(app):
    client, png = app
    for days in ("7", 7, None):
        assert len(client.predict(days=days, api_name="/history_dashboard")) == 4
    gallery, _rows = client.predict(page=None, per_page="24", until="9999-12-31", api_name="/history")
    assert "Nothing matches" in gallery["label"]
    for scale in ("4", None):  # None: the form's 2x
        upscaled, status = client.predict(image=handle_file(str(png)), scale=scale, api_name="/upscale_image")
        assert status.startswith("Done") and Image.open(upscaled).width == (256 if scale else 128)
    assert client.predict(dataset="mine", table=None, api_name="/save_captions") == "Saved 0 caption(s)."


def test_an_iphone_heic_is_a_picture_the_app_reads_upright(app):
    """Last: the History tests above expect no entry yet."""
    client, _png = app
    upscaled, status = client.predict(image=handle_file(str(SIDEWAYS_HEIC)), scale="2", api_name="/upscale_image")
    with Image.open(upscaled) as picture:
        assert status.startswith("Done") and picture.size == (576, 768) and difference(picture, upright()) < 8
