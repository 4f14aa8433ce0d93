"""The LoRA library as the Models tab and the CLI manage it: an admin sees every owner's LoRAs, and a LoRA can be
deleted (the user's own, any for an admin) unless queued work uses it."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.loras.imports import import_lora_file
from masuka.loras.library import delete_lora, list_loras
from masuka.queue.jobs import add_job
from masuka.studio import Studio
from masuka.ui import models
from tests.loras.test_imports import write_flux_lora


@pytest.fixture
def team(tmp_path):
    """A studio shared by alice and bob, with admin, each with a LoRA of their own."""
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:pa,bob:pb,admin:pc"))
    for owner in ("alice", "bob"):
        write_flux_lora(tmp_path / f"{owner}-style.safetensors")
        import_lora_file(studio, owner, tmp_path / f"{owner}-style.safetensors")
    yield studio
    studio.close()


def asking(user: str) -> gr.Request:
    return gr.Request(username=user)


def test_an_admin_sees_every_owner_s_loras_in_the_models_tab_but_picks_only_usable_ones(team):
    table = models.loras_view(team, asking("admin"))
    assert sorted((row[0], row[-1]) for row in table) == [("alice-style", "alice"), ("bob-style", "bob")]
    assert [row[0] for row in models.loras_view(team, asking("alice"))] == ["alice-style"]
    assert list_loras(team, "admin", True) == [], "the pickers offer an admin's own and the shared LoRAs only"
    _table, picker = models.library_view(team, asking("admin"))
    assert sorted(label for label, _id in picker.choices) == ["alice-style (alice)", "bob-style (bob)"]
    _table, picker = models.library_view(team, asking("bob"))
    assert [label for label, _id in picker.choices] == ["bob-style"]


def test_a_lora_is_deleted_with_its_file_by_its_owner_or_an_admin(team):
    alice = team.store.find("loras", "owner = 'alice'")[0]
    with pytest.raises(gr.Error, match="No LoRA 'alice-style'"):
        models.remove_lora(team, "alice-style", asking("bob"))
    with pytest.raises(gr.Error, match=f"No LoRA '{alice['id']}'"):
        models.remove_lora(team, str(alice["id"]), asking("bob"))
    message, _confirm = models.remove_lora(team, "alice-style", asking("alice"))
    assert message == "Deleted LoRA **alice-style** and its file."
    assert not team.config.absolute(alice["path"]).exists() and not team.store.count("loras", "owner = 'alice'")
    bob = team.store.find("loras", "owner = 'bob'")[0]
    models.remove_lora(team, str(bob["id"]), asking("admin"))
    assert not team.config.absolute(bob["path"]).exists() and team.store.count("loras") == 0


def test_a_lora_that_queued_work_uses_or_a_run_made_is_kept(team):
    job = add_job(team, "alice", "text", "a fox", "flux-schnell",
                  {"request": {"loras": [["alice-style", 0.8]]}, "items": [{"prompt": "a fox", "seed": 1}]})
    refusal = f"LoRA 'alice-style' cannot be deleted yet: unfinished work \\(queue {job}\\)"
    with pytest.raises(InvalidInput, match=refusal):
        delete_lora(team, "alice-style", "alice", False)
    team.store.update("queue", job, owner="carol")  # another user's work calls another LoRA by that name
    delete_lora(team, "alice-style", "alice", False)
    team.store.update("loras", team.store.find("loras", "owner = 'bob'")[0]["id"], job_id=7)
    with pytest.raises(InvalidInput, match="belongs to training run j7: delete the run in History"):
        delete_lora(team, "bob-style", "bob", False)
    assert team.store.count("loras", "owner = 'bob'") == 1


def test_models_delete_lora_on_the_command_line(team, capsys):
    data = ["--data-dir", str(team.config.data_dir)]
    assert main(["models", "delete-lora", "bob-style", "--user", "alice", *data]) == 2
    assert "No LoRA 'bob-style'" in capsys.readouterr().err
    assert main(["models", "delete-lora", "bob-style", *data]) == 0  # no --user: any user's, as an admin
    assert "deleted bob-style (bob)" in capsys.readouterr().out
    assert main(["models", "delete-lora", "alice-style", "--user", "alice", *data]) == 0
    with pytest.raises(NotFound):
        delete_lora(team, "alice-style", "admin", True)
    assert team.store.count("loras") == 0
