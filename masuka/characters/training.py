"""Training a character's LoRA: a run on its dataset with the character preset, then the LoRA joins the picker
with the trigger word and a default weight, and a test grid (fixed prompts x seeds) shows whether it worked."""

from __future__ import annotations

import logging
import threading
from dataclasses import fields
from typing import Any

from masuka import jobs
from masuka.characters.library import find_character, update_character
from masuka.characters.making import FLAGGED, ensure_dataset
from masuka.characters.use import CHARACTER_KEY, DEFAULT_WEIGHT_KEY
from masuka.config import on_zerogpu
from masuka.datasets.library import count_images, find_dataset
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest
from masuka.image.grid import Axis, plan_grid, run_grid
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.training.options import TrainOptions
from masuka.training.runs import create_run, submit_run
from masuka.zerogpu import ELSEWHERE, refuse_local_training

log = logging.getLogger(__name__)
DEFAULT_WEIGHT = 0.73
#: what suits a character LoRA from a few dozen views: enough steps to learn a face, rank 16, mild dropout
CHARACTER_PRESET = {"steps": 1500, "rank": 16, "lr": 1e-4, "caption_dropout": 0.05, "save_every": 500}
#: the test grid: these scenes (after "photo of <trigger>, ") x these seeds
GRID_SCENES = ("portrait, looking at the camera", "walking in a city street at night", "reading a book in a cafe")
GRID_SEEDS = ("1", "2")


def train_character(studio: Studio, ref: str | int, owner: str = LOCAL_USER, base: str = "", admin: bool = False,
                    weight: float = DEFAULT_WEIGHT, interrupt: threading.Event | None = None, **options: Any) -> int:
    """Queue a training run on the character's dataset (the preset, then ``options``: any :class:`TrainOptions`
    field); returns the run id. When it completes the LoRA gets the default ``weight`` and a test grid.
    ``interrupt`` (set by a signal) saves a checkpoint and marks the run ``interrupted``. A dataset deleted in the
    Datasets tab is made again first (:func:`ensure_dataset`); on ZeroGPU the run is refused before that."""
    character = find_character(studio, ref, owner, admin)
    if not -4 <= float(weight) <= 4:
        raise InvalidInput(f"The LoRA weight must be between -4 and 4 (got {weight:g}).")
    known = {f.name for f in fields(TrainOptions)} - {"dataset", "base"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInput(f"Unknown training option(s): {', '.join(unknown)}.")
    settings = {**CHARACTER_PRESET, **{k: v for k, v in options.items() if v is not None}}
    if on_zerogpu():  # refused before a deleted dataset is made again (captioning is GPU work): nothing written
        refuse_local_training(_train_remotely(studio, character))
    character = ensure_dataset(studio, character, "train it")
    if not count_images(studio, character["dataset_id"]):
        raise InvalidInput(f"Character {character['name']!r} has no kept view: {_why_none(character)}")
    run_id = create_run(studio, TrainOptions(dataset=str(character["dataset_id"]), base=base, **settings),
                        character["owner"], made_for=("character", character["id"]))

    def add_run(state: dict) -> None:
        state["runs"] = [*state.get("runs", []), run_id]
        state["weights"] = {**state.get("weights", {}), str(run_id): float(weight)}

    update_character(studio, character, add_run)
    submit_run(studio, run_id, interrupt)  # once complete, however it ran: finish_character
    return run_id


def _why_none(character: dict) -> str:
    """Why a character has no kept view, and what to do, from its views' reasons: flagged by the safety check (a
    lower identity threshold would not help), else rejected."""
    views = character["state"].get("views", [])
    flagged = sum(1 for v in views if v["reason"] == FLAGGED)
    if views and flagged == len(views):
        return (f"all were {FLAGGED}. Regenerate views (each with a new seed), create it again with other prompts "
                "or photos, or add real photos.")
    others = f" ({flagged} {FLAGGED})" if flagged else ""
    return (f"all were rejected{others}. Regenerate views, create it again with a lower identity threshold, or add "
            "real photos.")


def _train_remotely(studio: Studio, character: dict) -> str:
    """What a ZeroGPU Space says instead of training a character locally (characters train locally only): train
    its dataset remotely; one deleted in the Datasets tab is made again first (:func:`ensure_dataset`)."""
    if character["dataset_id"] is not None:
        dataset = find_dataset(studio, character["dataset_id"], character["owner"])
        name, ref, first = dataset["name"], dataset["id"], ""
    else:  # its making made one: it was deleted since
        name = ref = character["state"].get("dataset") or character["name"]
        first = (f"Its dataset {name!r} was deleted: regenerating a view or adding a photo makes it again from the "
                 f"kept views (so does training the character {ELSEWHERE}). ")
    return (f"{first}Train the character's dataset {name!r} remotely instead: pick it in the Train tab with the fal "
            f"or Replicate backend, or `python -m masuka train --dataset {ref} --base MODEL --backend fal` (that "
            "service's API key needed); the LoRA joins the library as that dataset's, without the character's test "
            "grid and default weight.")


def finish_character(studio: Studio, character_id: int, run_id: int) -> dict | None:
    """Link the run's LoRA to the character (default weight in the library) and render the test grid, once the run
    completes (whatever ran it: :data:`~masuka.training.runs.MADE_FOR`); None when the character is gone or the
    run is not one of its own, :class:`NotFound` when it goes meanwhile (the LoRA is then left as it was)."""
    character = studio.store.get("characters", character_id)
    run = jobs.get(studio.store, run_id)
    if character is None or run_id not in character["state"].get("runs", []) or run.owner != character["owner"]:
        return None
    result = run.result
    if not result.get("lora_id"):
        return character
    weight = run_weight(character, run_id)
    lora = studio.store.existing("loras", result["lora_id"])
    with studio.store.transaction():  # a character deleted meanwhile (NotFound) leaves the LoRA as it was
        character = update_character(studio, character, lora=lora["name"])
        studio.store.update("loras", lora["id"], metadata={**(lora["metadata"] or {}),
                                                           DEFAULT_WEIGHT_KEY: f"{weight:g}",
                                                           CHARACTER_KEY: character["name"]})
    try:
        grid = test_grid(studio, character, run)
        outcome = {"grid": studio.config.relative(grid), "grid_error": None}
    except Exception as error:  # the LoRA is done; a grid that fails is reported, not a failed run
        log.warning("test grid of character %s failed: %s", character_id, error)
        outcome = {"grid_error": str(error)}
    return update_character(studio, character, lambda state: state.update(outcome))


def trained_character(studio: Studio, run: jobs.JobRow) -> dict | None:
    """The character that ``run`` (queued by :func:`train_character`) trains, as it is now; None when it was deleted
    since."""
    character = studio.store.get("characters", run.state["made_for"][1])
    return character if character is not None and character["owner"] == run.owner else None


def run_weight(character: dict, run_id: int) -> float:
    """The LoRA weight the Train that queued run ``run_id`` asked for (each run keeps its own)."""
    return character["state"].get("weights", {}).get(str(run_id), DEFAULT_WEIGHT)


def test_grid(studio: Studio, character: dict, run: jobs.JobRow) -> Any:
    """The fixed prompts x seeds with the character's LoRA on the run's base model; returns the grid's path."""
    options = TrainOptions.from_dict(run["params"])
    weight = run_weight(character, run["id"])
    base = ImageRequest(prompt=f"photo of {character['trigger']}, {GRID_SCENES[0]}", model=run["model"],
                        loras=[(character["lora"], weight)], owner=character["owner"], steps=options.sample_steps,
                        width=options.resolution, height=options.resolution, seed=int(GRID_SEEDS[0]))
    axes = [Axis("prompt", GRID_SCENES), Axis("seed", GRID_SEEDS)]
    return run_grid(studio, axes, plan_grid(studio, base, axes)).grid
