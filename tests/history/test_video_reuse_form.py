"""History's Reuse through the Video form: its Fallback field is always set from the entry (a video job's own
fallbacks, a made video's job's, none otherwise), so no provider of the entry reused before stays there to be
billed; an input file deleted since is left empty (a stored path the form cannot show is not given to it)."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.history.actions import GONE_FILES, reuse_parameters
from masuka.video.jobs import start_video, wait_video
from masuka.video.request import VideoRequest

PROMPT = "a paper boat on a rainy street"
NOTE = "(the note under the button)"


@pytest.fixture
def video_form(studio):
    """``reuse(key)`` -> the Video form's values by field name, as History's Reuse button fills them."""
    from masuka.ui import video
    from masuka.ui.common import UIContext
    from masuka.ui.history import reuse

    ctx = UIContext(studio)
    with gr.Blocks():
        video.build(ctx)
    form = ctx.forms["video"]
    names = list(form.fields)

    def reused(key: str) -> dict:
        values = reuse.__wrapped__(studio, {"video": form}, [("video", name) for name in names], False, key)
        return {**{name: getattr(value, "value", value) for name, value in zip(names, values[:len(names)])},
                NOTE: values[len(names)]}

    return reused


@pytest.fixture
def first_frame(tmp_path):
    from PIL import Image

    path = tmp_path / "first.png"
    Image.new("RGB", (64, 64), "orange").save(path)
    return path


def run(studio, provider: str, model: str, **kw) -> dict:
    return wait_video(studio, start_video(studio, VideoRequest(provider=provider, model=model, prompt=PROMPT, **kw)),
                      timeout=60)


def test_reuse_sets_the_fallback_field_of_every_video_entry(studio, fake, video_form):
    runway = fake("runway")
    fake("fal")
    runway.fault("create", 400, body={"error": "promptText is too long"})
    failed = run(studio, "runway", "gen4.5", seconds=5, fallback=["fal"])
    assert failed["status"] == "failed"
    assert video_form(f"j{failed['id']}")["fallback"] == ["fal"], "the job's own fallbacks"
    made = run(studio, "runway", "gen4.5", seconds=5, fallback=["fal"])
    assert made["status"] == "completed", made["error"]
    video = made["result"]["generation_id"]
    assert video_form(f"g{video}")["fallback"] == ["fal"], "a made video's job's fallbacks"
    plain = studio.store.insert("generations", {"kind": "video", "status": "completed", "prompt": "waves",
                                                "provider": "openai", "model": "sora-2",
                                                "params": {"seconds": 8, "size": "1280x720"}})
    assert video_form(f"g{plain}")["fallback"] == [], "none: the fallback reused before is emptied"
    assert reuse_parameters(studio, "local", False, f"g{plain}")[1]["fallback"] == []


def test_a_video_made_by_a_fallback_is_reused_with_the_fallbacks_after_it(studio, fake, video_form):
    runway = fake("runway")
    fake("fal")
    runway.fault("create", 400, body={"error": "Model gen4.5 has been retired."})
    made = run(studio, "runway", "gen4.5", seconds=5, fallback=["fal"])
    assert (made["status"], made["provider"]) == ("completed", "fal"), made["error"]
    fields = video_form(f"g{made['result']['generation_id']}")
    assert (fields["provider"], fields["fallback"]) == ("fal", [])  # never fal as its own fallback


def test_reuse_empties_an_input_file_deleted_since(studio, fake, video_form, first_frame):
    runway = fake("runway")
    runway.fault("create", 400, body={"error": "promptText is too long"})
    failed = run(studio, "runway", "gen4_turbo", image=str(first_frame), seconds=5)
    stored = failed["params"]["request"]["image"]
    assert studio.config.absolute(stored).is_file()
    assert video_form(f"j{failed['id']}")["image"] == str(studio.config.absolute(stored))
    studio.config.absolute(stored).unlink()
    _kind, fields = reuse_parameters(studio, "local", False, f"j{failed['id']}")
    assert fields["image"] is None and fields[GONE_FILES] == ["image"]
    reused = video_form(f"j{failed['id']}")
    assert reused["image"] is None, "not the stored path, which the form cannot show"
    assert reused[NOTE].endswith("Its image is no longer there (deleted since): left empty in the form.")
