"""Prompt batch expansion: every combination, seeded random picks, wildcards from files."""

from __future__ import annotations

import pytest

from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest
from masuka.image.prompts import expand_prompts, prompt_lines
from masuka.queue.jobs import queue_images
from tests.loras.test_imports import write_flux_lora
from tests.training.test_remote import tiny_sdxl_lora


def test_combinations_random_picks_and_wildcards(tmp_path):
    (tmp_path / "animal.txt").write_text("cat\n# a comment\ndog\nowl\n", encoding="utf-8")
    every = expand_prompts(tmp_path, ["a {red|green} __animal__"])
    expected = [f"a {colour} {animal}" for colour in ("red", "green") for animal in ("cat", "dog", "owl")]
    assert sorted(p.text for p in every) == sorted(expected)
    assert {p.template for p in every} == {"a {red|green} __animal__"}

    picks = expand_prompts(tmp_path, ["a {red|green|blue} __animal__"], count=8, seed=42)
    assert len(picks) == 8 and picks == expand_prompts(tmp_path, ["a {red|green|blue} __animal__"], count=8, seed=42)
    assert len({p.text for p in picks}) > 1
    assert [p.text for p in expand_prompts(tmp_path, ["plain words"])] == ["plain words"]


def test_prompt_lines_skip_blanks_and_comments():
    assert prompt_lines("one\n\n  # note\n two \n") == ["one", "two"]


@pytest.mark.parametrize("template, count, message", [
    ("a __self__ cat", 0, r"__self__ leads back to itself \(__self__ → __self__\)"),
    ("a __self__ cat", 3, r"__self__ leads back to itself"),
    ("a __loop1__ cat", 0, r"__loop1__ leads back to itself \(__loop1__ → __loop2__ → __loop1__\)"),
    ("a __s*__ cat", 2, r"__self__ leads back to itself"),
    ("a __outer__ cat", 0, r"The wildcard __typo__ \(named in __outer__\) has no values"),
    ("a {red|__outer__} cat", 4, r"The wildcard __typo__ \(named in __outer__\) has no values"),
])
def test_looping_and_missing_nested_wildcards_are_refused_by_name(tmp_path, template, count, message):
    (tmp_path / "self.txt").write_text("a __self__\nb\n", encoding="utf-8")
    (tmp_path / "loop1.txt").write_text("__loop2__\n", encoding="utf-8")
    (tmp_path / "loop2.txt").write_text("x __loop1__\n", encoding="utf-8")
    (tmp_path / "outer.txt").write_text("fine\nx __typo__ y\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        expand_prompts(tmp_path, [template], count, 1)


def test_a_looping_wildcard_queues_nothing(studio, tiny_model):
    studio.config.wildcards_dir.mkdir(parents=True, exist_ok=True)
    (studio.config.wildcards_dir / "loop.txt").write_text("more __loop__\n", encoding="utf-8")
    request = ImageRequest(prompt="", model=str(tiny_model("flux")), seed=1)
    with pytest.raises(InvalidInput, match="__loop__ leads back to itself"):
        queue_images(studio, request, "a fox\na __loop__ cat")
    assert not studio.store.count("queue")


def test_the_lora_tags_of_every_expansion_are_checked_before_any_line_is_queued(studio, tiny_model):
    """A missing LoRA, one for another architecture or one summed out of range in any expansion of a line, not only
    its first, queues nothing."""
    studio.config.loras_dir.mkdir(parents=True, exist_ok=True)
    write_flux_lora(studio.config.loras_dir / "flux-style.safetensors")
    (studio.config.loras_dir / "sdxl-style.safetensors").write_bytes(tiny_sdxl_lora())
    studio.config.wildcards_dir.mkdir(parents=True, exist_ok=True)
    (studio.config.wildcards_dir / "style.txt").write_text("<lora:flux-style:1>\n<lora:nope:1>\n", encoding="utf-8")
    request = ImageRequest(prompt="", model=str(tiny_model("flux")), seed=1, loras=[("flux-style", 2)])
    for line, message in (("a fox <lora:{flux-style|nope}:0.8>", "LoRA 'nope' was not found"),
                          ("a fox __style__", "LoRA 'nope' was not found"),
                          ("a fox <lora:{flux-style|sdxl-style}:0.8>", "'sdxl-style' was made for SDXL"),
                          ("a fox <lora:flux-style:{1|3}>", "weights add up to 5")):
        with pytest.raises(InvalidInput, match=message):
            queue_images(studio, request, f"a cat\n{line}")
    assert not studio.store.count("queue")
    assert len(queue_images(studio, request, "a cat\na fox <lora:flux-style:{1|-1}>")) == 2


def test_refusals_name_the_wildcard_not_the_server_s_folder_and_0_picks_is_valid(tmp_path):
    (tmp_path / "self.txt").write_text("a __self__\n", encoding="utf-8")
    for template in ("a __nosuch__ cat", "a __self__ cat"):
        with pytest.raises(InvalidInput) as refused:
            expand_prompts(tmp_path, [template])
        assert str(tmp_path) not in str(refused.value) and "__" in str(refused.value)
    with pytest.raises(InvalidInput, match=r"between 0 \(every combination\) and 1000 \(got -1\)"):
        expand_prompts(tmp_path, ["a cat"], -1)
