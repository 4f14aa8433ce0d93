"""``python -m masuka character ...``: JSON shapes and exit codes; one user's character is invisible to another."""

from __future__ import annotations

import json

import pytest

from masuka.access import may_read
from masuka.characters.library import delete_character, find_character, list_characters
from masuka.characters.making import create_character
from masuka.cli import main
from masuka.config import Config
from masuka.errors import NotFound
from masuka.studio import Studio

from .test_making import request, two_faces


def cli(capsys, data_dir, *argv) -> tuple[int, dict | None, str]:
    code = main([*argv, "--data-dir", str(data_dir), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_character_create_show_list_and_delete_from_the_command_line(capsys, tmp_path, tiny_model, tiny_clip,
                                                                     portrait, no_face):
    data = tmp_path / "data"
    code, result, err = cli(capsys, data, "character", "create", "anna", "--photo", str(portrait), "--trigger",
                            "ohwx", "--views", "2", "--edit-model", str(tiny_model("sdxl")), "--steps", "2",
                            "--size", "64", "--threshold", "-1", "--identity-model", str(tiny_clip),
                            "--captioner", "none")
    assert code == 0, err
    assert result == {"character": result["character"], "dataset": "anna", "images": 2, "rejected": []}
    assert "view 2/2" in err

    code, shown, _ = cli(capsys, data, "character", "show", "anna")
    assert code == 0 and shown["images"] == 2 and len(shown["views"]) == 2 and shown["trigger"] == "ohwx"
    code, listed, _ = cli(capsys, data, "character", "list")
    assert listed["characters"] == [{"character": result["character"], "name": "anna", "trigger": "ohwx",
                                     "being_made": False, "dataset": "anna", "images": 2, "kept": 2,
                                     "real_photos": 0, "lora": None}]
    code, rejected, _ = cli(capsys, data, "character", "reject", "anna", "1")
    assert code == 0 and rejected["images"] == 1 and rejected["views"][0]["reason"] == "rejected by you"
    group = str(two_faces(tmp_path, portrait))
    code, _, err = cli(capsys, data, "character", "add-photos", "anna", group)
    assert code == 2 and "two.png shows 2 faces: choose which one" in err
    code, added, _ = cli(capsys, data, "character", "add-photos", "anna", group, str(portrait), "--face", "2",
                         "--face", "0")
    assert code == 0 and len(added["photos"]) == 3
    assert main(["character", "list", "--data-dir", str(data)]) == 0
    assert "dataset 'anna' with 1 kept view(s) and 2 real photo(s)" in capsys.readouterr().out, "views and photos"
    code, listed, _ = cli(capsys, data, "character", "list")
    assert [(r["images"], r["kept"], r["real_photos"]) for r in listed["characters"]] == [(3, 1, 2)]

    code, refused, err = cli(capsys, data, "character", "create", "bea", "--photo", str(no_face), "--trigger", "x")
    assert (code, refused) == (2, None)
    assert err.startswith("error: No face was found in bands.png") and err.count("\n") == 1
    code, _, err = cli(capsys, data, "character", "train", "nobody", "--base", "sdxl")
    assert code == 2 and "No character 'nobody'" in err
    code, _, err = cli(capsys, data, "character", "reject", "anna", "9")
    assert code == 2 and "The view number must be between 1 and 2 (got 9)" in err

    code, deleted, _ = cli(capsys, data, "character", "delete", "anna", "--yes")
    assert code == 0 and deleted == {"deleted": result["character"]}
    assert cli(capsys, data, "character", "list")[1] == {"characters": []}


def test_another_user_cannot_see_use_or_delete_a_character(tmp_path, tiny_model, tiny_clip, portrait):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:1,bob:2,admin:3"))
    try:
        report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, owner="ann", views=1))
        character = find_character(studio, report.character, "ann")
        photo = studio.config.absolute(character["state"]["photos"][0]["photo"])
        assert list_characters(studio, "bob") == [] and len(list_characters(studio, "admin", admin=True)) == 1
        for ref in ("anna", report.character):
            with pytest.raises(NotFound):
                find_character(studio, ref, "bob")
            with pytest.raises(NotFound):
                delete_character(studio, ref, "bob")
        assert may_read(studio, "ann", photo) and not may_read(studio, "bob", photo)
        assert find_character(studio, "anna", "ann")["id"] == report.character
    finally:
        studio.close()


def test_an_outfit_for_a_model_without_several_references_exits_2(capsys, tmp_path, tiny_model, tiny_clip, portrait):
    code, result, err = cli(capsys, tmp_path / "data", "character", "create", "anna", "--photo", str(portrait),
                            "--trigger", "ohwx", "--edit-model", str(tiny_model("sdxl")), "--outfit", str(portrait),
                            "--identity-model", str(tiny_clip))
    assert (code, result) == (2, None)
    assert "An outfit reference needs an edit model that takes several images" in err


def test_a_signed_in_user_s_character_is_listed_and_deleted_with_user(capsys, tmp_path, tiny_model, tiny_clip,
                                                                      portrait, monkeypatch):
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")  # --user names someone on the sign-in list
    data = tmp_path / "data"
    code, made, err = cli(capsys, data, "character", "create", "anna", "--photo", str(portrait), "--trigger", "ohwx",
                          "--views", "1", "--edit-model", str(tiny_model("sdxl")), "--steps", "2", "--size", "64",
                          "--threshold", "-1", "--identity-model", str(tiny_clip), "--captioner", "none",
                          "--user", "alice")
    assert code == 0, err
    assert cli(capsys, data, "character", "list")[1] == {"characters": []}, "the local user has none"
    code, listed, _ = cli(capsys, data, "character", "list", "--user", "alice")
    assert [row["character"] for row in listed["characters"]] == [made["character"]]
    code, _, err = cli(capsys, data, "character", "delete", "anna", "--yes")
    assert code == 2 and "No character 'anna'" in err
    assert main(["character", "delete", "anna", "--yes", "--user", "alice", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.strip() == ("Deleted character 'anna' and its photos; its dataset 'anna' (its kept "
                                               "views and the real photos you added) stays: delete it in the Datasets "
                                               "tab (or `python -m masuka dataset delete anna --yes --user alice`) if "
                                               "you no longer want it; its runs and LoRA stay.")
    assert cli(capsys, data, "character", "list", "--user", "alice")[1] == {"characters": []}
    code, _, err = cli(capsys, data, "dataset", "delete", "anna", "--yes")
    assert code == 2 and "No dataset 'anna'" in err, "the local user's datasets"
    monkeypatch.delenv("MASUKA_AUTH")  # the note's command works in any shell: alice owns the dataset
    assert cli(capsys, data, "dataset", "list", "--user", "alice")[1]["datasets"][0]["name"] == "anna"
    assert cli(capsys, data, "dataset", "delete", "anna", "--yes", "--user", "alice")[0] == 0, "the note's command"
    assert cli(capsys, data, "dataset", "list", "--user", "alice")[1] == {"datasets": []}


def test_a_prompts_file_makes_one_view_a_prompt_and_views_that_disagree_exit_2(capsys, tmp_path, tiny_model,
                                                                               tiny_clip, portrait):
    """``--views`` defaults to the ``--prompts`` file's count (24 without one); naming both, they must agree."""
    data, prompts = tmp_path / "data", tmp_path / "prompts.txt"
    prompts.write_text("front view\n\nback view\n", encoding="utf-8")
    common = ["--photo", str(portrait), "--trigger", "ohwx", "--edit-model", str(tiny_model("sdxl")), "--steps", "2",
              "--size", "64", "--threshold", "-1", "--identity-model", str(tiny_clip), "--captioner", "none",
              "--prompts", str(prompts)]
    code, _, err = cli(capsys, data, "character", "create", "bea", *common, "--views", "3")
    assert code == 2 and "3 views were asked for, but the prompt set has 2 prompts" in err
    code, result, err = cli(capsys, data, "character", "create", "anna", *common)
    assert code == 0 and result["images"] == 2, err
