"""Checkpoint comparison on a tiny run with three checkpoints: a grid of checkpoints x prompts, one history row per
cell, and "Use this checkpoint" putting a loadable LoRA with its step in the library."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images
from masuka.loras.files import inspect_lora
from masuka.loras.library import list_loras
from masuka.store import LOCAL_USER
from masuka.training.checkpoint_lora import checkpoint_loras, plan_comparison
from masuka.training.runs import create_run, start_training

from .test_runs import finish, options

PROMPTS = ["sks, a red fox", "sks, a fox in the snow"]


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_every_checkpoint_is_rendered_and_one_is_kept_as_a_lora(studio, tiny_model, dataset, capsys):
    model = tiny_model("flux")
    run = start_training(studio, options(model, steps=3, save_every=1, keep_last=3, lr=2e-2))
    assert finish(studio, run)["status"] == "completed"
    assert [step for step, _path in checkpoint_loras(studio, run)] == [1, 2, 3]

    data = str(studio.config.data_dir)
    code = main(["runs", "compare", str(run), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--seed", "3",
                 "--steps", "1", "--width", "64", "--height", "64", "--data-dir", data, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["checkpoints"] == [1, 2, 3] and len(out["ids"]) == 6
    rows = [studio.store.get("generations", row_id) for row_id in out["ids"]]
    assert [(r["prompt"], r["seed"], r["loras"][0]["name"]) for r in rows] == [
        (prompt, 3, f"run-{run:05d}-step{step}") for prompt in PROMPTS for step in (1, 2, 3)]
    assert studio.store.count("generations", "status = 'completed'") == 6  # one history row per cell
    made = [pixels(path) for path in out["images"]]
    assert not np.array_equal(made[0], made[2])  # the LoRA moved between step 1 and step 3
    grid = Image.open(out["grid"])
    assert grid.width > 3 * 64 and grid.height > 2 * 64

    code = main(["runs", "use", str(run), "--step", "2", "--data-dir", data, "--json"])
    kept = json.loads(capsys.readouterr().out)
    assert code == 0 and kept["name"].endswith(f"-run{run}-step2")
    info = inspect_lora(kept["lora"])
    assert (info.metadata["masuka.steps"], info.metadata["masuka.run"], info.trigger) == ("2", str(run), "sks")
    assert info.metadata["masuka.base_model"] == str(model)
    assert kept["name"] in [row["name"] for row in list_loras(studio, LOCAL_USER)]
    request = ImageRequest(prompt=PROMPTS[0], model=str(model), steps=1, width=64, height=64, seed=3)
    plain = pixels(generate_images(studio, request)[0].path)
    with_lora = pixels(generate_images(studio, ImageRequest(**{**request.__dict__, "loras": [(kept["name"], 1.0)]})
                                       )[0].path)
    assert not np.array_equal(plain, with_lora)
    assert np.array_equal(with_lora, made[1])  # by name from the library: the step-2 cell, exactly


def test_a_run_without_checkpoints_and_a_missing_step_are_refused(studio, tiny_model, dataset, capsys):
    run = create_run(studio, options(tiny_model("flux")))
    base = ImageRequest(prompt="", model="")
    with pytest.raises(InvalidInput, match="no checkpoint to compare"):
        plan_comparison(studio, run, ["a fox"], base)
    code = main(["runs", "use", str(run), "--step", "9", "--data-dir", str(studio.config.data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoint" in err and len(err.strip().splitlines()) == 1
