"""Forgetting a user taken off the sign-in list: everything they own goes (rows and files, in every area) and
nothing of anyone else's; refused for a user on the list, for ``local``, without sign-in, and while their work
runs; a deletion another user's work holds up stops part-way, saying what went, and a second try finishes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from masuka.api.auth import create_token
from masuka.characters.library import character_dir, finish_building, new_character
from masuka.cli import main
from masuka.config import Config
from masuka.datasets.adding import add_images
from masuka.datasets.library import create_dataset, dataset_dir
from masuka.errors import InvalidInput
from masuka.forget_user import described, forget_user
from masuka.image.generate import ImageRequest, InitImage, generate_images
from masuka.loras.files import inspect_lora
from masuka.loras.imports import import_lora_file
from masuka.loras.library import lora_folder, register_lora
from masuka.models.synthetic import save_tiny_lora
from masuka.off_list import former_users, retire_off_list
from masuka.store import OWNED
from masuka.studio import Studio
from masuka.users import output_dir

BOTH = "alice:pw-alice,bob:pw-bob,admin:pw-admin"
WITHOUT_ALICE = "bob:pw-bob,admin:pw-admin"


def config(data: Path, auth: str) -> Config:
    return Config.from_env(data_dir=data, auth=auth)


def owned(studio: Studio, user: str) -> dict[str, int]:
    return {table: studio.store.count(table, "owner = ?", [user]) for table in OWNED}


def make_everything(studio: Studio, user: str, model: Path, photo: Path) -> list[Path]:
    """One of each thing a user can own, made through the real paths; returns the files and folders made."""
    image = generate_images(studio, ImageRequest(prompt="a fox", model=str(model), steps=1, width=64, height=64,
                                                 seed=1, owner=user, init=InitImage(str(photo), 0.5)))[0]
    made = [studio.config.absolute(image.path)]
    made.append(studio.config.absolute(studio.store.existing("generations", image.id)["params"]["init_image"]))
    run = studio.config.runs_dir / f"run-{user}"
    run_lora = save_tiny_lora("flux", run / "lora" / f"{user}-run.safetensors")
    job = studio.store.insert("jobs", {"owner": user, "kind": "train", "status": "completed", "title": "fox",
                                       "state": {"run_dir": studio.config.relative(run)}})
    register_lora(studio, inspect_lora(run_lora), user, "training", job_id=job)
    imported = import_lora_file(studio, user, save_tiny_lora("flux", photo.parent / f"{user}-style.safetensors"))
    dataset = create_dataset(studio, f"{user}-faces", user)
    add_images(studio, dataset["id"], user, [photo])
    character = finish_building(studio, new_character(studio, f"{user}-hero", user, f"ohwx {user}", {}))
    (character_dir(studio, character["id"]) / "photo.png").write_bytes(photo.read_bytes())
    studio.store.insert("comparisons", {"owner": user, "kind": "ab", "title": "a or b", "model": str(model),
                                        "params": {}, "state": {"pairs": []}})
    studio.store.insert("queue", {"owner": user, "task": "images", "status": "completed", "title": "done",
                                  "params": {}})
    create_token(studio, user, "laptop")
    export = output_dir(studio.config, user) / "exports" / "history.zip"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"zip")
    return [*made, run, studio.config.absolute(imported["path"]), dataset_dir(studio, dataset["id"]),
            character_dir(studio, character["id"]), export]


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (96, 96), "teal").save(path)
    return path


def test_forgetting_a_former_user_deletes_all_they_own_and_nothing_else(tmp_path, tiny_model, photo, caplog):
    data = tmp_path / "data"
    before = Studio.open(config(data, BOTH))
    try:
        alices = make_everything(before, "alice", tiny_model("flux"), photo)
        bobs = make_everything(before, "bob", tiny_model("flux"), photo)
        kept = owned(before, "bob")
    finally:
        before.close()
    assert all(path.exists() for path in alices + bobs)
    assert all(kept.values()), kept

    studio = Studio.open(config(data, WITHOUT_ALICE))
    try:
        caplog.set_level(logging.WARNING, logger="masuka.off_list")
        retire_off_list(studio)  # as the app starts: her tokens go, and the log names what she still owns
        assert "still own things" in caplog.text and "alice (8)" in caplog.text, caplog.text
        assert former_users(studio) == {"alice": 8}
        gone = forget_user(studio, "alice")
        assert gone == {"queue_jobs": 1, "ab_tests": 1, "characters": 1, "history_entries": 2, "datasets": 1,
                        "loras": 1, "api_tokens": 0}  # the run's LoRA went with its run; her token, as the app started
        assert described(gone) == "1 queue job, 1 A/B test, 1 character, 2 History entries, 1 dataset, 1 LoRA"
        assert not any(owned(studio, "alice").values())
        assert not [path for path in alices if path.exists()]
        assert not output_dir(studio.config, "alice").exists() and not lora_folder(studio, "alice").exists()
        assert owned(studio, "bob") == kept and all(path.exists() for path in bobs)
        assert former_users(studio) == {}
        with pytest.raises(InvalidInput, match="on the sign-in list"):
            forget_user(studio, "bob")
        with pytest.raises(InvalidInput, match="shared owner"):
            forget_user(studio, "local")
    finally:
        studio.close()
    single = Studio.open(config(data, ""))
    try:
        with pytest.raises(InvalidInput, match="Without sign-in"):
            forget_user(single, "bob")
        assert owned(single, "bob") == kept
    finally:
        single.close()


def test_nothing_is_deleted_while_their_work_runs_and_what_no_one_runs_is_cancelled_first(tmp_path, tiny_model,
                                                                                           photo):
    data = tmp_path / "data"
    cli = Studio.open(config(data, BOTH))  # a command with the old list, captioning for alice now
    studio = Studio.open(config(data, WITHOUT_ALICE))
    try:
        running = cli.runner().create("caption", "alice", status="running")
        waiting = cli.store.insert("queue", {"owner": "alice", "task": "images", "status": "queued", "title": "x",
                                             "params": {}})
        carols = cli.store.insert("queue", {"owner": "carol", "task": "images", "status": "queued", "title": "y",
                                            "params": {}})  # on the app's list, not on this command's
        dataset = create_dataset(cli, "faces", "alice")
        with pytest.raises(InvalidInput, match=rf"still has work running: j{running} \(caption\)\. Nothing"):
            forget_user(studio, "alice")
        assert studio.store.existing("datasets", dataset["id"]) and dataset_dir(studio, dataset["id"]).is_dir()
        assert studio.store.existing("queue", waiting)["status"] == "cancelled"  # no one ran it
        assert studio.store.existing("queue", carols)["status"] == "queued"  # only the forgotten user's work
        cli.store.update("jobs", running, status="completed")
        assert forget_user(studio, "alice")["datasets"] == 1
        assert not any(owned(studio, "alice").values())
    finally:
        studio.close()
        cli.close()


def test_a_lora_another_user_s_queued_work_uses_stops_the_forgetting_until_that_work_ends(tmp_path, photo):
    data = tmp_path / "data"
    before = Studio.open(config(data, BOTH))
    try:
        lora = import_lora_file(before, "alice", save_tiny_lora("flux", tmp_path / "style.safetensors"))
        create_dataset(before, "faces", "alice")
        bobs = before.store.insert("queue", {"owner": "bob", "task": "images", "status": "queued", "title": "x",
                                             "params": {"request": {"loras": [[lora["path"], 0.8]]}}})
    finally:
        before.close()
    studio = Studio.open(config(data, WITHOUT_ALICE))
    try:
        with pytest.raises(InvalidInput, match=r"unfinished work \(queue \d+\) uses it.*Deleted so far: 1 dataset\. "
                                               r"Forget 'alice' again"):
            forget_user(studio, "alice")
        assert studio.config.absolute(lora["path"]).is_file() and studio.store.count("datasets") == 0
        studio.store.update("queue", bobs, status="cancelled")
        assert forget_user(studio, "alice")["loras"] == 1
        assert not studio.config.absolute(lora["path"]).exists() and not any(owned(studio, "alice").values())
    finally:
        studio.close()


def test_the_command_lists_former_users_and_forgets_one_only_when_confirmed(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    before = Studio.open(config(data, BOTH))
    try:
        create_dataset(before, "faces", "alice")
        create_token(before, "alice", "laptop")
    finally:
        before.close()
    monkeypatch.setenv("MASUKA_AUTH", WITHOUT_ALICE)
    base = ["--data-dir", str(data)]
    assert main(["storage", "former-users", "--json", *base]) == 0
    assert json.loads(capsys.readouterr().out) == {"users": {"alice": 2}}
    assert main(["storage", "forget-user", "alice", *base]) != 0
    assert "add --yes" in capsys.readouterr().err
    assert main(["storage", "forget-user", *base]) != 0
    assert "Name the user" in capsys.readouterr().err
    assert main(["storage", "forget-user", "bob", "--yes", *base]) != 0
    assert "on the sign-in list" in capsys.readouterr().err
    assert main(["storage", "forget-user", "alice", "--yes", *base]) == 0
    assert "Forgot 'alice': deleted 1 dataset, 1 API token.\n" == capsys.readouterr().out
    assert main(["storage", "former-users", *base]) == 0
    assert "No user off the sign-in list owns anything." in capsys.readouterr().out


def test_every_table_with_an_owner_is_one_that_forgetting_empties():
    """A tripwire: a new table whose rows name an owner needs its part in ``forget_user`` (and in the first test)."""
    assert set(OWNED) == {"generations", "jobs", "queue", "comparisons", "datasets", "loras", "api_tokens",
                          "characters"}


def test_forgetting_a_user_named_like_a_shared_folder_leaves_everyone_s_videos(tmp_path):
    data = tmp_path / "data"
    before = Studio.open(config(data, "videos:pw,bob:pw-bob"))
    try:
        create_dataset(before, "faces", "videos")
        clip = before.config.outputs_dir / "videos" / "2026-12-07" / "bob.mp4"  # remote videos of every user
        clip.parent.mkdir(parents=True)
        clip.write_bytes(b"mp4")
        before.store.insert("generations", {"owner": "bob", "kind": "video", "status": "completed",
                                            "output_path": before.config.relative(clip)})
    finally:
        before.close()
    studio = Studio.open(config(data, "bob:pw-bob"))
    try:
        assert forget_user(studio, "videos")["datasets"] == 1
        assert clip.is_file() and owned(studio, "bob")["generations"] == 1
    finally:
        studio.close()
