"""The LoRA library as the Models tab and the CLI manage it: an admin sees every owner's LoRAs, and a LoRA can be
deleted (the user's own, any for an admin) unless queued work uses it."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.image.adapters import apply_loras
from masuka.loras.files import inspect_lora
from masuka.loras.imports import import_lora_file
from masuka.loras.library import delete_lora, list_loras
from masuka.loras.usage import lora_files_in_use
from masuka.queue.jobs import add_job
from masuka.studio import Studio
from masuka.training.options import TrainOptions, check_options, fill_defaults
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
    assert list_loras(team, "admin") == [], "the pickers offer an admin's own and the shared LoRAs only"
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


def test_queued_work_naming_the_lora_file_by_another_path_keeps_it(team, tmp_path):
    """A job (or background job, or generation) that names the file with ``..``, through a symlinked folder or by
    its absolute path keeps it as the data-dir-relative path does; a path naming another file does not."""
    path = team.config.absolute(team.store.find("loras", "owner = 'alice'")[0]["path"])
    (tmp_path / "link").symlink_to(path.parent, target_is_directory=True)
    detour = team.config.relative(path.parent.parent) + f"/{path.parent.name}/../{path.parent.name}/{path.name}"
    for table, ref in (("queue", f"{path.parent}/../{path.parent.name}/{path.name}"), ("jobs", detour),
                       ("queue", str(tmp_path / "link" / path.name)), ("generations", str(path))):
        params = {"request": {"loras": [[ref, 0.5]]}, "items": [{"prompt": "a fox", "seed": 1}]}
        row = (add_job(team, "alice", "text", "a fox", "flux-schnell", params) if table == "queue" else
               team.store.insert(table, {"owner": "alice", "status": "running", **(
                   {"kind": "image", "params": params} if table == "jobs" else
                   {"loras": [{"name": "x", "path": ref, "weight": 0.5}]})}))
        with pytest.raises(InvalidInput, match=f"cannot be deleted yet: unfinished work \\({table} {row}\\)"):
            delete_lora(team, "alice-style", "alice", False)
        team.store.update(table, row, status="cancelled")
    add_job(team, "alice", "text", "a fox", "flux-schnell",
            {"request": {"loras": [[str(path.parent / "other.safetensors"), 1]]}, "items": [{"prompt": "a fox"}]})
    assert delete_lora(team, "alice-style", "alice", False)["name"] == "alice-style"


def test_queued_work_naming_the_lora_by_its_path_in_the_lora_folder_or_a_tag_keeps_it(team):
    """Every reference generation reads as the LoRA's file keeps it: its path in the LoRA folder with or without
    ``.safetensors``, its data-dir path, its absolute path, in a LoRA list (the request's, an item's, an A/B
    side's) or a prompt's ``<lora:path:w>`` tag; a path naming another file does not."""
    path = team.config.absolute(team.store.find("loras", "owner = 'alice'")[0]["path"])
    inside = path.relative_to(team.config.loras_dir).as_posix()
    refs = (inside, inside.removesuffix(".safetensors"), f" {inside.removesuffix('.safetensors')} ", str(path),
            team.config.relative(path).removesuffix(".safetensors").replace("alice/", "alice/../alice/") +
            ".safetensors")
    for ref in refs:
        for table, params in (
                ("queue", {"request": {"loras": [[ref, 0.5]]}, "items": [{"prompt": "a fox", "seed": 1}]}),
                ("queue", {"request": {"loras": []}, "items": [{"prompt": "a fox", "loras": [[ref, 1]]}]}),
                ("queue", {"request": {"loras": []}, "items": [{"prompt": f"a fox <lora:{ref.strip()}:0.8>"}]}),
                ("jobs", {"sides": {"a": "x"}, "loras": {"a": [[ref, 1]], "b": []}})):
            row = (add_job(team, "bob", "text", "a fox", "flux-schnell", params) if table == "queue" else
                   team.store.insert(table, {"owner": "bob", "status": "queued", "kind": "ab", "params": params}))
            with pytest.raises(InvalidInput, match=f"cannot be deleted yet: unfinished work \\({table} {row}\\)"):
                delete_lora(team, "alice-style", "alice", False)
            team.store.update(table, row, status="cancelled")
    other = inside.replace("alice-style", "alice-style-2")
    add_job(team, "alice", "text", "a fox", "flux-schnell",
            {"request": {"loras": [[other, 1], [other.removesuffix(".safetensors"), 1]]},
             "items": [{"prompt": f"a fox <lora:{other}:1> alice/alice-style.safetensors.txt", "seed": 1}]})
    assert delete_lora(team, "alice-style", "alice", False)["name"] == "alice-style"


def test_models_delete_lora_on_the_command_line(team, capsys, monkeypatch):
    monkeypatch.setenv("MASUKA_AUTH", "alice:pa,bob:pb,admin:pc")  # the sign-in list --user is checked against
    data = ["--data-dir", str(team.config.data_dir)]
    assert main(["models", "delete-lora", "bob-style", "--user", "alice", "--yes", *data]) == 2
    assert "No LoRA 'bob-style'" in capsys.readouterr().err
    assert main(["models", "delete-lora", "bob-style", "--yes", *data]) == 0  # no --user: any user's, as an admin
    assert "deleted bob-style (bob)" in capsys.readouterr().out
    assert main(["models", "delete-lora", "alice-style", "--user", "alice", "--yes", *data]) == 0
    with pytest.raises(NotFound):
        delete_lora(team, "alice-style", "admin", True)
    assert team.store.count("loras") == 0


def test_a_lora_name_of_digits_is_refused_and_digits_always_mean_an_id(team, tmp_path):
    """The delete picker sends a LoRA's id as text ("6"): a LoRA named "6" must never be the one deleted. Digits are
    refused as a name (imports, training, files dropped into the library folder), digits always name a row by id,
    and a name two owners give is refused to an admin rather than picking one."""
    write_flux_lora(tmp_path / "ink.safetensors")
    for name in ("6", "0042"):
        with pytest.raises(InvalidInput, match=f"LoRA name '{name}' is only digits"):
            import_lora_file(team, "alice", tmp_path / "ink.safetensors", name)
    with pytest.raises(InvalidInput, match="LoRA name '7' is only digits"):
        check_options(fill_defaults(TrainOptions(dataset="d", base="flux-schnell", name="7"), "flux"), "flux", 16)
    write_flux_lora(tmp_path / "123.safetensors")
    assert import_lora_file(team, "alice", tmp_path / "123.safetensors")["name"] == "lora-123", "a file's own name"
    write_flux_lora(team.config.loras_dir / "99.safetensors")
    assert "99" not in [row["name"] for row in list_loras(team, "admin")], "a dropped file named like an id"
    alice = team.store.find("loras", "name = 'alice-style'")[0]
    older = team.store.find("loras", "name = 'lora-123'")[0]
    team.store.update("loras", older["id"], name=str(alice["id"]))  # named so before digits were refused
    models.remove_lora(team, str(alice["id"]), asking("alice"))
    assert [row["id"] for row in team.store.find("loras", "owner = 'alice'")] == [older["id"]]
    write_flux_lora(tmp_path / "bob-style.safetensors")
    import_lora_file(team, "alice", tmp_path / "bob-style.safetensors")
    with pytest.raises(InvalidInput, match=r"2 LoRAs go by 'bob-style' \(ids \d+ \(bob\), \d+ \(alice\)\): choose "
                                           "one by its id"):
        delete_lora(team, "bob-style", "admin", True)
    assert delete_lora(team, "bob-style", "bob", False)["owner"] == "bob", "an owner's own name is theirs"


def test_a_queued_job_that_calls_a_lora_by_a_prompt_tag_keeps_it(team):
    """A job whose prompt says ``<lora:name:w>`` (in A1111's forms) uses the LoRA as much as one that lists it."""
    for prompt in ("a fox <lora:alice-style:0.8>", "a fox <lora: alice-style >"):
        job = add_job(team, "alice", "text", prompt, "flux-schnell",
                      {"request": {"loras": []}, "items": [{"prompt": prompt, "seed": 1}]})
        with pytest.raises(InvalidInput, match=f"unfinished work \\(queue {job}\\) calls LoRA 'alice-style' in its "
                                               "prompt"):
            delete_lora(team, "alice-style", "alice", False)
        team.store.update("queue", job, status="cancelled")
    add_job(team, "bob", "text", "a fox <lora:alice-style:1>", "flux-schnell",  # bob's tag calls no LoRA of alice's
            {"request": {"loras": []}, "items": [{"prompt": "a fox <lora:alice-style:1>", "seed": 1}]})
    add_job(team, "alice", "text", "a fox <lora:alice-style-2:1>", "flux-schnell",
            {"request": {"loras": []}, "items": [{"prompt": "a fox <lora:alice-style-2:1>", "seed": 1}]})
    assert delete_lora(team, "alice-style", "alice", False)["name"] == "alice-style"


def test_work_that_only_shares_the_lora_s_name_does_not_keep_it(team):
    """Only work that calls the LoRA keeps it: a running training run on a dataset of that name, or a queued job
    whose prompt or title is the name as a word, does not."""
    team.store.insert("jobs", {"kind": "train", "status": "running", "owner": "alice", "title": "alice-style",
                               "params": {"dataset": "alice-style", "name": "alice-style"}})
    add_job(team, "alice", "text", "alice-style", "flux-schnell",
            {"request": {"loras": []}, "items": [{"prompt": "alice-style", "seed": 1}]})
    assert delete_lora(team, "alice-style", "alice", False)["name"] == "alice-style"


def test_a_lora_name_typed_with_a_combining_accent_finds_the_library_lora(team, tmp_path):
    """Generation, Read parameters and the deletion check take ``Cafe`` + U+0301 as the library's ``Café``."""
    from masuka.image.generate import resolve_lora_path
    from masuka.loras.files import lora_hash
    from masuka.loras.library import match_loras

    write_flux_lora(tmp_path / "x.safetensors")
    row = import_lora_file(team, "alice", tmp_path / "x.safetensors", name="Caf\u00e9")
    typed = "Cafe\u0301"
    assert resolve_lora_path(team, typed, "alice", False) == team.config.absolute(row["path"])
    assert match_loras(team, "alice", [(typed, 0.5)]) == ([("Caf\u00e9", 0.5)], [])
    renamed = f"Olde\u0301: {lora_hash(team.config.absolute(row['path']))}"  # the hashes text as typed
    assert match_loras(team, "alice", [("Old\u00e9", 0.5)], renamed) == ([("Caf\u00e9", 0.5)], [])
    for params in ({"request": {"loras": []}, "items": [{"prompt": f"a fox <lora:{typed}:0.8>", "seed": 1}]},
                   {"request": {"loras": [[typed, 0.5]]}, "items": [{"prompt": "a fox", "seed": 1}]}):
        job = add_job(team, "alice", "text", "a fox", "flux-schnell", params)
        with pytest.raises(InvalidInput, match=f"unfinished work \\(queue {job}\\) calls LoRA 'Caf\u00e9'"):
            delete_lora(team, typed, "alice", False)
        team.store.update("queue", job, status="cancelled")
    assert delete_lora(team, typed, "alice", False)["name"] == "Caf\u00e9"


def test_a_lora_that_a_request_holds_cannot_be_deleted_and_one_deleted_meanwhile_is_told(team):
    """An image request holds its LoRA files from its checks to its end (waiting for the GPU included); a file gone
    all the same is an answer naming the LoRA, not a crash."""
    row = team.store.find("loras", "owner = 'alice'")[0]
    path = team.config.absolute(row["path"])
    info = inspect_lora(path)
    with lora_files_in_use(team, [path]):
        with pytest.raises(InvalidInput, match="LoRA 'alice-style' cannot be deleted yet: an image request"):
            delete_lora(team, "alice-style", "alice", False)
        with lora_files_in_use(team, [path]):  # two requests at once: the first to end leaves the other's hold
            pass
        with pytest.raises(InvalidInput, match="an image request"):
            delete_lora(team, str(row["id"]), "admin", True)
    delete_lora(team, "alice-style", "alice", False)
    with pytest.raises(InvalidInput, match="LoRA 'alice-style' was deleted"):
        apply_loras(None, [(info, 1.0)])  # as a request checked before the deletion gets to it
    with pytest.raises(InvalidInput, match="LoRA 'alice-style' was deleted"), lora_files_in_use(team, [path]):
        pass


def test_a_name_is_offered_once_so_a_shared_lora_is_never_hidden_by_a_user_s_own(team, tmp_path):
    """A user's import could take a shared LoRA's name: the pickers showed it twice and it always called the
    user's file. Such a name is refused (made-up names skip it), and a shared file dropped after a user's import
    of that name is left out of that user's list only."""
    from masuka.loras.library import SHARED, free_lora_name, lora_folder

    write_flux_lora(team.config.loras_dir / "shared-ink.safetensors")
    list_loras(team, "admin")  # an admin looks: the dropped file becomes a shared LoRA
    write_flux_lora(tmp_path / "mine.safetensors")
    with pytest.raises(InvalidInput, match=SHARED.format("shared-ink").replace("(", r"\(").replace(")", r"\)")):
        import_lora_file(team, "bob", tmp_path / "mine.safetensors", "shared-ink")
    assert free_lora_name(team, "bob", "shared-ink", lora_folder(team, "bob")) == "shared-ink-2"
    assert [(r["name"], r["owner"]) for r in list_loras(team, "bob")] == [("bob-style", "bob"),
                                                                           ("shared-ink", "local")]
    write_flux_lora(team.config.loras_dir / "bob-style.safetensors")  # dropped after bob's import
    list_loras(team, "admin")
    assert [(r["name"], r["owner"]) for r in list_loras(team, "bob")] == [("bob-style", "bob"),
                                                                           ("shared-ink", "local")]
    assert [(r["name"], r["owner"]) for r in list_loras(team, "alice")] == [
        ("alice-style", "alice"), ("bob-style", "local"), ("shared-ink", "local")]


def test_the_delete_confirmation_names_the_lora_and_goes_on_a_new_choice_or_a_refusal(team):
    """The confirmation named no LoRA, stayed after a refusal and when the picker changed, so a click deleted a
    LoRA chosen after it was shown."""
    from masuka.ui.app import build_app

    alice, bob = (team.store.find("loras", "owner = ?", [owner])[0] for owner in ("alice", "bob"))
    shown = models.confirm_lora_deletion(team, str(alice["id"]), asking("alice"))
    assert (shown.value, shown.visible) == ("Yes, delete LoRA alice-style and its file", True)
    assert models.confirm_lora_deletion(team, str(bob["id"]), asking("admin")).value == \
        "Yes, delete LoRA bob-style (bob's) and its file"
    with pytest.raises(gr.Error, match="No LoRA"):
        models.confirm_lora_deletion(team, str(bob["id"]), asking("alice"))
    with pytest.raises(gr.Error, match="Choose the LoRA"):
        models.confirm_lora_deletion(team, " ", asking("alice"))
    fns = list(build_app(team).fns.values())
    deleting = next(fn for fn in fns if fn.api_name == "delete_lora")
    doomed, confirm = deleting.inputs[0], deleting.outputs[1]
    showing = next(fn for fn in fns if fn.name == "confirm_lora_deletion")
    assert showing.inputs == [doomed] and showing.outputs == [confirm]
    hiding = [fn for fn in fns if fn.outputs == [confirm] and fn.name == "hidden_button"]
    assert {(block, event) for fn in hiding for block, event in fn.targets if block is not None} >= {
        (doomed._id, "change")}, "a new choice hides the confirmation"
    assert any(fn.trigger_after == deleting._id and fn.trigger_only_on_failure for fn in hiding), \
        "a refused deletion hides it"
    assert not models.hidden_button().visible
