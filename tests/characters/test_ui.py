"""The Characters tab through its Gradio API on the live app: create from an uploaded photo, reject a view, add
photos, delete (its parameter names are checked against the README with every other endpoint's in
tests/test_api_names.py); and its handlers as plain functions: the status line, an admin's picker."""

from __future__ import annotations

import html
import re
import time

import gradio as gr
import pytest

from masuka.characters.library import find_character, finish_building, new_character, update_character
from masuka.characters.making import create_character
from masuka.config import Config
from masuka.errors import NotFound
from masuka.studio import Studio
from masuka.ui import characters
from tests.models.fake_hub import FakeRepo, hub_online

from .test_making import request, two_faces


def shown(markdown: str) -> str:
    """The text a status in Markdown reads as: the escapes that keep typed text as it is (``verbatim``) undone."""
    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))


@pytest.mark.slow
def test_character_flow_through_the_api(shared_app, tiny_model, tiny_clip, portrait, no_face, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    running = shared_app()  # the module's one app: the other API test names its characters apart
    client = Client(running.url, verbose=False)
    model = str(tiny_model("sdxl"))
    name, status, views = client.predict("anna", "ohwx", [handle_file(str(portrait))], model, 2, "", 0.5, -1.0,
                                         False, "", str(tiny_clip), "", 64, 2, 0, api_name="/create_character")
    assert name == "anna" and "dataset 'anna' with 2 kept view(s) and 0 real photo(s), 0 rejected" in shown(status)
    assert [view["caption"].split(" ", 1)[0] for view in views] == ["1.", "2."]

    status, faces, views, grid = client.predict("anna", 2, api_name="/reject_character_view")
    assert "with 1 kept view(s) and 0 real photo(s), 1 rejected" in shown(status) and grid is None
    assert views[1]["caption"].endswith("rejected")
    assert len(faces) == 1, "the face crop of the one photo"
    for number, message in ((None, r"Type a view number \(1 to 2\)"), ("", "Type a view number"),
                            ("1.6", r"must be a whole number \(got '1.6'\)")):
        with pytest.raises(AppError, match=message):  # not view 1, not view 2
            client.predict("anna", number, api_name="/reject_character_view")
    group = two_faces(tmp_path, portrait)
    status, faces, views, grid, box = client.predict("anna", [handle_file(str(group))], "2",
                                                     api_name="/add_character_photos")
    assert len(faces) == 2 and "with 1 kept view(s) and 1 real photo(s)" in shown(status)
    assert "Not kept" not in status
    assert box is None
    status, faces, *_ = client.predict("anna", [handle_file(str(group))], "2", api_name="/add_character_photos")
    assert len(faces) == 2 and ("Not kept: two.png, refused by the dataset: duplicate of the real photo two.png "
                                "(same file)") in shown(status)

    with pytest.raises(AppError, match="No face was found in bands.png"):
        client.predict("bea", "x", [handle_file(str(no_face))], model, 2, "", 0.5, -1.0, False, "", str(tiny_clip),
                       "", 64, 2, 0, api_name="/create_character")
    with pytest.raises(AppError, match="An outfit reference needs an edit model that takes several images"):
        client.predict("cleo", "x", [handle_file(str(portrait))], model, 2, "", 0.5, -1.0, False, "", str(tiny_clip),
                       "", 64, 2, 0, handle_file(str(portrait)), api_name="/create_character")
    with pytest.raises(AppError, match="No character 'bea'"):
        client.predict("bea", "sdxl", 10, 0.73, api_name="/train_character")
    with pytest.raises(AppError, match=r"Steps must be a whole number \(got 10.5\)"):  # not 10
        client.predict("anna", "sdxl", 10.5, 0.73, api_name="/train_character")
    for field, value, message in ((4, 1.5, "number of views"), (12, 64.5, "view size"), (13, 2.5, "Steps"),
                                  (14, 0.5, "Seed")):
        values = ["dora", "x", [handle_file(str(portrait))], model, 2, "", 0.5, -1.0, False, "", str(tiny_clip), "",
                  64, 2, 0]
        values[field] = value
        with pytest.raises(AppError, match=f"{message} must be a whole number"):  # not rounded
            client.predict(*values, api_name="/create_character")

    with pytest.raises(AppError, match="Tick “Yes, delete this character and its photos” first"):
        client.predict("anna", False, api_name="/delete_character")
    picked, status, confirm = client.predict("anna", True, api_name="/delete_character")
    assert (picked, confirm) == ("", False)
    assert shown(status).startswith("Deleted character 'anna' and its photos; its dataset 'anna'")
    assert "stays" in status
    with pytest.raises(AppError, match="No character 'anna'"):
        client.predict("anna", api_name="/character_details")


def test_the_status_keeps_the_identity_model_s_note_the_rejections_and_a_failed_grid(studio, monkeypatch, tmp_path,
                                                                                    tiny_model, tiny_clip, portrait):
    from masuka.characters.identity import CLIP_MODEL

    with hub_online(monkeypatch, {CLIP_MODEL: FakeRepo.of_folder(tiny_clip)}, tmp_path / "hf-cache"):
        create_character(studio, request(tiny_model("sdxl"), "", portrait, views=2, threshold=1.0))
    status, _faces, views, _grid = characters.show(studio, "anna", None)  # what the picker's change shows
    assert "with 0 kept view(s) and 0 real photo(s), 2 rejected" in shown(status)
    assert "scored with CLIP instead" in status
    assert [view[1] for view in views] == [f"{i}. {v['score']} rejected" for i, v in
                                           enumerate(find_character(studio, "anna", "local")["state"]["views"], 1)]
    update_character(studio, find_character(studio, "anna", "local"),
                     lambda state: state.update(grid_error="out of memory"))
    assert "The test grid failed: out of memory" in characters.show(studio, "anna", None)[0]


def test_create_and_delete_fill_the_details_themselves_and_only_a_pick_shows_a_character(studio, tiny_model,
                                                                                         tiny_clip, portrait):
    """The picker may hold the name before Create (typed, or picked), so that Create leaves its value as it was and
    no change would fire: Create's own follow-up shows the face crops and test grid, Delete's clears what was shown,
    and the picker shows a character on a person's pick (``input``) only, never again after Create sets it."""
    from masuka.ui.app import build_app

    fns = list(build_app(studio).fns.values())
    by_api = {fn.api_name: fn for fn in fns if fn.api_name}
    create, delete, pick = by_api["create_character"], by_api["delete_character"], by_api["character_details"]
    [details] = [fn for fn in fns if fn.trigger_after == create._id and fn.trigger_only_on_success]
    [cleared] = [fn for fn in fns if fn.trigger_after == delete._id and fn.trigger_only_on_success]
    assert [getattr(output, "label", None) for output in details.outputs] == [
        "Faces the views are compared with (cropped from the photos)", "Test grid (after training)"]
    assert [getattr(output, "label", None) for output in cleared.outputs] == [
        "Faces the views are compared with (cropped from the photos)",
        "Views: number, identity score, kept or rejected", "Test grid (after training)"]
    assert [(target[1]) for target in pick.targets] == ["input"], "Create and Delete set the picker: no event"
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    status, faces, views, grid = characters.show(studio, "anna", None)
    assert details.fn("anna", None) == (faces, grid) and len(faces) == 1
    assert cleared.fn() == ([], [], None)


def test_a_character_being_made_says_so_in_its_status(studio):
    new_character(studio, "anna", "local", "ohwx", {})  # views and dataset to come
    status = characters.show(studio, "anna", None)[0]
    assert "being made: its views and dataset come when it is done" in shown(status) and "None" not in status


def test_what_a_user_typed_is_shown_as_typed_not_read_as_markdown(studio):
    """A name or trigger word with Markdown signs (``__x__`` is bold) comes back escaped, as History shows text."""
    new_character(studio, "__x__", "local", "[a](e) `b` $c$", {})
    status = characters.show(studio, "__x__", None)[0]
    assert status.startswith(r"**\_\_x\_\_**: trigger \[a\]\(e\) \`b\` \$c\$, being made")
    assert shown(status).startswith("**__x__**: trigger [a](e) `b` $c$, being made")
    message = characters.delete_character(studio, "__x__", True, None)[1]
    assert message.startswith(r"Deleted character '\_\_x\_\_' and its photos")


def test_an_admin_tells_users_characters_of_one_name_apart_and_deletes_the_one_picked(tmp_path):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:1,bob:2,admin:3"))
    try:
        alice, bob = (finish_building(studio, new_character(studio, "anna", user, "ohwx", {}))
                      for user in ("alice", "bob"))
        admin = gr.Request(username="admin")
        assert characters.choices(studio, admin).choices == [("anna (bob)", str(bob["id"])),
                                                             ("anna (alice)", str(alice["id"]))]
        assert characters.choices(studio, gr.Request(username="bob")).choices == [("anna", "anna")]
        assert characters.show(studio, str(bob["id"]), admin)[0].startswith("**anna** (bob):")
        with pytest.raises(gr.Error, match="No character 'anna'"):
            characters.delete_character(studio, "anna", True, gr.Request(username="carol"))
        picker, message, confirm = characters.delete_character(studio, str(bob["id"]), True, admin)
        assert (picker, confirm) == ("", False)
        assert characters.choices(studio, admin).choices == [("anna (alice)", str(alice["id"]))]
        assert shown(message) == "Deleted character 'anna' and its photos; its runs and LoRA stay."
        with pytest.raises(NotFound):
            find_character(studio, "anna", "bob")
        assert find_character(studio, "anna", "alice")["id"] == alice["id"]
    finally:
        studio.close()


def test_the_api_makes_the_views_it_is_asked_for_and_a_stop_reaches_only_its_own_session(shared_app, tiny_model,
                                                                                        tiny_clip, portrait):
    """``prompts`` defaults to empty (not the 24 prompts the page shows), so ``views`` alone is obeyed; prompts
    alone make one view each (the slider's default ``views`` that gradio_client sends is not read);
    ``/stop_character`` stops the making of its own client session only."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from masuka.gpu import stop_key
    from masuka.store import LOCAL_USER
    from masuka.ui.common import NOTHING_TO_STOP

    app = shared_app()
    client, other = (Client(app.url, verbose=False) for _ in range(2))
    common = dict(photos=[handle_file(str(portrait))], model=str(tiny_model("sdxl")), strength=0.5, threshold=-1.0,
                  identity_model=str(tiny_clip), captioner="", size=64, steps=2)
    [prompts] = [p for p in client.view_api(print_info=False, return_format="dict")["named_endpoints"][
        "/create_character"]["parameters"] if p["parameter_name"] == "prompts"]
    assert prompts["parameter_default"] == ""
    name, status, views = client.predict(name="ada", trigger="ohwx", views=2, **common, api_name="/create_character")
    assert len(views) == 2 and "2 kept view(s)" in shown(status)
    _name, status, views = client.predict(name="bo", trigger="x", prompts="a\nb", **common,
                                          api_name="/create_character")
    assert len(views) == 2 and "2 kept view(s)" in shown(status)

    with app.studio.gpu.hold("another job"):  # the first view waits for the GPU
        job = client.submit(name="cleo", trigger="x", views=2, **common, api_name="/create_character")
        while stop_key(characters.TAB, client.session_hash, LOCAL_USER) not in app.studio.stops._flags:
            assert not job.done(), job.result()  # the queue armed its Stop as it took it
            time.sleep(0.02)
        assert other.predict(api_name="/stop_character") == NOTHING_TO_STOP
        assert client.predict(api_name="/stop_character") == "Stopping after the current view…"
    with pytest.raises(AppError, match="Stopped by the user"):
        job.result()
    assert sorted(c["name"] for c in app.studio.store.find("characters")) == ["ada", "bo"], "nothing of cleo kept"


def test_the_views_slider_and_the_prompt_box_follow_each_other_without_a_loop(studio):
    """A person's move of the slider (mouse or keyboard: ``input``, not only a pointer's ``release``) picks a new
    prompt set; typing in the box sets the slider to its count of prompts. Neither listens to the other's updates
    (``change``), which would undo what was typed; the box is empty for the API and filled as the page opens."""
    from masuka.ui.app import build_app
    from masuka.ui.page_load import PageOpened

    fns = list(build_app(studio).fns.values())
    picks = [fn for fn in fns if fn.name == "new_prompt_set"]
    slider, box = picks[0].inputs[0], picks[0].outputs[0]
    assert slider.label == "Views" and box.value == ""
    assert {event for fn in picks for block, event in fn.targets if block == slider._id} == {"input"}
    (opened,) = [fn.fn for fn in fns if isinstance(fn.fn, PageOpened)]
    assert [(fn.__name__, outputs) for fn, _inputs, outputs in opened.reads if outputs == box] == [
        ("new_prompt_set", box)], "filled as the page opens"
    [follow] = [fn for fn in fns if fn.name == "prompt_count"]
    assert follow.targets == [(box._id, "input")] and follow.outputs == [slider]
    assert characters.prompt_count("front\n\n  \nback\n") == 2
    assert characters.prompt_count("x\n" * 250) == 200 and isinstance(characters.prompt_count(" \n"), type(gr.skip()))


def test_views_the_safety_check_flagged_say_so_in_the_tab_and_when_training(studio, tiny_model, tiny_clip,
                                                                           portrait, tmp_path):
    from masuka.characters.making import FLAGGED
    from masuka.image.aid_settings import AidSettings, save_aid_settings
    from tests.image.tiny_aids import save_tiny_classifier

    save_aid_settings(studio.config, AidSettings(safety_model=str(save_tiny_classifier(tmp_path / "nsfw", "nsfw")),
                                                 safety_action="withhold", safety_mandatory=True))
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2))
    reject_all = characters.show(studio, "anna", None)
    status, views = shown(reject_all[0]), reject_all[2]
    assert "0 kept view(s) and 0 real photo(s), 0 rejected, 2 flagged by the safety check" in status
    assert [caption for _file, caption in views] == [f"1. {FLAGGED}", f"2. {FLAGGED}"]
    with pytest.raises(gr.Error, match="all were flagged by the safety check") as refused:
        characters.train_character(studio, "anna", "sdxl")
    assert "threshold" not in str(refused.value)
