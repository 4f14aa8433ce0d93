"""The repository is a valid Gradio-SDK Hugging Face Space: the YAML block at the top of the README names the
Gradio that the lock pins, the entry file that exists, and ZeroGPU hardware."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with a --- YAML block (the Space configuration)"
    return yaml.safe_load(match.group(1))


def locked(package: str) -> str:
    match = re.search(rf"^{package}==([^\s;]+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.lock"
    return match.group(1)


def test_space_configuration_matches_the_lock_and_the_repository():
    config = front_matter()
    assert config["sdk"] == "gradio" and config["sdk_version"] == locked("gradio")
    assert (ROOT / config["app_file"]).is_file() and config["app_file"] == "app.py"
    assert re.fullmatch(r"3\.\d+(\.\d+)?", str(config["python_version"]))
    assert config["suggested_hardware"] == "zero-a10g"  # ZeroGPU, which only Gradio-SDK Spaces get
    assert {"title", "emoji", "colorFrom", "colorTo", "short_description"} <= set(config)
    assert len(config["short_description"]) <= 60


def test_the_space_installs_a_gradio_its_requirements_accept():
    from packaging.requirements import Requirement

    [gradio] = [Requirement(line.split("#")[0]) for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.startswith("gradio")]
    assert gradio.specifier.contains(front_matter()["sdk_version"])
