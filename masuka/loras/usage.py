"""What unfinished work uses: a LoRA, or a training run's checkpoints and LoRAs, may not be deleted while queued or
running work (a queue job, a background job, a generation) names it."""

from __future__ import annotations

import json
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.store import LOCAL_USER, QUEUE_UNFINISHED, UNFINISHED
from masuka.studio import Studio


def refuse_if_used(studio: Studio, what: str, files: Path, names: list[tuple[str, str]]) -> None:
    """:class:`InvalidInput` when unfinished work uses ``files`` (a folder, or one file) or calls a LoRA by one of
    ``names`` ((library name, its owner): only the owner's work calls it so, anyone's for a shared LoRA); ``what``
    names the thing to delete in the message."""
    where = studio.config.relative(files)
    needles = [(f"{where}/" if files.is_dir() else where, None),
               *((json.dumps(name, ensure_ascii=False), None if owner == LOCAL_USER else owner)
                 for name, owner in names)]
    for table, column, statuses in (("queue", "params", QUEUE_UNFINISHED), ("jobs", "params", UNFINISHED),
                                    ("generations", "loras", UNFINISHED)):
        marks = ", ".join("?" * len(statuses))
        for needle, owner in needles:
            using = studio.store.find(table, f"status in ({marks}) and instr({column}, ?) > 0"
                                      + (" and owner = ?" if owner else ""),
                                      [*statuses, needle, *([owner] if owner else [])], limit=1)
            if using:
                raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {using[0]['id']}) uses "
                                   "it. Let it finish or stop it first.")
