"""Blind A/B: two sides (sets of LoRAs, or none) rendered with the same prompts and seeds, judged unlabelled.

Each pair is one prompt and one seed made with side A and with side B; which side is rendered first and which
shows on the left are drawn at random when the pair is made and kept, so neither row ids nor positions tell the
sides. The judge is shown copies without the parameters (``outputs/<owner>/compare/<id>/<pair>-left.png``), and
no counts or side names until every pair is judged. Votes are stored with the pairs; the tally (the explicit
reveal) gives A's win rate over decided pairs (ties left out) with a 95% Wilson score interval. A pair whose
image was deleted from History is skipped and cannot be voted on. A test is its owner's alone: only they list, judge,
tally and delete it, not an admin either (another's vote would spoil it, and the tally names the sides).
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import Image

from masuka.errors import Cancelled, InvalidInput, NotFound
from masuka.image.generate import ImageRequest, ImageResult, generate_images, plan_request, seed_run
from masuka.store import now, row_id
from masuka.studio import Studio
from masuka.users import output_dir
from masuka.validation import whole_number

PICKS = ("left", "right", "tie")
MAX_PAIRS = 200
CONFIDENCE = 0.95


class StoppedTest(Cancelled):
    """:func:`create_ab` stopped: ``comparison`` is the test its finished pairs were stored as (None: none were)."""

    def __init__(self, comparison: int | None, kept: str, *, by: str, at: str):
        super().__init__(kept, by=by, at=at)
        self.comparison = comparison


def create_ab(studio: Studio, base: ImageRequest, a: list[tuple[str, float]], b: list[tuple[str, float]],
              prompts: list[str], seeds: int = 1, allow_any_path: bool = False,
              on_image: Callable[[ImageResult], None] | None = None, stop: threading.Event | None = None) -> int:
    """Render every prompt x seed with side A and side B (History rows each) and store the test; returns its id.
    A ``stop`` raises :class:`StoppedTest` saying how many pairs were made: those finished are stored as the test
    (every image made stays in History)."""
    if a == b:
        raise InvalidInput("Sides A and B are the same: pick different LoRAs (or none on one side).")
    if not prompts:
        raise InvalidInput("Give at least one prompt.")
    seeds = whole_number("the seed count", seeds, 1, MAX_PAIRS)
    if seeds * len(prompts) > MAX_PAIRS:
        raise InvalidInput(f"At most {MAX_PAIRS} pairs (prompts x seeds): {len(prompts)} x {seeds} is "
                           f"{len(prompts) * seeds}.")
    first_seed = seed_run(base.seed, seeds)
    # each side makes one image a pair (the seeds are no batch): checked so, the range of seeds on its own
    checked = [plan_request(studio, replace(base, prompt=prompt, loras=side, seed=first_seed, batch=1),
                            allow_any_path) for prompt in prompts for side in (a, b)]
    model = checked[0].spec.id
    pairs: list[dict] = []
    for prompt in prompts:
        for seed in range(first_seed, first_seed + seeds):
            try:
                made = {name: generate_images(studio, replace(base, prompt=prompt, seed=seed, loras=side, batch=1,
                                                              notes={"ab_side": name}),
                                              on_image=on_image, stop=stop, allow_any_path=allow_any_path)[0].id
                        for name, side in random.sample([("a", a), ("b", b)], 2)}  # random order: ids tell nothing
            except Cancelled as stopped:
                stored = _store(studio, base, model, a, b, pairs) if pairs else None
                kept = (f"the {len(pairs)} finished pair(s) are A/B test {stored}" if stored
                        else "no pair was finished, so no A/B test is stored")
                raise StoppedTest(stored, f"{kept}; the images made are kept in History", by=stopped.by,
                                  at=f"after {len(pairs)} of {seeds * len(prompts)} pairs") from None
            pairs.append({"prompt": prompt, "seed": seed, **made, "left": random.choice("ab"), "choice": None})
    return _store(studio, base, model, a, b, pairs)


def _store(studio: Studio, base: ImageRequest, model: str, a: list[tuple[str, float]], b: list[tuple[str, float]],
           pairs: list[dict]) -> int:
    """Record an A/B test of ``pairs`` (sides ``a`` and ``b``, made from ``base`` with ``model``); returns its id."""
    sides = {"a": _label(a), "b": _label(b)}
    return studio.store.insert("comparisons", {
        "owner": base.owner, "kind": "ab", "title": f"{sides['a']} vs {sides['b']}", "model": model,
        "params": {"sides": sides, "loras": {"a": a, "b": b}}, "state": {"pairs": pairs}, "updated_at": now()})


def next_pair(studio: Studio, user: str, comparison_id: int) -> dict | None:
    """The first pair not judged yet whose images both still exist, as the judge sees it: metadata-free copies
    on the left and right, no side names; ``remaining`` counts the pairs left to judge. None when none are."""
    row = _row(studio, user, comparison_id)
    pairs = row["state"]["pairs"]
    for index, pair in enumerate(pairs):
        if pair["choice"] is None and (sources := _sources(studio, pair)):
            return {"index": index, "prompt": pair["prompt"], "seed": pair["seed"],
                    "left": _blind_copy(studio, row, index, "left", sources[pair["left"]]),
                    "right": _blind_copy(studio, row, index, "right", sources[_other(pair["left"])]),
                    "remaining": _remaining(studio, pairs)}
    return None


def nothing_left(studio: Studio, user: str, comparison_id: int) -> str:
    """What the judge is told when :func:`next_pair` has no pair: every pair judged, or those left lost an image."""
    lost = tally(studio, user, comparison_id)["undecided"]
    if not lost:
        return "Every pair is judged."
    return (f"No pair is left to judge: {lost} pair(s) lost an image deleted from History and cannot be judged "
            "(the tally counts them undecided).")


def vote(studio: Studio, user: str, comparison_id: int, index: int, pick: str) -> dict:
    """Record the judge's pick (``left``, ``right`` or ``tie``) for pair ``index``; returns :func:`standing`."""
    if pick not in PICKS:
        raise InvalidInput(f"Pick one of {', '.join(PICKS)} (got {pick!r}).")
    with studio.store.transaction():
        row = _row(studio, user, comparison_id)
        pairs = row["state"]["pairs"]
        if not 0 <= index < len(pairs):
            raise InvalidInput(f"Comparison {comparison_id} has pairs 0 to {len(pairs) - 1} (got {index}).")
        pair = pairs[index]
        if not _sources(studio, pair):
            raise InvalidInput(f"Pair {index} of comparison {comparison_id} has an image deleted from History: "
                               "it cannot be judged.")
        pair["choice"] = "tie" if pick == "tie" else pair["left"] if pick == "left" else _other(pair["left"])
        studio.store.update("comparisons", row["id"], state=row["state"], updated_at=now())
    return standing(studio, user, comparison_id)


def standing(studio: Studio, user: str, comparison_id: int) -> dict:
    """While pairs remain to be judged only how many (``{id, pairs, remaining}``), so the judge learns nothing
    of the sides; once every pair is judged, the :func:`tally`."""
    row = _row(studio, user, comparison_id)
    remaining = _remaining(studio, row["state"]["pairs"])
    if remaining:
        return {"id": row["id"], "pairs": len(row["state"]["pairs"]), "remaining": remaining}
    return tally(studio, user, comparison_id)


def tally(studio: Studio, user: str, comparison_id: int) -> dict:
    """Wins per side, ties, and A's win rate over decided pairs with its Wilson interval (None before a vote)."""
    from scipy.stats import binomtest

    row = _row(studio, user, comparison_id)
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
    """The tally (or a :func:`standing` that hides it) in one line for people."""
    if "sides" not in result:
        return (f"{result['remaining']} of {result['pairs']} pairs left to judge: the sides and counts are shown "
                "when every pair is judged.")
    sides = result["sides"]
    text = (f"A = {sides['a']}, B = {sides['b']}: A {result['a_wins']}, B {result['b_wins']}, ties {result['ties']}, "
            f"undecided {result['undecided']}")
    if result["a_win_rate"] is not None:
        low, high = result["interval"]
        text += f"; A wins {100 * result['a_win_rate']:.0f}% (95% Wilson interval {100 * low:.0f}-{100 * high:.0f}%)"
    return text


def list_comparisons(studio: Studio, user: str) -> list[dict]:
    """The user's own A/B tests, newest first."""
    return [{"id": row["id"], "title": row["title"], "model": row["model"], "created_at": row["created_at"]}
            for row in studio.store.find("comparisons", "owner = ?", [user], order_by="id desc")]


def delete_comparison(studio: Studio, user: str, comparison_id: int) -> None:
    """Forget an A/B test (its pairs and votes) and remove the copies its judge was shown; the images stay in
    History."""
    row = _row(studio, user, comparison_id)
    studio.store.delete("comparisons", row["id"])
    shutil.rmtree(_copies_dir(studio, row), ignore_errors=True)


def unfinished_using(studio: Studio, generation_ids: set[int]) -> list[int]:
    """Ids of the A/B tests with a pair not judged yet that uses one of these images."""
    return [row["id"] for row in studio.store.find("comparisons", "kind = ?", ["ab"], order_by="id")
            if any(pair["choice"] is None and {pair["a"], pair["b"]} & generation_ids
                   for pair in row["state"]["pairs"])]


def _row(studio: Studio, user: str, comparison_id: int | str) -> dict:
    """The user's own test ``comparison_id``; :class:`NotFound` for any other, whoever asks."""
    number = row_id(comparison_id)
    row = None if number is None else studio.store.get("comparisons", number)
    if row is None or row["owner"] != user:
        raise NotFound(f"There is no comparison {comparison_id} of yours.")
    return row


def _sources(studio: Studio, pair: dict) -> dict[str, Path] | None:
    """Side -> image file of a pair, or None when either image (History row or file) is gone."""
    paths = {}
    for side in ("a", "b"):
        generation = studio.store.get("generations", pair[side])
        if not generation or not generation["output_path"]:
            return None
        paths[side] = studio.config.absolute(generation["output_path"])
        if not paths[side].is_file():
            return None
    return paths


def _remaining(studio: Studio, pairs: list[dict]) -> int:
    return sum(pair["choice"] is None and _sources(studio, pair) is not None for pair in pairs)


def _blind_copy(studio: Studio, row: dict, index: int, position: str, source: Path) -> str:
    """A PNG copy of ``source`` without its parameters under a neutral name in the owner's folder (made once)."""
    path = _copies_dir(studio, row) / f"{index}-{position}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with Image.open(source) as image:
            pixels = image.copy()  # pixels only: the PNG written from it has no text chunks or EXIF
        pixels.info = {}
        pixels.save(partial, format="PNG")
        os.replace(partial, path)
    return str(path)


def _copies_dir(studio: Studio, row: dict) -> Path:
    return output_dir(studio.config, row["owner"]) / "compare" / str(row["id"])


def _label(loras: list[tuple[str, float]]) -> str:
    return " + ".join(f"{ref.rsplit('/', 1)[-1]}:{weight:g}" for ref, weight in loras) or "no LoRA"


def _other(side: str) -> str:
    return "b" if side == "a" else "a"
