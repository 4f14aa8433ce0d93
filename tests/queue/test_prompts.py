"""Prompt batch expansion: every combination, seeded random picks, wildcards from files."""

from __future__ import annotations

from masuka.image.prompts import expand_prompts, prompt_lines


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
