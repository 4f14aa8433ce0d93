"""Blind A/B: pairs share prompt and seed, the judge sees no side names, votes and the Wilson tally are stored."""

from __future__ import annotations

import json

import pytest

from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.image.compare import create_ab, next_pair, tally, vote
from masuka.image.generate import ImageRequest
from masuka.store import Store


def test_pairs_votes_and_tally(studio, tiny_model, tiny_lora):
    lora = str(tiny_lora("flux"))
    base = ImageRequest(prompt="", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=20)
    comparison = create_ab(studio, base, [(lora, 1.0)], [], ["a red fox", "a blue bird"], seeds=2,
                           allow_any_path=True)
    pairs = studio.store.get("comparisons", comparison)["state"]["pairs"]
    assert [(p["prompt"], p["seed"]) for p in pairs] == [("a red fox", 20), ("a red fox", 21), ("a blue bird", 20),
                                                        ("a blue bird", 21)]
    for pair in pairs:
        a, b = studio.store.get("generations", pair["a"]), studio.store.get("generations", pair["b"])
        assert (a["seed"], a["prompt"]) == (b["seed"], b["prompt"]) and len(a["loras"]) == 1 and b["loras"] == []

    shown = next_pair(studio, "local", False, comparison)
    first = pairs[0]
    assert shown["index"] == 0 and shown["remaining"] == 4 and "lora" not in json.dumps(shown).lower()
    assert shown["left"].endswith(studio.store.get("generations", first[first["left"]])["output_path"])
    result = vote(studio, "local", False, comparison, 0, "left")  # whichever side was on the left wins
    assert (result["a_wins"], result["b_wins"]) == ((1, 0) if first["left"] == "a" else (0, 1))
    vote(studio, "local", False, comparison, 1, "tie")
    assert next_pair(studio, "local", False, comparison)["index"] == 2
    assert tally(studio, "local", False, comparison)["ties"] == 1
    with pytest.raises(InvalidInput):
        create_ab(studio, base, [], [], ["a fox"])


def test_tally_is_the_wilson_interval_over_decided_pairs(capsys, tmp_path):
    data = tmp_path / "data"
    store = Store(Config.from_env(data_dir=data).db_path)
    choices = ["a"] * 7 + ["b"] * 3 + ["tie"] * 2 + [None]
    comparison = store.insert("comparisons", {
        "owner": "local", "kind": "ab", "title": "x vs y", "params": {"sides": {"a": "x", "b": "y"}},
        "state": {"pairs": [{"prompt": "p", "seed": i, "a": 0, "b": 0, "left": "a", "choice": c}
                            for i, c in enumerate(choices)]}})
    store.close()
    assert main(["compare", "tally", str(comparison), "--data-dir", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["a_wins"], result["b_wins"], result["ties"], result["undecided"]) == (7, 3, 2, 1)
    assert result["a_win_rate"] == pytest.approx(0.7)
    assert result["interval"] == pytest.approx([0.3968, 0.8922], abs=1e-4)  # Wilson 95% for 7 of 10
    assert main(["compare", "vote", str(comparison), "12", "left", "--data-dir", str(data)]) == 0
    assert "A 8, B 3, ties 2, undecided 0; A wins 73%" in capsys.readouterr().out
