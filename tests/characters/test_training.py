"""A character's LoRA: trained with the character preset, offered in the picker at 0.73 with its trigger, and a
test grid rendered after the run."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from masuka.characters.library import delete_character, find_character
from masuka.characters.making import create_character
from masuka.characters.training import GRID_SCENES, GRID_SEEDS, train_character
from masuka.characters.use import DEFAULT_WEIGHT_KEY, picker_value, with_triggers
from masuka.cli import main
from masuka.datasets.library import delete_dataset
from masuka.image.generate import ImageRequest, generate_images, parse_lora
from masuka.loras.library import list_loras
from masuka.training.runs import resume_run, run_status

from .test_making import request


def test_training_links_the_lora_offers_it_at_its_weight_and_renders_a_test_grid(capsys, studio, tiny_model,
                                                                                 tiny_clip, portrait, monkeypatch):
    model = tiny_model("sdxl")
    report = create_character(studio, request(model, tiny_clip, portrait, views=2))
    monkeypatch.setattr("masuka.commands.character.FOLLOW_S", 0.05)  # many looks at the run while it trains
    code = main(["character", "train", "anna", "--base", str(model), "--steps", "2", "--resolution", "64", "--lr",
                 "1e-3", "--sample-steps", "1", "--data-dir", str(studio.config.data_dir), "--json"])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 0, result["error"]
    steps = [line for line in err.splitlines() if ": step " in line]
    assert steps and len(steps) == len(set(steps)), "a progress line only when it changes"
    run_id = result["run"]
    assert result["status"] == "completed" and result["lora"] and Path(result["grid"]).is_file()
    assert run_status(studio, run_id)["dataset"] == "anna" and run_status(studio, run_id)["total"] == 2

    character = find_character(studio, report.character, "local")
    assert character["state"]["runs"] == [run_id] and character["lora"]
    grid = Image.open(studio.config.absolute(character["state"]["grid"]))
    assert grid.width >= 64 * len(GRID_SCENES) and grid.height >= 64 * len(GRID_SEEDS)
    cells = studio.store.find("generations", "loras like ?", [f"%{character['lora']}%"])
    assert len(cells) == len(GRID_SCENES) * len(GRID_SEEDS)
    assert all(cell["loras"][0]["weight"] == 0.73 and cell["prompt"].startswith("photo of ohwx") for cell in cells)

    [lora] = [r for r in list_loras(studio, "local") if r["name"] == character["lora"]]
    value = picker_value(lora)
    assert parse_lora(value) == (character["lora"], 0.73)
    assert with_triggers(studio, "local", "on a beach", [value]) == "ohwx, on a beach"
    assert with_triggers(studio, "local", "ohwx on a beach", [value]) == "ohwx on a beach"
    assert generate_images(studio, ImageRequest(prompt="ohwx", model=str(model), steps=1, width=64, height=64,
                                                loras=[parse_lora(value)]))


def test_each_run_keeps_the_weight_its_train_asked_for(studio, tiny_model, tiny_clip, portrait):
    model = tiny_model("sdxl")
    create_character(studio, request(model, tiny_clip, portrait, views=2))
    options = dict(base=str(model), steps=1, resolution=64, sample_steps=1)
    runs = {train_character(studio, "anna", weight=0.5, **options): 0.5,  # both queued before either ends
            train_character(studio, "anna", weight=1.5, **options): 1.5}
    for run_id, weight in runs.items():
        run = studio.runner().wait(run_id)
        assert run["status"] == "completed", run["error"]
        lora = studio.store.existing("loras", run["result"]["lora_id"])
        assert lora["metadata"][DEFAULT_WEIGHT_KEY] == f"{weight:g}"
        cells = [cell for cell in studio.store.find("generations", "loras is not null")
                 if cell["loras"] and cell["loras"][0]["name"] == lora["name"]]
        assert len(cells) == len(GRID_SCENES) * len(GRID_SEEDS), "its test grid"
        assert {cell["loras"][0]["weight"] for cell in cells} == {weight}


def test_a_run_interrupted_and_resumed_in_the_train_tab_still_links_the_lora_and_renders_the_grid(studio, tiny_model,
                                                                                                tiny_clip, portrait):
    """A character's run stopped partway (here a signal) and resumed as any run is (the Train tab, `train resume`,
    the next start) finishes the character when it completes: its LoRA linked at the weight its Train asked for,
    the test grid rendered. Before, only a run that went through in one go did."""
    import threading

    model = tiny_model("sdxl")
    create_character(studio, request(model, tiny_clip, portrait, views=2))
    interrupt = threading.Event()
    interrupt.set()  # a signal before the first step: a checkpoint saved, the run interrupted
    run_id = train_character(studio, "anna", weight=0.9, base=str(model), steps=2, resolution=64, sample_steps=1,
                             interrupt=interrupt)
    assert studio.runner().wait(run_id)["status"] == "interrupted"
    assert not find_character(studio, "anna", "local")["lora"], "nothing to link yet"
    resume_run(studio, run_id)  # as the Train tab's Resume does
    run = studio.runner().wait(run_id)
    assert run["status"] == "completed", run["error"]
    character = find_character(studio, "anna", "local")
    lora = studio.store.existing("loras", run["result"]["lora_id"])
    assert character["lora"] == lora["name"] and lora["metadata"][DEFAULT_WEIGHT_KEY] == "0.9"
    assert studio.config.absolute(character["state"]["grid"]).is_file()


def test_a_character_on_zerogpu_is_refused_pointing_at_its_dataset_on_a_remote_backend(capsys, studio, tiny_model,
                                                                                      tiny_clip, portrait,
                                                                                      monkeypatch):
    """A character has no backend choice: the refusal says how to train its dataset remotely instead."""
    model = tiny_model("sdxl")
    create_character(studio, request(model, tiny_clip, portrait, views=2))
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    code = main(["character", "train", "anna", "--base", str(model), "--data-dir", str(studio.config.data_dir)])
    error = capsys.readouterr().err
    assert code == 2 and "Training cannot run on this ZeroGPU Space" in error
    assert "dataset 'anna' remotely" in error and "--backend fal" in error and "`--backend` in the CLI" not in error
    assert studio.store.count("jobs") == 0, "no run was recorded"


def test_a_character_whose_dataset_was_deleted_is_refused_on_zerogpu_before_its_dataset_is_made_again(
        capsys, studio, tiny_model, tiny_clip, portrait, monkeypatch):
    """Making the dataset again captions it (GPU work) for a run the Space refuses: refused first, nothing written,
    saying how the dataset is made again."""
    model = tiny_model("sdxl")
    create_character(studio, request(model, tiny_clip, portrait, views=2))
    delete_dataset(studio, "anna", "local")
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    code = main(["character", "train", "anna", "--base", str(model), "--data-dir", str(studio.config.data_dir)])
    error = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "Training cannot run on this ZeroGPU Space" in error
    assert "Its dataset 'anna' was deleted: regenerating a view or adding a photo makes it again" in error
    assert "--dataset anna --base MODEL --backend fal" in error
    assert studio.store.count("datasets") == 0 and studio.store.count("jobs") == 0, "nothing was made or recorded"
    assert find_character(studio, "anna", "local")["dataset_id"] is None


def test_a_character_deleted_while_it_trains_leaves_a_completed_run_and_its_lora(capsys, studio, tiny_model,
                                                                              tiny_clip, portrait, monkeypatch):
    """README: a deleted character's runs and LoRA stay, and `character train` exits 0 when the run completed. The
    LoRA stays as the run made it (not the deleted character's), with no test grid; the CLI says why."""
    import masuka.characters.training as training

    model = tiny_model("sdxl")
    report = create_character(studio, request(model, tiny_clip, portrait, views=2))
    submit = training.submit_run

    def delete_then_submit(*args, **kwargs):  # the character deleted once its run is queued (the tab, the CLI)
        delete_character(studio, "anna", "local")
        submit(*args, **kwargs)

    monkeypatch.setattr(training, "submit_run", delete_then_submit)
    code = main(["character", "train", "anna", "--base", str(model), "--steps", "2", "--resolution", "64",
                 "--sample-steps", "1", "--data-dir", str(studio.config.data_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and result["character"] == report.character and result["grid"] is None
    assert "note: the character 'anna' was deleted meanwhile, so no test grid was rendered" in err
    lora = studio.store.existing("loras", studio.runner().wait(result["run"]).result["lora_id"])
    assert result["lora"] == lora["name"] and not lora["metadata"].get(DEFAULT_WEIGHT_KEY), "not linked"
    assert not [cell for cell in studio.store.find("generations") if cell["loras"]], "no test grid rendered"
