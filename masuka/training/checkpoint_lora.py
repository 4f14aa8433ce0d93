"""A run's checkpoints as LoRAs: render every one with the same prompts and seed (a grid, checkpoints x prompts) to
pick the step before the LoRA overfits, then keep the chosen one in the LoRA library ("Use this checkpoint").

The grid is an ordinary X/Y grid (:mod:`masuka.image.grid`): a LoRA axis over the checkpoints' files and a prompt
axis, so every cell is a history row with its checkpoint's file, and the grid can be queued like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, plan_request
from masuka.image.grid import Axis, Cell, plan_grid
from masuka.loras.library import free_lora_name, register_lora
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.training import checkpoints
from masuka.training.backends import trainer_catalog
from masuka.training.options import TrainOptions, lora_name
from masuka.training.runs import _remote, _run_row

MAX_PROMPTS = 8


@dataclass
class Comparison:
    """A planned checkpoint grid: its axes and cells, and the checkpoints' steps (the X axis, in order)."""

    axes: list[Axis]
    cells: list[Cell]
    steps: list[int]


def checkpoint_loras(studio: Studio, run_id: int | None, owner: str = LOCAL_USER,
                     admin: bool = True) -> list[tuple[int, Path]]:
    """(step, LoRA file) of every checkpoint of the run, oldest first; refused when there is none."""
    row = _run_row(studio, run_id, owner, admin)
    if _remote(row):
        raise InvalidInput(f"Run {row.id} trained at {trainer_catalog()[row.state['backend']]['name']}: a remote run "
                           "keeps no checkpoints, so only local runs can be compared or have a checkpoint kept.")
    run_dir = row.state.get("run_dir")
    found = [(c.step, c.lora) for c in checkpoints.checkpoints(studio.config.absolute(run_dir))
             if c.lora] if run_dir else []
    if not found:
        raise InvalidInput(f"Run {row.id} has no checkpoint to compare: checkpoints are saved every 'Save every' "
                           "steps and at the end of a run.")
    return found


def plan_comparison(studio: Studio, run_id: int | None, prompts: list[str], base: ImageRequest,
                    admin: bool = False, confirm_large: bool = False) -> Comparison:
    """The grid of every checkpoint (X) by every prompt (Y), one seed for all; ``base`` gives the other settings.

    Without prompts, the run's sample prompts are used."""
    row = _run_row(studio, run_id, base.owner, admin)
    found = checkpoint_loras(studio, row.id, base.owner, admin)
    options = TrainOptions.from_dict(row.params)
    prompts = [p.strip() for p in prompts if p and p.strip()] or options.sample_prompts
    if not prompts:
        raise InvalidInput("Give at least one prompt to render the checkpoints with.")
    if len(prompts) > MAX_PROMPTS:
        raise InvalidInput(f"At most {MAX_PROMPTS} prompts per comparison (got {len(prompts)}).")
    axes = [Axis("lora", tuple(str(path) for _step, path in found))]
    if len(prompts) > 1:  # every prompt replaces the first one, whole (a prompt S/R axis)
        axes.append(Axis("prompt", tuple(prompts)))
    request = replace(base, prompt=prompts[0], model=options.base, loras=[], batch=1)
    plan_request(studio, request)  # the settings every cell shares, checked once (not blamed on a cell)
    cells = plan_grid(studio, request, axes, confirm_large=confirm_large)
    return Comparison(axes, cells, [step for step, _path in found])


def use_checkpoint(studio: Studio, run_id: int | None, step: int, owner: str = LOCAL_USER, admin: bool = True) -> dict:
    """Copy the checkpoint at ``step`` into the run's LoRA folder as ``<name>-step<step>.safetensors`` (base, trigger,
    step and run in its header) and add it to the owner's LoRA library."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from masuka.training.export import verify_lora

    row = _run_row(studio, run_id, owner, admin)
    found = dict(checkpoint_loras(studio, row.id, owner, admin))
    if step not in found:
        raise InvalidInput(f"Run {row.id} has no checkpoint at step {step}: it has steps "
                           f"{', '.join(map(str, found))}.")
    state = row.state
    options = TrainOptions.from_dict(row.params)
    folder = studio.config.absolute(state["run_dir"]) / "lora"
    run_name = lora_name(options, state["dataset"], state["architecture"], row.id)
    name = free_lora_name(studio, row.owner, f"{run_name}-step{step}", folder)
    with safe_open(found[step], framework="pt") as handle:
        header = dict(handle.metadata() or {})
    path = folder / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(load_file(found[step]), path,
              metadata={**header, "masuka.steps": str(step), "masuka.run": str(row.id)})
    info = verify_lora(path, state["architecture"])
    lora_id = register_lora(studio, info, row.owner, "checkpoint", job_id=row.id)
    return {"lora": str(path), "name": info.name, "lora_id": lora_id, "step": step, "run": row.id,
            "owner": row.owner}
