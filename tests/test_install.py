"""Installs: the libraries accept each other at run time, the locks agree with the ranges, Colab keeps its torch."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest
from packaging.requirements import Requirement as Range

from masuka.cli import main
from masuka.compat import Requirement, canonical, installed, pins, problems
from masuka.extras import extras
from tests.conftest import ROOT


def ranges(name: str) -> dict[str, Range]:
    """The ranges in a requirements file and the files it includes with ``-r``."""
    found: dict[str, Range] = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= ranges(line[3:].strip())
        elif line:
            requirement = Range(line)
            found[canonical(requirement.name)] = requirement
    return found


def lock(name: str) -> dict[str, str]:
    return pins((ROOT / name).read_text(encoding="utf-8"))


def test_installed_libraries_accept_each_other():
    """transformers, diffusers and peft check each other's versions only when a feature is first used."""
    assert problems() == []


def test_a_refused_version_is_named(monkeypatch):
    minimums = types.ModuleType("minimums_for_test")
    minimums.MIN_PEFT_VERSION = "999.0"
    monkeypatch.setitem(sys.modules, "minimums_for_test", minimums)
    [line] = problems((Requirement("diffusers", "minimums_for_test", "MIN_PEFT_VERSION", "peft"),))
    assert line.startswith(f"diffusers {installed('diffusers')} needs peft>=999.0, but peft {installed('peft')}")


def test_every_range_is_pinned_inside_it():
    for source, locked in (("requirements.txt", "requirements.lock"),
                           ("requirements-test.txt", "requirements-test.lock")):
        pinned = lock(locked)
        for name, requirement in ranges(source).items():
            assert name in pinned, f"{name} is in {source} but not in {locked}: run bash .ci/lock"
            assert requirement.specifier.contains(pinned[name], prereleases=True), \
                f"{locked} pins {name}=={pinned[name]}, outside {source}'s {requirement}: run bash .ci/lock"


def test_both_locks_pin_the_same_versions():
    runtime, test = lock("requirements.lock"), lock("requirements-test.lock")
    assert {name: test[name] for name in runtime} == runtime


def test_the_lock_leaves_the_torch_build_to_the_installer():
    """torch's version is pinned; its CUDA-only packages are not, so a CPU torch installed first is kept."""
    pinned = lock("requirements-test.lock")
    assert "torch" in pinned
    assert not [name for name in pinned if name.startswith(("nvidia-", "cuda-")) or name == "triton"]


def test_doctor_lists_packages_that_moved_since_a_lock(tmp_path, capsys):
    old = tmp_path / "old.lock"
    old.write_text(f"peft==0.0.1\n    # via -r requirements.txt\ntorch=={installed('torch')}\n", encoding="utf-8")
    assert main(["doctor", "--json", "--against", str(old)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["moved"] == [f"peft 0.0.1 -> {installed('peft')}"]
    assert report["problems"] == [] and report["versions"]["diffusers"] == installed("diffusers")
    old.write_text(f"peft=={installed('peft')}\n", encoding="utf-8")
    assert main(["doctor", "--against", str(old)]) == 0


@pytest.mark.parametrize("name, why", [("missing.lock", "No such file or directory"), ("folder", "Is a directory"),
                                       ("binary.lock", "can't decode")])
def test_doctor_refuses_a_lock_it_cannot_read_in_one_line(tmp_path, capsys, name, why):
    """A lock that is not there (or not a text file) is one ``error:`` line naming it and why, exit 2."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary.lock").write_bytes(b"\xff\xfe\x00peft")
    assert main(["doctor", "--against", str(tmp_path / name)]) == 2
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert not out and line.startswith(f"error: The lock file {tmp_path / name} cannot be read (") and why in line


def test_doctor_reports_a_core_library_outside_the_requirements_ranges(capsys, monkeypatch):
    import masuka.compat

    real = masuka.compat.installed
    monkeypatch.setattr(masuka.compat, "installed", lambda name: "4.57.1" if name == "transformers" else real(name))
    assert main(["doctor", "--json"]) == 2
    found = json.loads(capsys.readouterr().out)["problems"]
    assert any(line.startswith("requirements.txt needs transformers") and line.endswith("4.57.1 is installed")
               for line in found), found


def test_every_extra_says_what_it_enables():
    found = extras()
    core = ranges("requirements.txt")
    assert {extra.name for extra in found} >= {"bitsandbytes", "torchao"}
    for extra in found:
        assert extra.enables and extra.name not in core
        Range(extra.spec)  # a valid requirement line


def test_colab_keeps_its_torch_and_installs_the_ranges():
    notebook = json.loads((ROOT / "assets" / "masuka_colab.ipynb").read_text(encoding="utf-8"))
    code = "".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    keep = next(line for line in code.splitlines() if "colab-keep.txt" in line and "freeze" in line)
    assert all(name in keep for name in ("torch", "torchvision", "torchaudio"))
    assert "pip install -q -r requirements.txt -c /tmp/colab-keep.txt" in code
    assert "python -m masuka doctor" in code


def test_docker_the_space_and_ci_install_the_lock():
    assert "requirements.lock" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    # the Space's builder mounts pre-requirements.txt alone for its first install: a copy of the lock, no -r, less
    # its torch pin (a Space runs the torch its hardware takes: ZeroGPU accepts only the releases it lists)
    *header, copy = (ROOT / "pre-requirements.txt").read_text(encoding="utf-8").split("\n", 3)
    assert all(line.startswith("#") for line in header)
    locked = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    torch_pin = re.search(r"^torch==.*\n(    #.*\n)*", locked, re.MULTILINE)
    assert torch_pin and "torch==" not in copy
    assert copy == locked.replace(torch_pin.group(0), ""), "run bash .ci/lock"
    assert "-r requirements-test.lock" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "--no-deps -r requirements-nodeps.lock" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_what_goes_in_without_dependencies_is_pinned_within_its_extra_range():
    offered = {canonical(extra.name): Range(extra.spec) for extra in extras()}
    nodeps = lock("requirements-nodeps.lock")
    assert nodeps, "requirements-nodeps.lock pins nothing"
    for name, version in nodeps.items():
        assert version in offered[canonical(name)].specifier, (name, version)


def test_lock_pins_follow_their_markers():
    text = ("numpy==1.0 ; python_full_version < '3.0'\n    # via x\nnumpy==2.0 ; python_full_version >= '3.0'\n"
            "pywin32==300 ; sys_platform == 'nonexistent-os'\nsix==1.0\n")
    assert pins(text) == {"numpy": "2.0", "six": "1.0"}
