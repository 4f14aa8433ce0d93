"""Every distinct expansion of a prompt-batch line is checked as a prompt before anything is queued: one that is
only a ``<lora:…>`` tag is empty, one that grew past the limit is too long."""

from __future__ import annotations

from dataclasses import replace

import pytest

from masuka.errors import InvalidInput
from masuka.image.generate import MAX_PROMPT_CHARS, ImageRequest
from masuka.queue.jobs import queue_images
from tests.loras.test_imports import write_flux_lora


@pytest.mark.parametrize(("line", "refused"), [
    ("{a fox|<lora:flux-style:0.8>}", "The prompt is empty"),
    ("{a fox|__long__}", f"at most {MAX_PROMPT_CHARS}"),
])
def test_an_expansion_that_is_no_prompt_refuses_the_line(studio, tiny_model, line, refused):
    studio.config.loras_dir.mkdir(parents=True, exist_ok=True)
    write_flux_lora(studio.config.loras_dir / "flux-style.safetensors")
    studio.config.wildcards_dir.mkdir(parents=True, exist_ok=True)
    (studio.config.wildcards_dir / "long.txt").write_text("fox " * MAX_PROMPT_CHARS + "\n")
    request = ImageRequest(prompt="", model=str(tiny_model("flux")), seed=1, steps=1, width=64, height=64)
    with pytest.raises(InvalidInput, match=refused):
        queue_images(studio, request, line)
    assert studio.store.find("queue") == []
    assert len(queue_images(studio, request, "{a fox|<lora:flux-style:0.8> a cat}")) == 1


def test_a_refused_expansion_names_its_line_and_itself(studio, tiny_model):
    request = ImageRequest(prompt="", model=str(tiny_model("flux")), seed=1, steps=1, width=64, height=64)
    lines = "\n".join([f"a red fox number {n}" for n in range(1, 40)] + ["{a cat|<lora:x:0.5>}", "a dog"])
    with pytest.raises(InvalidInput) as refused:
        queue_images(studio, request, lines)
    assert str(refused.value) == ("Prompt line 40 ('{a cat|<lora:x:0.5>}'): The expansion '<lora:x:0.5>' is "
                                  "refused: The prompt is empty: describe the image you want.")
    with pytest.raises(InvalidInput, match=r"^Prompt line 2 \('a \{fox\|__nosuch__\}'\): .*__nosuch__"):
        queue_images(studio, request, "a cat\na {fox|__nosuch__}")
    with pytest.raises(InvalidInput, match=r"^The expansion '<lora:x:0.5>' is refused: The prompt is empty"):
        queue_images(studio, replace(request, prompt="{a cat|<lora:x:0.5>}"))  # one prompt: no line to name
    assert studio.store.find("queue") == []


def test_a_prompt_that_expands_to_itself_is_refused_as_the_prompt_and_a_bad_template_in_its_words(studio,
                                                                                                 tiny_model):
    request = ImageRequest(prompt="", model=str(tiny_model("flux")), seed=1, steps=1, width=64, height=64)
    with pytest.raises(InvalidInput) as blank:
        queue_images(studio, replace(request, prompt="   "))
    assert str(blank.value) == "The prompt is empty: describe the image you want."  # no "expansion ''"
    with pytest.raises(InvalidInput, match=r"^The prompt 'a ____' cannot be read as a template \(unbalanced \{ \} "
                                           r"or \|, or __ that names no wildcard\)"):
        queue_images(studio, replace(request, prompt="a ____"))
    assert studio.store.find("queue") == []
