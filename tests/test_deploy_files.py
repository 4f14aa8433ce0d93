"""What the deployment files tell a user to do works: the Docker examples make the user an admin, the Colab notebook
reads every key MASUKA reads from Colab's Secrets, and the Space runs a Python ZeroGPU offers, its README saying
which pins differ from the ones CI tested."""

from __future__ import annotations

import json
import re
import shlex
import sys
import types

from masuka.compat import canonical
from tests.conftest import ROOT

#: the Pythons ZeroGPU runs (https://huggingface.co/docs/hub/spaces-zerogpu, "Supported Versions": 3.12.12, 3.10.13)
ZEROGPU_PYTHONS = ("3.12", "3.10")


def run_env(command: str) -> dict[str, str]:
    """The ``-e NAME=VALUE`` settings of a ``docker run`` command line."""
    words = shlex.split(command.replace("\\\n", " "))
    return dict(words[at + 1].split("=", 1) for at, word in enumerate(words) if word == "-e" and "=" in words[at + 1])


def signs_in_an_admin(settings: dict[str, str], monkeypatch) -> bool:
    from masuka.config import Config

    for name in ("MASUKA_AUTH", "MASUKA_ADMINS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        if name.startswith("MASUKA_"):
            monkeypatch.setenv(name, value)
    config = Config.from_env()
    return any(config.is_admin(user.partition(":")[0]) for user in settings["MASUKA_AUTH"].split(","))


def test_the_docker_run_examples_make_their_user_an_admin(monkeypatch):
    """With a sign-in list only MASUKA_ADMINS are admins: without it nobody may save API keys or defaults."""
    header = [line[1:].strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
              if line.startswith("#") and "docker run" in line]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"^docker run .*?(?<!\\)$", readme, re.MULTILINE | re.DOTALL)
    assert header and shown
    for command in (*header, *shown):
        settings = run_env(command)
        assert "MASUKA_AUTH" in settings, command
        assert signs_in_an_admin(settings, monkeypatch), f"no admin: {command}"


def test_the_colab_notebook_reads_every_key_masuka_reads_from_colab_secrets(monkeypatch):
    """One loop over MASUKA's own key list (:func:`masuka.keys.services`): each secret that is set reaches the
    environment, one that is not is passed over."""
    from masuka.keys import services

    notebook = json.loads((ROOT / "assets" / "masuka_colab.ipynb").read_text(encoding="utf-8"))
    [cell] = ["".join(cell["source"]) for cell in notebook["cells"]
              if cell["cell_type"] == "code" and "userdata" in "".join(cell["source"])]
    names = [name for declared in services().values() for name in declared.key_env]
    secrets = {name: f"secret-of-{name}" for name in names if name != "GOOGLE_API_KEY"}  # one left unset

    class SecretNotFoundError(Exception):
        pass

    def get(name: str) -> str:
        if name not in secrets:
            raise SecretNotFoundError(name)
        return secrets[name]

    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=get)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in names:
        monkeypatch.delenv(name, raising=False)
    exec(compile(cell, "colab-cell", "exec"), {})  # PASSWORD left empty: no auth file is written
    import os

    assert {name: os.environ.get(name) for name in names} == {name: secrets.get(name) for name in names}
    assert {"FAL_KEY", "REPLICATE_API_TOKEN", "CIVITAI_API_KEY"} <= set(names)


def test_the_space_runs_a_zerogpu_python_and_the_readme_names_the_pins_that_differ_from_ci():
    """ZeroGPU offers 3.12 and 3.10, CI tests the universal lock on 3.11 (.ci/lock): the Space installs the lock's
    pins for its own Python, which differ where a package's release depends on the Python; the README says so."""
    from packaging.markers import Marker

    from tests.test_space import front_matter

    space = str(front_matter()["python_version"])
    assert space.startswith(ZEROGPU_PYTHONS), f"ZeroGPU does not run Python {space}"
    ci = re.search(r"--python-version (\d+\.\d+)", (ROOT / ".ci" / "lock").read_text(encoding="utf-8"))
    assert ci, ".ci/lock names the Python it locks for"

    def pins(python: str) -> dict[str, str]:
        environment = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux"}
        found = {}
        for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
            if line.startswith((" ", "#")) or "==" not in line:
                continue
            requirement, _, marker = line.partition(";")
            if not marker.strip() or Marker(marker.strip()).evaluate(environment):
                name, _, version = requirement.partition("==")
                found[canonical(name)] = version.strip()
        return found

    tested, installed = pins(ci[1]), pins(space)
    differ = sorted(name for name in tested.keys() | installed.keys() if tested.get(name) != installed.get(name))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    spaces = readme[readme.index("**Hugging Face Spaces**"):readme.index("**Docker Space**")]
    if space != ci[1]:
        assert ci[1] in spaces and space in spaces, "the README says which Python CI tested and which the Space runs"
        missing = [name for name in differ if name not in spaces]
        assert not missing, f"the Space (Python {space}) installs other pins of {missing} than CI (Python {ci[1]})"
