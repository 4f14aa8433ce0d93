"""What unfinished work uses: a LoRA, or a training run's checkpoints and LoRAs, may not be deleted while queued or
running work (a queue job, a background job, a generation) names it."""

from __future__ import annotations

import json
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.store import QUEUE_UNFINISHED, UNFINISHED
from masuka.studio import Studio


def refuse_if_used(studio: Studio, what: str, files: Path, names: list[str]) -> None:
    """:class:`InvalidInput` when unfinished work uses ``files`` (a folder, or one file) or a LoRA by one of
    ``names`` (library names); ``what`` names the thing to delete in the message."""
    where = studio.config.relative(files)
    needles = [f"{where}/" if files.is_dir() else where, *(json.dumps(name, ensure_ascii=False) for name in names)]
    for table, column, statuses in (("queue", "params", QUEUE_UNFINISHED), ("jobs", "params", UNFINISHED),
                                    ("generations", "loras", UNFINISHED)):
        marks = ", ".join("?" * len(statuses))
        for needle in needles:
            using = studio.store.find(table, f"status in ({marks}) and instr({column}, ?) > 0",
                                      [*statuses, needle], limit=1)
            if using:
                raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {using[0]['id']}) uses "
                                   "it. Let it finish or stop it first.")
