"""Blind A/B: two sides (sets of LoRAs, or none) rendered with the same prompts and seeds, judged unlabelled.

Each pair is one prompt and one seed made with side A and with side B; which side shows on the left is drawn
at random when the pair is made and kept, so the judge cannot learn a position. Votes are stored with the
pairs; the tally gives A's win rate over decided pairs (ties left out) with a 95% Wilson score interval.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from masuka.errors import InvalidInput, NotFound
from masuka.image.generate import ImageRequest, ImageResult, generate_images, plan_request
from masuka.store import now
from masuka.studio import Studio

PICKS = ("left", "right", "tie")
MAX_PAIRS = 200
CONFIDENCE = 0.95


def create_ab(studio: Studio, base: ImageRequest, a: list[tuple[str, float]], b: list[tuple[str, float]],
              prompts: list[str], seeds: int = 1, allow_any_path: bool = False,
              on_image: Callable[[ImageResult], None] | None = None) -> int:
    """Render every prompt x seed with side A and side B (History rows each) and store the test; returns its id."""
    if a == b:
        raise InvalidInput("Sides A and B are the same: pick different LoRAs (or none on one side).")
    if not prompts or not 1 <= seeds * len(prompts) <= MAX_PAIRS:
        raise InvalidInput(f"Give at least one prompt, and at most {MAX_PAIRS} pairs (prompts x seeds).")
    checked = [plan_request(studio, replace(base, prompt=prompt, loras=side, batch=seeds), allow_any_path)
               for prompt in prompts for side in (a, b)]
    first_seed = checked[0].seeds[0]
    pairs = []
    for prompt in prompts:
        for seed in range(first_seed, first_seed + seeds):
            made = {name: generate_images(studio, replace(base, prompt=prompt, seed=seed, loras=side, batch=1,
                                                          notes={"ab_side": name}),
                                          on_image=on_image, allow_any_path=allow_any_path)[0].id
                    for name, side in (("a", a), ("b", b))}
            pairs.append({"prompt": prompt, "seed": seed, **made, "left": random.choice("ab"), "choice": None})
    sides = {"a": _label(a), "b": _label(b)}
    return studio.store.insert("comparisons", {
        "owner": base.owner, "kind": "ab", "title": f"{sides['a']} vs {sides['b']}", "model": checked[0].spec.id,
        "params": {"sides": sides, "loras": {"a": a, "b": b}}, "state": {"pairs": pairs}, "updated_at": now()})


def next_pair(studio: Studio, user: str, admin: bool, comparison_id: int) -> dict | None:
    """The first pair not judged yet, as the judge sees it (left and right images, no side names)."""
    row = _row(studio, user, admin, comparison_id)
    pairs = row["state"]["pairs"]
    for index, pair in enumerate(pairs):
        if pair["choice"] is None:
            left, right = (pair["a"], pair["b"]) if pair["left"] == "a" else (pair["b"], pair["a"])
            return {"index": index, "prompt": pair["prompt"], "seed": pair["seed"], "left": _path(studio, left),
                    "right": _path(studio, right), "remaining": sum(p["choice"] is None for p in pairs)}
    return None


def vote(studio: Studio, user: str, admin: bool, comparison_id: int, index: int, pick: str) -> dict:
    """Record the judge's pick (``left``, ``right`` or ``tie``) for pair ``index``; returns the tally."""
    if pick not in PICKS:
        raise InvalidInput(f"Pick one of {', '.join(PICKS)} (got {pick!r}).")
    with studio.store.transaction():
        row = _row(studio, user, admin, comparison_id)
        pairs = row["state"]["pairs"]
        if not 0 <= index < len(pairs):
            raise InvalidInput(f"Comparison {comparison_id} has pairs 0 to {len(pairs) - 1} (got {index}).")
        pair = pairs[index]
        pair["choice"] = "tie" if pick == "tie" else pair["left"] if pick == "left" else _other(pair["left"])
        studio.store.update("comparisons", row["id"], state=row["state"], updated_at=now())
    return tally(studio, user, admin, comparison_id)


def tally(studio: Studio, user: str, admin: bool, comparison_id: int) -> dict:
    """Wins per side, ties, and A's win rate over decided pairs with its Wilson interval (None before a vote)."""
    from scipy.stats import binomtest

    row = _row(studio, user, admin, comparison_id)
    choices = [pair["choice"] for pair in row["state"]["pairs"]]
    a_wins, b_wins = choices.count("a"), choices.count("b")
    decided = a_wins + b_wins
    result = {"id": row["id"], "sides": row["params"]["sides"], "pairs": len(choices), "a_wins": a_wins,
              "b_wins": b_wins, "ties": choices.count("tie"), "undecided": choices.count(None),
              "a_win_rate": None, "interval": None}
    if decided:
        interval = binomtest(a_wins, decided).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        result.update(a_win_rate=a_wins / decided, interval=[interval.low, interval.high])
    return result


def describe_tally(result: dict) -> str:
    """The tally in one line for people."""
    sides = result["sides"]
    text = (f"A = {sides['a']}, B = {sides['b']}: A {result['a_wins']}, B {result['b_wins']}, ties {result['ties']}, "
            f"undecided {result['undecided']}")
    if result["a_win_rate"] is not None:
        low, high = result["interval"]
        text += f"; A wins {100 * result['a_win_rate']:.0f}% (95% Wilson interval {100 * low:.0f}-{100 * high:.0f}%)"
    return text


def list_comparisons(studio: Studio, user: str, admin: bool) -> list[dict]:
    mine, args = ("1 = 1", []) if admin else ("owner = ?", [user])
    return [{"id": row["id"], "title": row["title"], "model": row["model"], "created_at": row["created_at"]}
            for row in studio.store.find("comparisons", mine, args, order_by="id desc")]


def _row(studio: Studio, user: str, admin: bool, comparison_id: int) -> dict:
    row = studio.store.get("comparisons", int(comparison_id))
    if row is None or not (admin or row["owner"] == user):
        raise NotFound(f"There is no comparison {comparison_id} of yours.")
    return row


def _path(studio: Studio, generation_id: int) -> str:
    row = studio.store.get("generations", generation_id)
    return str(studio.config.absolute(row["output_path"])) if row and row["output_path"] else ""


def _label(loras: list[tuple[str, float]]) -> str:
    return " + ".join(f"{ref.rsplit('/', 1)[-1]}:{weight:g}" for ref, weight in loras) or "no LoRA"


def _other(side: str) -> str:
    return "b" if side == "a" else "a"
