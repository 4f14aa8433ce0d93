"""Holds across processes: a model repo or LoRA file that another process on the data dir uses (the app, while the
CLI deletes) is not deleted until that process lets it go or is gone, and work it starts during a deletion waits
for that deletion's end."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from masuka.errors import InvalidInput
from masuka.loras import library
from masuka.loras.imports import import_lora_file
from masuka.loras.library import delete_lora
from masuka.models.hub import repo_cache_folder
from masuka.models.manage import delete_model
from tests.loras.test_imports import write_flux_lora
from tests.models.in_use import REFUSED, SHA, use_cache

REPO = "acme/tiny"
#: the other process: it opens the data dir, then holds each thing a line of its input names ("model <repo>",
#: "lora <file>") through the real API, saying "held" or why not, until its input ends
CHILD = """
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.loras.usage import lora_files_in_use
from masuka.models.manage import holding_repos
from masuka.studio import Studio

studio = Studio.open(Config.from_env(data_dir=Path(sys.argv[1]), auth=""))
print("ready", flush=True)
with ExitStack() as holds:
    for line in iter(sys.stdin.readline, ""):
        kind, thing = line.split()
        print("taking", flush=True)
        try:
            holds.enter_context(holding_repos(studio, thing) if kind == "model" else
                                lora_files_in_use(studio, [Path(thing)]))
            print("held", flush=True)
        except InvalidInput as error:
            print(error, flush=True)
studio.close()
"""


class Other:
    """A second MASUKA process on a studio's data dir (:data:`CHILD`), whose lines are read as they come."""

    def __init__(self, studio) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", CHILD, str(studio.config.data_dir)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        cwd=Path(__file__).parents[1], env=os.environ)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line.strip()) for line in self.process.stdout],
                         daemon=True).start()

    def ask(self, line: str) -> None:
        """Have it hold what ``line`` names; returns once it has started to."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        assert self.answer() == "taking"

    def answer(self, timeout: float = 120) -> str:
        """Its next line ("" when none comes within ``timeout`` seconds)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""


@contextmanager
def other_process(studio) -> Iterator[Other]:
    """:class:`Other`, once it has opened the data dir; killed at the end if still running."""
    child = Other(studio)
    try:
        assert child.answer() == "ready"
        yield child
    finally:
        child.process.kill()
        child.process.wait()


@pytest.fixture
def things(studio, monkeypatch, tmp_path) -> Path:
    """A repo in the Hugging Face cache (:data:`REPO`) and a LoRA of the library ("style"), whose file is
    returned."""
    snapshot = repo_cache_folder(REPO, use_cache(monkeypatch, tmp_path / "hf")) / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    write_flux_lora(tmp_path / "style.safetensors")
    return studio.config.absolute(import_lora_file(studio, "local", tmp_path / "style.safetensors")["path"])


def holding_both(child, lora: Path) -> None:
    """Have ``child`` hold the repo and the LoRA file."""
    for thing in (f"model {REPO}", f"lora {lora}"):
        child.ask(thing)
        assert child.answer() == "held"


def test_what_another_process_holds_is_not_deleted_until_it_lets_go(studio, things):
    with other_process(studio) as child:
        holding_both(child, things)
        with pytest.raises(InvalidInput, match=REFUSED):
            delete_model(studio, REPO)
        with pytest.raises(InvalidInput, match="LoRA 'style' cannot be deleted yet: an image request"):
            delete_lora(studio, "style", "local", True)
        child.process.stdin.close()
        assert child.process.wait() == 0
    assert studio.store.count("holds") == 0  # it removed its holds as it let go
    assert delete_model(studio, REPO) > 0
    delete_lora(studio, "style", "local", True)
    assert not repo_cache_folder(REPO).exists() and not things.exists()


def test_what_a_killed_process_held_is_deleted_and_its_holds_forgotten(studio, things):
    with other_process(studio) as child:
        holding_both(child, things)
        child.process.kill()
        child.process.wait()
    assert studio.store.count("holds") == 2  # left behind by the killed process
    assert delete_model(studio, REPO) > 0
    delete_lora(studio, "style", "local", True)
    assert studio.store.count("holds") == 0


def test_work_another_process_starts_during_a_deletion_waits_and_finds_the_lora_deleted(studio, things, monkeypatch):
    """Its request comes between the deletion's checks and the file's removal: it takes no hold before the deletion
    has ended, then is told the LoRA was deleted."""
    checked = library.while_unused
    meanwhile: list[str] = []

    @contextmanager
    def checks_then_a_request_comes(*args, **kwargs) -> Iterator[None]:
        with checked(*args, **kwargs):
            child.ask(f"lora {things}")
            meanwhile.append(child.answer(timeout=2))
            yield

    monkeypatch.setattr(library, "while_unused", checks_then_a_request_comes)
    with other_process(studio) as child:
        delete_lora(studio, "style", "local", True)
        assert meanwhile == [""]  # no answer while the deletion ran
        assert child.answer() == "LoRA 'style' was deleted: choose another LoRA and try again."
        assert studio.store.count("holds") == 0
