"""Runs that outlive a fault: a dataset image deleted mid-run or re-processed while the run waits for the GPU, a
resume after the export failed past the last step, and (test_cli_orphans.py) a multi-GPU CLI whose terminal closes
or which is killed."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from masuka import jobs
from masuka.gpu import GPURunner
from masuka.training import checkpoints, export
from masuka.training.data import dataset_for_training
from masuka.training.options import TrainOptions
from masuka.training.runs import create_run, list_runs, resume_run, run_status, start_training, submit_run

from .conftest import add_dataset
from .test_cli import wait_for


def test_an_image_deleted_mid_run_changes_nothing_of_what_the_run_saves(studio, tiny_model):
    """The run trains on its cache: checkpoints and the LoRA never read the dataset's files again."""
    add_dataset(studio)
    run_id = create_run(studio, TrainOptions(dataset="fox", base=str(tiny_model("flux")), steps=6, resolution=64,
                                             lr=1e-3, save_every=2, keep_last=5))
    created_hash = jobs.get(studio.store, run_id).state["dataset_hash"]
    image = studio.config.datasets_dir / "fox" / "processed" / "001.png"

    def delete_at_step_1(step: int) -> None:
        if step == 1:
            image.unlink()

    submit_run(studio, run_id, on_step=delete_at_step_1)
    row = studio.runner().wait(run_id, timeout=240)
    status = run_status(studio, run_id)
    assert not image.exists()
    assert row.status == "completed" and status["error"] is None, status["error"]
    run_dir = studio.config.absolute(row.state["run_dir"])
    saved = checkpoints.checkpoints(run_dir)
    assert [c.step for c in saved] == [2, 4, 6] and all(c.lora for c in saved)
    assert {json.loads((c.path / "state.json").read_text())["dataset_hash"] for c in saved} == {created_hash}
    with safe_open(status["lora"], framework="pt") as handle:
        assert handle.metadata()["masuka.dataset_hash"] == created_hash
    assert [step for step, _loss in status["losses"]] == list(range(1, 7))


def test_an_image_reprocessed_while_the_run_waits_for_the_gpu_is_the_data_it_records(studio, tiny_model):
    """The hash a run records (checkpoints, LoRA, model card) is the one of the bytes it cached and trained on,
    not of the files as they were when the run was created or started."""
    add_dataset(studio)
    options = TrainOptions(dataset="fox", base=str(tiny_model("flux")), steps=2, resolution=64, lr=1e-3)
    with GPURunner(studio.config.data_dir / "locks").hold("another job"):
        run_id = start_training(studio, options)
        wait_for(lambda: "waiting for the GPU" in (jobs.get(studio.store, run_id).log or ""), "the wait for the GPU")
        created_hash = jobs.get(studio.store, run_id).state["dataset_hash"]
        # the user re-processes an image meanwhile
        Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(studio.config.datasets_dir / "fox" / "processed"
                                                                / "000.png")
    row = studio.runner().wait(run_id, timeout=240)
    status = run_status(studio, run_id)
    assert row.status == "completed", status["error"]
    trained_on = dataset_for_training(studio, "fox").hash
    assert trained_on != created_hash
    assert "the dataset changed since this run was created" in (row.log or "")
    with safe_open(status["lora"], framework="pt") as handle:
        assert handle.metadata()["masuka.dataset_hash"] == trained_on
    run_dir = studio.config.absolute(row.state["run_dir"])
    assert [json.loads((c.path / "state.json").read_text())["dataset_hash"]
            for c in checkpoints.checkpoints(run_dir)] == [trained_on]
    assert f"hash `{trained_on}`" in (run_dir / "lora" / "README.md").read_text()


@pytest.mark.parametrize("recorded", [True, False], ids=["loss-in-checkpoint", "checkpoint-without-loss"])
def test_a_resume_after_the_last_step_keeps_the_final_loss(studio, tiny_model, monkeypatch, recorded):
    """Final checkpoint written, the model card hit a full disk: Resume exports with the last step's loss (from
    the checkpoint, or for a checkpoint saved before they recorded it, from the loss curve)."""
    add_dataset(studio)
    real_card, calls = export.write_model_card, []

    def full_disk_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_card(*args, **kwargs)

    monkeypatch.setattr(export, "write_model_card", full_disk_once)
    run_id = create_run(studio, TrainOptions(dataset="fox", base=str(tiny_model("flux")), steps=4, resolution=64,
                                             lr=1e-3, save_every=0))
    submit_run(studio, run_id)
    assert studio.runner().wait(run_id, timeout=240).status == "failed"
    last = studio.store.find("job_metrics", "job_id = ? and step = 4", [run_id])[0]["loss"]
    run_dir = studio.config.absolute(jobs.get(studio.store, run_id).state["run_dir"])
    checkpoint = checkpoints.latest(run_dir)
    assert checkpoint is not None and checkpoint.step == 4
    state_file = checkpoint.path / "state.json"
    state = json.loads(state_file.read_text())
    if recorded:
        assert state["loss"] == pytest.approx(last)
    else:
        state.pop("loss", None)
        state_file.write_text(json.dumps(state))

    resume_run(studio, run_id)
    row = studio.runner().wait(run_id, timeout=240)
    status = run_status(studio, run_id)
    assert row.status == "completed" and status["lora"], status["error"]
    assert status["final_loss"] == pytest.approx(last)
    assert [r["final_loss"] for r in list_runs(studio) if r["run"] == run_id] == [pytest.approx(last)]
    if recorded:  # the final checkpoint, saved again, keeps its loss
        assert json.loads(state_file.read_text())["loss"] == pytest.approx(last)


def test_an_image_deleted_as_the_run_starts_is_told_in_words(studio, tmp_path):
    """Deleted between the dataset's check and its hash (or its caching): a remedy, not a raw FileNotFoundError."""
    from masuka.errors import InvalidInput
    from masuka.training.data import TrainingSet

    add_dataset(studio, images=1)
    with pytest.raises(InvalidInput, match="gone.png was deleted while the run started"):
        TrainingSet(1, "fox", "sks", [(tmp_path / "gone.png", "sks, a fox")])
