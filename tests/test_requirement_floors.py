"""requirements.txt's lower bounds are ones the tested set works with: Colab (and anyone installing the ranges over
packages they already have) keeps what is in range, so a floor below what the locked libraries need lets in a
version they refuse or turn off."""

from __future__ import annotations

import importlib.metadata

from packaging.requirements import Requirement as Range
from packaging.version import Version

from masuka.compat import canonical, installed, pins
from tests.conftest import ROOT


def ranges() -> dict[str, Range]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if text := line.partition("#")[0].strip():
            requirement = Range(text)
            found[canonical(requirement.name)] = requirement
    return found


def floor(requirement: Range) -> Version | None:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", ">", "==", "~=")]
    return max(bounds) if bounds else None


def test_each_floor_is_what_the_locked_libraries_declare_they_need():
    """accelerate 1.16 declares torch>=2.6, diffusers 0.42 huggingface-hub>=1.32 and safetensors>=0.8: a floor
    under those admits a set the resolver refuses to pair with the tested libraries."""
    wanted, locked = ranges(), pins((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    low = []
    for name in wanted:
        if installed(name) != locked.get(name):  # the locked release's declarations only
            continue
        for text in importlib.metadata.requires(name) or []:
            needed = Range(text)
            other = canonical(needed.name)
            if other == name or other not in wanted or (needed.marker and not needed.marker.evaluate({"extra": ""})):
                continue
            have, need = floor(wanted[other]), floor(needed)
            if need is not None and (have is None or have < need):
                low.append(f"{name} {locked[name]} needs {needed.name}{needed.specifier}; requirements.txt: "
                           f"{wanted[other]}")
    assert low == []


def test_transformers_keeps_pytorch_on_at_the_torch_floor(monkeypatch):
    """transformers 5 declares no torch requirement but turns PyTorch off below 2.6 (``is_torch_available``):
    at the torch floor of requirements.txt it must keep it on."""
    from transformers.utils import import_utils

    lowest = str(floor(ranges()["torch"]))
    monkeypatch.setattr(import_utils, "_is_package_available",
                        lambda name, return_version=False: (True, lowest) if return_version else True)
    assert import_utils.is_torch_available.__wrapped__() is True, f"transformers turns torch {lowest} off"
