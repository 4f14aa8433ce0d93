"""Whether the installed libraries accept each other: the version checks they make at run time.

``pip check`` reads only package metadata; transformers, diffusers and peft also refuse each other's versions
when a feature is first used (transformers 5.24 refuses peft below 0.22, for example). Those minimums live in
the libraries' own modules, so MASUKA reads them from there instead of copying them. Besides: whether they fit
requirements.txt's ranges and the ranges they declare on each other (:func:`range_problems`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement as Range
from packaging.version import Version

#: MASUKA's ranges for the packages it runs on
REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "requirements.txt"


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


def range_problems(packages: Iterable[str], requirements_text: str | None = None) -> list[str]:
    """One sentence per package of ``packages`` that is missing, or whose version is outside a range that
    ``requirements_text`` (by default requirements.txt's) or another of ``packages`` declares for it."""
    if requirements_text is None:
        requirements_text = REQUIREMENTS_FILE.read_text(encoding="utf-8")
    versions = {package: installed(package) for package in packages}  # each read parses a METADATA file
    have = {canonical(package): version for package, version in versions.items()}
    wanted = [("requirements.txt", Range(text)) for line in requirements_text.splitlines()
              if (text := line.partition("#")[0].strip())]
    for package, version in versions.items():
        if version:
            wanted += [(f"{package} {version}", Range(text)) for text in importlib.metadata.requires(package) or []]
    found = [f"{package} is not installed" for package, version in versions.items() if not version]
    for who, requirement in wanted:
        version = have.get(canonical(requirement.name))
        if (version and not (requirement.marker and not requirement.marker.evaluate({"extra": ""}))
                and not requirement.specifier.contains(version, prereleases=True)):
            found.append(f"{who} needs {requirement.name}{requirement.specifier}, {version} is installed")
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
