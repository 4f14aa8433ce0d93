"""The studio's own settings (API keys, defaults, storage, sign-ins) as a user who is not an admin meets them."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.config import Config
from masuka.studio import Studio
from masuka.ui import settings
from masuka.ui.app import build_app
from masuka.ui.page_load import PageOpened


@pytest.fixture
def team(tmp_path):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="admin:pw-admin,bob:pw-bob"))
    yield studio
    studio.close()


def test_a_user_who_is_not_an_admin_is_told_and_cannot_use_the_studio_s_settings(team):
    (opened,) = [fn.fn for fn in build_app(team).fns.values() if isinstance(fn.fn, PageOpened)]
    panels = [outputs for fn, _inputs, outputs in opened.reads if fn.__name__ == "admin_panel"]
    disabled = [c.value for outputs in panels for c in outputs[1:] if isinstance(c, gr.Button)]
    assert set(disabled) >= {"Save", "Test", "Save defaults", "Measure", "Refresh", "Save generation aids",
                             "Delete"}
    assert disabled.count("Save") == 2 and "Open" not in disabled and "↻" not in disabled  # keys' and wildcards'
    assert "Forget this user…" in disabled
    assert len(panels) == 6  # API keys, Defaults, Storage (with Former users), Sign-ins, Generation aids, Wildcards
    # what the page shows as it opens (the one page-load event, as Gradio runs it: the request first)
    values = [c.value for c in opened.inputs]
    bob, admin = ({c: value for c, value in zip(opened.outputs, opened(gr.Request(username=user), *values),
                                                 strict=True)} for user in ("bob", "admin"))
    for note, *controls in panels:
        assert isinstance(note, gr.Markdown) and note.value == settings.ADMINS_ONLY and not note.visible
        assert bob[note]["visible"] and all(bob[c]["interactive"] is False for c in controls)
        assert not admin[note]["visible"] and all(admin[c]["interactive"] for c in controls)


@pytest.mark.parametrize("handler, message", [
    (settings.sign_ins_view, "Only an admin can see failed sign-ins"),
    (settings.storage_view, "Only an admin can see the studio's disk use"),
    (settings.storage_by_user_view, "Only an admin can see the studio's disk use"),
    (settings.empty_tmp, "Only an admin can change studio settings"),
])
def test_a_refusal_says_whether_it_was_a_look_or_a_change(team, handler, message):
    with pytest.raises(gr.Error, match=message):
        handler(team, gr.Request(username="bob"))
    handler(team, gr.Request(username="admin"))
