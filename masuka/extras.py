"""The optional extras named in ``requirements-extras.txt``: which are installed, and what each enables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from masuka.compat import installed

EXTRAS_FILE = Path(__file__).resolve().parent.parent / "requirements-extras.txt"
#: extras that do nothing without a CUDA device (bitsandbytes' 8-bit and NF4 layers)
CUDA_ONLY = frozenset({"bitsandbytes"})


@dataclass(frozen=True)
class Extra:
    name: str
    spec: str
    enables: str

    @property
    def version(self) -> str | None:
        return installed(self.name)

    @property
    def needs_cuda(self) -> bool:
        return self.name in CUDA_ONLY


def install_line(package: str) -> str:
    """How to install ``package``, as refusals quote it: an extra within its range in the extras file, else
    plainly."""
    found = next((extra for extra in extras() if extra.name == package.lower()), None)
    return f"pip install '{found.spec}'" if found else f"pip install {package}"


def extras(path: Path = EXTRAS_FILE) -> list[Extra]:
    """The extras file's requirement lines, each with the comment that says what it enables."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        spec, _, comment = line.partition("#")
        match = re.match(r"\s*([A-Za-z0-9_.-]+)", spec)
        if match:
            found.append(Extra(match.group(1).lower(), spec.strip(), comment.strip()))
    return found
