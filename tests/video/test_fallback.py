"""Fallbacks: a provider alone gets its first active model that makes the request; a named model (CLI, form, API)
is checked as the primary is, with the primary's words; the form offers both."""

from __future__ import annotations

import json

import pytest

from masuka.errors import InvalidInput
from masuka.video.jobs import estimate, start_video, wait_video
from masuka.video.request import VideoRequest

TEXT_JOB = dict(provider="gemini", model="veo-3.1-generate-001", prompt="a fox in the snow", seconds=8,
                size="1280x720")


def fallback_of(**change) -> tuple[str, str]:
    target = estimate(VideoRequest(**{**TEXT_JOB, **change})).targets[1]
    return target.provider, target.model


def test_a_provider_alone_gets_its_first_active_model_that_makes_the_request(first_frame):
    # Runway's first models make videos from an image only (gen4_turbo), not 8 s (gen4.5), from a source video
    # only (aleph2): a text job gets its Veo 3.1
    assert fallback_of(fallback=["runway"]) == ("runway", "veo3.1")
    # with a first frame, 10 s: gen4_turbo makes it
    assert fallback_of(fallback=["runway"], image=str(first_frame), seconds=10) == ("runway", "gen4_turbo")
    # CometAPI's first model (Sora 2) is retired: its Veo 3 Fast is taken
    assert fallback_of(fallback=["comet"]) == ("comet", "veo3-fast")


def test_a_provider_with_no_active_model_that_fits_is_refused_saying_why():
    with pytest.raises(InvalidInput, match=r"^Fallback openai: all its models are retired; name one as "
                                           r"openai:MODEL to use it\.$"):
        estimate(VideoRequest(**TEXT_JOB, fallback=["openai"]))
    with pytest.raises(InvalidInput, match=r"^Fallback comet: none of its active models can make this video\. "
                                           r"veo3-fast: Veo 3 Fast \(CometAPI\) makes clips of 8 seconds"):
        estimate(VideoRequest(**{**TEXT_JOB, "seconds": 4}, fallback=["comet"]))
    # a retired model named is taken, as a retired primary is (the cost line warns)
    assert fallback_of(fallback=["openai:sora-2"]) == ("openai", "sora-2")


def test_a_named_fallback_is_refused_up_front_with_the_primarys_words():
    with pytest.raises(InvalidInput) as primary:
        estimate(VideoRequest(**{**TEXT_JOB, "provider": "runway", "model": "gen4_turbo"}))
    with pytest.raises(InvalidInput) as fallback:
        estimate(VideoRequest(**TEXT_JOB, fallback=["runway:gen4_turbo"]))
    assert str(primary.value) == "Gen-4 Turbo (image to video) makes videos from an image only: give a first frame."
    assert str(fallback.value) == f"Fallback runway:gen4_turbo: {primary.value}"
    # the fallback's provider limits too: Runway takes prompts of 1000 characters, Gemini 4000
    with pytest.raises(InvalidInput, match=r"^Fallback runway:veo3.1: The prompt is too long \(at most 1000"):
        estimate(VideoRequest(**{**TEXT_JOB, "prompt": "a fox " * 200}, fallback=["runway:veo3.1"]))
    with pytest.raises(InvalidInput, match=r"^Fallback runway:nope: Runway has no model 'nope'"):
        estimate(VideoRequest(**TEXT_JOB, fallback=["runway:nope"]))


def test_a_text_job_falls_back_to_a_model_that_makes_text_to_video(studio, fake):
    """No Gemini key: the job goes to Runway's first model that takes text, sent to its text-to-video route."""
    runway = fake("runway")
    row = wait_video(studio, start_video(studio, VideoRequest(**TEXT_JOB, fallback=["runway"])), timeout=60)
    assert row["status"] == "completed", row["error"]
    assert (row["provider"], row["model"]) == ("runway", "veo3.1")
    [create] = [r for r in runway.requests if r.method == "POST"]
    assert create.path == "/v1/text_to_video" and json.loads(create.body)["model"] == "veo3.1"


def test_the_forms_fallback_offers_providers_and_their_active_models_and_takes_typed_ones(studio):
    from masuka.ui.video import _fallback_choices, price

    choices = dict((value, label) for label, value in _fallback_choices())
    assert choices["runway"] == "Runway" and choices["runway:veo3.1"] == "Runway: Veo 3.1 (Runway)"
    assert "comet:veo3-fast" in choices and "comet:sora-2" not in choices  # retired: typed, not offered
    assert not any(value.split(":")[0] in ("local", "openai") for value in choices)  # openai: retired only
    line = price(studio, "gemini", "veo-3.1-generate-001", 8, "1280x720", None, ["runway", "comet:sora-2"], "a fox")
    assert "Fallback runway veo3.1: $3.20 for 8 s" in line and "Fallback comet sora-2: $0.80 for 8 s" in line
    assert price(studio, "gemini", "veo-3.1-generate-001", 8, "1280x720", None, ["runway:gen4_turbo"], "a fox") == (
        "⚠️ Fallback runway:gen4_turbo: Gen-4 Turbo (image to video) makes videos from an image only: give a first "
        "frame.")


def test_the_same_fallback_twice_is_priced_and_tried_once_and_typed_specs_are_tidied():
    """A fallback resolving to a provider and model already in the plan is left out; spaces and the provider's
    case do not matter; "local" is refused with its own reason."""
    def targets(fallback: list[str], seconds: int = 8) -> list[tuple[str, str]]:
        plan = estimate(VideoRequest(**{**TEXT_JOB, "seconds": seconds}, fallback=fallback))
        return [(t.provider, t.model) for t in plan.targets[1:]]

    assert targets(["runway", "runway"]) == [("runway", "veo3.1")]
    assert targets(["fal", "fal:fal-ai/veo3", "comet"]) == [("fal", "fal-ai/veo3"), ("comet", "veo3-fast")]
    assert targets([" Runway : gen4.5 ", "runway"], 30) == [("runway", "gen4.5")]
    with pytest.raises(InvalidInput, match=r"^Fallback 'LOCAL': the local model cannot be a fallback: fallbacks "
                                           r"are remote providers\.$"):
        estimate(VideoRequest(**TEXT_JOB, fallback=[" LOCAL "]))


def test_each_fallback_line_says_its_own_seconds_and_clips(studio):
    from masuka.ui.video import price

    line = price(studio, "gemini", "veo-3.1-generate-001", 30, "1280x720", None, ["runway"], "a fox")
    assert line.endswith("\n\nFallback runway gen4.5: $3.60 for 30 s (3 clips chained: 10 s + 10 s + 10 s)")
    assert "Fallback runway veo3.1: $3.20 for 8 s\n" in price(studio, "gemini", "veo-3.1-generate-001", 8, "1280x720",
                                                              None, ["runway", "comet"], "a fox")
