"""Whether the installed libraries accept each other: the version checks they make at run time.

``pip check`` reads only package metadata; transformers, diffusers and peft also refuse each other's versions
when a feature is first used (transformers 5.24 refuses peft below 0.22, for example). Those minimums live in
the libraries' own modules, so MASUKA reads them from there instead of copying them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from dataclasses import dataclass

from packaging.markers import Marker
from packaging.version import Version


@dataclass(frozen=True)
class Requirement:
    """``checker`` refuses ``package`` below the version held in ``module.attribute``."""

    checker: str
    module: str
    attribute: str
    package: str


RUNTIME_CHECKS = (
    Requirement("transformers", "transformers.integrations.peft", "MIN_PEFT_VERSION", "peft"),
    Requirement("transformers", "transformers.utils.import_utils", "ACCELERATE_MIN_VERSION", "accelerate"),
    Requirement("diffusers", "diffusers.utils.constants", "MIN_PEFT_VERSION", "peft"),
    Requirement("diffusers", "diffusers.utils.constants", "MIN_TRANSFORMERS_VERSION", "transformers"),
    Requirement("transformers", "transformers.utils.import_utils", "BITSANDBYTES_MIN_VERSION", "bitsandbytes"),
    Requirement("transformers", "transformers.utils.import_utils", "TORCHAO_MIN_VERSION", "torchao"),
    Requirement("transformers", "transformers.utils.import_utils", "GGUF_MIN_VERSION", "gguf"),
)
"""peft, accelerate and transformers are required; the last three are optional extras, checked when installed."""


def installed(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def problems(checks: tuple[Requirement, ...] = RUNTIME_CHECKS) -> list[str]:
    """One sentence per refusal the installed libraries would make, naming both packages and the fix."""
    found = []
    for check in checks:
        have = installed(check.package)
        if have is None or installed(check.checker) is None:
            continue
        minimum = getattr(importlib.import_module(check.module), check.attribute)
        if Version(have) < Version(minimum):
            found.append(f"{check.checker} {installed(check.checker)} needs {check.package}>={minimum}, "
                         f"but {check.package} {have} is installed: install the pinned set "
                         f"(pip install -r requirements.lock) or upgrade {check.package}")
    return found


def pins(lock_text: str) -> dict[str, str]:
    """``name -> version`` for the ``name==version ; marker`` lines of a lock that apply to this interpreter."""
    found = {}
    for line in lock_text.splitlines():
        if line.startswith((" ", "#")) or "==" not in line:
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = requirement.partition("==")
        found[canonical(name)] = version.strip()
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def moved(lock_text: str) -> list[str]:
    """One line per locked package whose installed version differs from its pin (absent ones are skipped)."""
    lines = []
    for name, pinned in sorted(pins(lock_text).items()):
        have = installed(name)
        if have is not None and Version(have).public != Version(pinned).public:
            lines.append(f"{name} {pinned} -> {have}")
    return lines
