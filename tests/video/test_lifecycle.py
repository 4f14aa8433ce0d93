"""Model lifecycles: the catalog says which models are active, deprecated or retired (and who said so); a
provider's "this model is gone" answer is remembered per key and the job moves to the user's fallback."""

from __future__ import annotations

import json
import re

import pytest

from masuka.errors import ProviderError
from masuka.testing.video import KEY
from masuka.video import catalog
from masuka.video.availability import mark_unavailable, unavailable
from masuka.video.catalog import LIFECYCLE_STATES, REMOTE_PROVIDERS, lifecycle, listed_models, video_catalog
from masuka.video.jobs import start_video, wait_video
from masuka.video.request import VideoRequest

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PROMPT = "a paper boat on a rainy street"


def test_every_remote_model_says_where_it_stands_and_when_that_was_checked():
    for provider in REMOTE_PROVIDERS:
        for model, entry in video_catalog()[provider]["models"].items():
            state = lifecycle(entry)
            assert state.state in LIFECYCLE_STATES and DATE.match(state.checked), (provider, model)
            if state.state != "active":
                assert DATE.match(state.ends or "") and state.source.startswith("https://"), (provider, model)


def test_forms_hide_retired_models_unless_asked():
    shown = listed_models("openai")
    assert "sora-2" not in shown and "sora-2" in listed_models("openai", show_retired=True)
    assert "veo-3.1-generate-001" in listed_models("gemini") and "veo-3.1-generate-preview" not in listed_models(
        "gemini")


def test_the_estimate_names_the_end_of_a_deprecated_model_and_warns_on_a_retired_one(studio, monkeypatch):
    from masuka.ui.video import price

    changed = json.loads(json.dumps(video_catalog()))
    changed["runway"]["models"]["gen4.5"]["lifecycle"] = {
        "state": "deprecated", "ends": "2027-01-31", "checked": "2026-12-01", "source": "https://example.test/n"}
    monkeypatch.setattr(catalog, "video_catalog", lambda: changed)
    line = price(studio, "runway", "gen4.5", 5, "1280x720", None, [], PROMPT)
    assert "Estimated cost" in line and "ends 2027-01-31" in line
    retired = price(studio, "openai", "sora-2", 4, "1280x720", None, [], PROMPT)
    assert "retired on 2026-09-24" in retired and "developers.openai.com" in retired


def test_a_gone_model_moves_to_the_fallback_and_is_not_asked_again_with_that_key(studio, fake):
    openai, gemini = fake("openai"), fake("gemini")
    openai.gone_models.add("sora-2")
    request = dict(provider="openai", model="sora-2", prompt=PROMPT, size="1280x720", seconds=8,
                   fallback=["gemini:veo-3.1-generate-001"])
    first = wait_video(studio, start_video(studio, VideoRequest(**request)), timeout=60)
    assert first["status"] == "completed", first["error"]
    assert (first["provider"], first["model"]) == ("gemini", "veo-3.1-generate-001")
    assert len(openai.requests_to("/v1/videos")) == 1 and openai.creates == 0
    second = wait_video(studio, start_video(studio, VideoRequest(**request)), timeout=60)
    assert second["status"] == "completed" and len(openai.requests_to("/v1/videos")) == 1
    assert gemini.creates == 2
    assert "does not exist" in unavailable(studio.store, "openai", "sora-2", KEY)
    assert unavailable(studio.store, "openai", "sora-2", "another-key-0000") is None


@pytest.mark.parametrize("provider, model", [("openai", "sora-2"), ("gemini", "veo-3.1-generate-preview"),
                                             ("runway", "gen4_turbo"), ("fal", "fal-ai/veo3")])
def test_without_a_fallback_the_job_fails_with_one_clear_message(studio, fake, first_frame, provider, model):
    server = fake(provider)
    server.gone_models.add(model)
    image = str(first_frame) if provider == "runway" else None  # gen4_turbo makes videos from an image only
    row = wait_video(studio, start_video(studio, VideoRequest(provider=provider, model=model, prompt=PROMPT,
                                                              image=image)), timeout=60)
    assert row["status"] == "failed" and server.creates == 0
    assert f"{model} is not available to this" in row["error"] and "choose another model" in row["error"]
    assert "Traceback" not in row["error"] and KEY not in row["error"]


def test_a_model_marked_unavailable_is_skipped_before_anything_is_sent(studio, fake):
    openai = fake("openai")
    mark_unavailable(studio.store, "openai", "sora-2", KEY, "sora-2 is not available to this OpenAI key.")
    # with no fallback, no provider can take the job: refused before a job row exists
    with pytest.raises(ProviderError, match="not available to this OpenAI key"):
        start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT))
    assert studio.store.count("jobs") == 0 and openai.requests == []
    # with one, the job is made and goes straight to the fallback
    gemini = fake("gemini")
    row = wait_video(studio, start_video(studio, VideoRequest(provider="openai", model="sora-2", prompt=PROMPT,
                                                              fallback=["gemini:veo-3.1-generate-001"])), timeout=60)
    assert row["status"] == "completed", row["error"]
    assert row["provider"] == "gemini" and gemini.creates == 1 and openai.requests == []


def test_the_cli_estimate_carries_the_warning(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "masuka", "video", "--data-dir", str(tmp_path / "data"), "--json",
                           "--provider", "gemini", "--model", "veo-3.1-generate-preview", "--prompt", PROMPT,
                           "--estimate"], cwd=root, env={**os.environ, "PYTHONPATH": str(root), "GEMINI_API_KEY": "k"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)["warnings"]
    assert len(warnings) == 1 and "retired on 2026-10-22" in warnings[0]
