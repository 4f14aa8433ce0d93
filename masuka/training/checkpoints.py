"""Checkpoints of a run: LoRA weights (safetensors), optimizer + LR scheduler + RNG state (torch, read back with
``weights_only=True``) and the step, in ``checkpoint-<step>`` folders of which the last K are kept. Each also
holds the LoRA as a file diffusers' ``load_lora_weights`` accepts (``lora_file`` in ``state.json``), so any
checkpoint can be rendered, compared and kept (:mod:`masuka.training.checkpoint_lora`).

A folder is written under a temporary name and renamed when complete, so a crash mid-save never leaves a
half checkpoint that a resume would trust; a save that fails (a full disk) removes its half-written folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "checkpoint-"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    @property
    def lora(self) -> Path | None:
        """The checkpoint's LoRA file for ``load_lora_weights`` (None for checkpoints saved without one)."""
        name = json.loads((self.path / "state.json").read_text()).get("lora_file")
        return self.path / name if name and (self.path / name).is_file() else None


def checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints of a run, oldest first."""
    found = []
    for path in Path(run_dir).glob(f"{PREFIX}*"):
        if path.is_dir() and path.name[len(PREFIX):].isdigit() and (path / "state.json").is_file():
            found.append(Checkpoint(path, int(path.name[len(PREFIX):])))
    return sorted(found, key=lambda c: c.step)


def latest(run_dir: Path) -> Checkpoint | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def save(run_dir: Path, step: int, lora: dict[str, dict[str, Any]], optimizer: Any, scheduler: Any,
         extra: dict[str, Any], keep_last: int, write_lora: Callable[[Path], Path] | None = None) -> Checkpoint:
    """Write a checkpoint for ``step`` (``lora``: state dicts by module) and drop all but the last ``keep_last``.

    ``write_lora(folder)`` writes the loadable LoRA file into the checkpoint's folder and returns its path."""
    import torch
    from safetensors.torch import save_file

    final = Path(run_dir) / f"{PREFIX}{step:06d}"
    partial = final.with_name(final.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        for module, state in lora.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, partial / f"{module}.safetensors")
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
                   partial / "training_state.pt")
        if write_lora is not None:
            extra = {**extra, "lora_file": write_lora(partial).name}
        (partial / "state.json").write_text(json.dumps({"step": step, "modules": sorted(lora), **extra}, indent=1))
    except BaseException:  # a full disk, say: the half-written folder goes, the previous checkpoints stay
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old.path, ignore_errors=True)
    return Checkpoint(final, step)


def load(checkpoint: Checkpoint, optimizer: Any, scheduler: Any) -> tuple[dict[str, dict[str, Any]], dict]:
    """Restore optimizer, scheduler and RNG state in place; return the LoRA state dicts and ``state.json``."""
    import torch
    from safetensors.torch import load_file

    state = json.loads((checkpoint.path / "state.json").read_text())
    lora = {module: load_file(checkpoint.path / f"{module}.safetensors") for module in state["modules"]}
    training = torch.load(checkpoint.path / "training_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    torch.set_rng_state(training["rng"]["torch"])
    if "cuda" in training["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(training["rng"]["cuda"])
    return lora, state
