"""Where a video job keeps copies of its input files, and whose job a copy is (read by :mod:`masuka.access`,
so only the standard library here)."""

from __future__ import annotations

import re

#: where those copies are kept, under the outputs dir, each named by :func:`input_copy_name`
INPUTS_FOLDER = ("videos", "inputs")
INPUT_COPY = re.compile(r"(\d{6,})(?:-[\w-]+)?\.\w+")


def input_copy_name(job_id: int, name: str, suffix: str) -> str:
    """The file name job ``job_id``'s input ``name`` (a request field holding a file, or ``reference-<n>``) is
    kept under: ``<job, 6 digits>-<name><suffix>``, the first frame just ``<job><suffix>``."""
    stem = f"{job_id:06d}" if name == "image" else f"{job_id:06d}-{name}"
    return f"{stem}{suffix.lower()}"


def input_copy_job(file_name: str) -> int | None:
    """The job whose input a file named by :func:`input_copy_name` is, or None for any other name."""
    match = INPUT_COPY.fullmatch(file_name)
    return int(match.group(1)) if match else None
