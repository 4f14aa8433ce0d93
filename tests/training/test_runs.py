"""Training runs through the domain functions on tiny pipelines of every trainable profile (from_pretrained)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from masuka import jobs
from masuka.errors import GPUBusy, InvalidInput, NotFound
from masuka.image.generate import ImageRequest, generate_images
from masuka.loras.files import inspect_lora
from masuka.loras.library import list_loras
from masuka.models import architectures
from masuka.store import LOCAL_USER
from masuka.training.options import TrainOptions
from masuka.training.runs import create_run, request_stop, resume_run, run_status, start_training, submit_run

from .conftest import add_dataset

WAIT_S = 240


def options(model, **kw) -> TrainOptions:
    values = dict(dataset="fox", base=str(model), steps=4, resolution=64, lr=1e-3, save_every=0, seed=7)
    values.update(kw)
    return TrainOptions(**values)


def finish(studio, run_id: int) -> dict:
    row = studio.jobs.wait(run_id, timeout=WAIT_S)
    assert row["status"] not in ("queued", "running"), "the run did not finish in time"
    return run_status(studio, run_id)


def pixels(studio, model, loras=()) -> np.ndarray:
    request = ImageRequest(prompt="sks, a red fox", model=str(model), steps=2, width=64, height=64, seed=5,
                           loras=list(loras))
    return np.asarray(Image.open(generate_images(studio, request)[0].path), dtype=np.int16)


@pytest.mark.parametrize("architecture", [p.id for p in architectures.PROFILES.values() if p.training])
def test_short_run_writes_a_lora_that_diffusers_loads_and_that_changes_the_image(studio, tiny_model, dataset,
                                                                                  architecture):
    model = tiny_model(architecture)
    run = start_training(studio, options(model, lr=2e-2, sample_every=2, sample_prompts=["sks, a fox"],
                                         sample_steps=1))
    status = finish(studio, run)
    assert status["status"] == "completed", status["error"]
    assert [step for step, _loss in status["losses"]] == [1, 2, 3, 4]
    assert all(math.isfinite(loss) for _step, loss in status["losses"])
    assert len(status["samples"]) == 2

    info = inspect_lora(status["lora"])
    assert info.architecture == architecture and info.rank == 16 and info.trigger == "sks"
    assert info.metadata["masuka.steps"] == "4" and info.metadata["masuka.rank"] == "16"
    assert info.metadata["masuka.base_model"] == str(model) and len(info.metadata["masuka.dataset_hash"]) == 16
    card = (info.path.parent / "README.md").read_text()
    assert "sks" in card and "load_lora_weights" in card
    assert info.name in [row["name"] for row in list_loras(studio, LOCAL_USER)]

    plain = pixels(studio, model)
    trained = pixels(studio, model, [(info.name, 1.0)])  # through load_lora_weights, as the Image tab does
    assert np.abs(plain - trained).max() > 0


def test_stop_then_resume_matches_an_uninterrupted_run(studio, tiny_model, dataset):
    model = tiny_model("flux")
    straight = finish(studio, start_training(studio, options(model, steps=6)))

    run = create_run(studio, options(model, steps=6))
    submit_run(studio, run, on_step=lambda step: step == 3 and request_stop(studio, run))
    stopped = finish(studio, run)
    assert stopped["status"] == "cancelled" and "Stopped by the user at step 3" in stopped["error"]
    assert stopped["checkpoint_step"] == 3 and stopped["lora"] is None

    resume_run(studio, run)
    resumed = finish(studio, run)
    assert resumed["status"] == "completed"
    assert [step for step, _loss in resumed["losses"]] == [1, 2, 3, 4, 5, 6]
    assert "resumed from the checkpoint at step 3" in resumed["log"]
    # same optimizer state, scheduler, data order and noise: the resumed LoRA is the uninterrupted one
    np.testing.assert_allclose([loss for _s, loss in resumed["losses"]], [loss for _s, loss in straight["losses"]],
                               rtol=1e-4)
    first, second = load_file(straight["lora"]), load_file(resumed["lora"])
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key].numpy(), second[key].numpy(), rtol=1e-4, atol=1e-6)


def test_stop_with_discard_keeps_no_checkpoint(studio, tiny_model, dataset):
    run = create_run(studio, options(tiny_model("flux"), steps=5, optimizer="adafactor"))
    submit_run(studio, run, on_step=lambda step: step == 2 and request_stop(studio, run, discard=True))
    status = finish(studio, run)
    assert status["status"] == "cancelled" and "discarded" in status["error"]
    assert status["checkpoint_step"] is None and status["step"] == 2


def test_a_full_disk_at_a_checkpoint_fails_the_run_in_words_and_leaves_no_half_checkpoint(studio, tiny_model,
                                                                                          dataset, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    save_file = safetensors.torch.save_file

    def full_at_step_4(tensors, filename, *args, **kwargs):  # safetensors' own words for ENOSPC
        if "checkpoint-000004.part" in str(filename):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full_at_step_4)
    status = finish(studio, start_training(studio, options(tiny_model("flux"), steps=6, save_every=2)))
    assert status["status"] == "failed" and "The disk is full: free some disk space" in status["error"]
    assert status["checkpoint_step"] == 2, "the checkpoints saved before stay"
    assert not list(studio.config.runs_dir.rglob("*.part")), "no half-written checkpoint folder"


def test_image_generation_is_refused_while_a_run_holds_the_gpu(studio, tiny_model, dataset):
    model = tiny_model("flux")
    refused = []

    def generate_during_training(step: int) -> None:
        if step == 1:
            with pytest.raises(GPUBusy) as error:
                generate_images(studio, ImageRequest(prompt="a fox", model=str(model), steps=1, width=64, height=64),
                                gpu_timeout=0)
            refused.append(str(error.value))

    run = create_run(studio, options(model, steps=2))
    submit_run(studio, run, on_step=generate_during_training)
    assert finish(studio, run)["status"] == "completed"
    assert refused and f"training run {run}" in refused[0]


def test_queued_runs_train_one_after_another(studio, tiny_model, dataset):
    model = tiny_model("sd3")
    seen = []
    first = create_run(studio, options(model, steps=3))
    second = create_run(studio, options(model, steps=2))
    submit_run(studio, first, on_step=lambda step: seen.append(studio.store.get("jobs", second)["status"]))
    submit_run(studio, second)
    assert finish(studio, first)["status"] == "completed"
    assert finish(studio, second)["status"] == "completed"
    assert seen == ["queued"] * 3
    assert studio.store.get("jobs", second)["started_at"] >= studio.store.get("jobs", first)["finished_at"]


def test_a_run_left_queued_by_a_stopped_app_trains_after_the_restart(studio, tiny_model, dataset):
    from masuka import jobs
    from masuka.training.runs import LANE

    run = create_run(studio, options(tiny_model("sd3"), steps=2))
    # as the app that queued it left it: in the training lane, held by a process that is gone
    jobs.update(studio.store, run, lane=LANE, queued_at="2026-01-01T00:00:00+00:00", pid=2**22 + 11,
                holder="a studio of the gone process")
    studio.store.mark_interrupted()  # what the next start does: a queued run is not "interrupted"
    assert studio.store.get("jobs", run)["status"] == "queued"
    studio.jobs.adopt(LANE)
    status = finish(studio, run)
    assert status["status"] == "completed", status["error"]
    assert status["lora"] and [step for step, _loss in status["losses"]] == [1, 2]


def test_nan_loss_stops_the_run_with_a_message(studio, tiny_model, dataset, tmp_path):
    import shutil

    import torch
    from diffusers import SD3Transformer2DModel

    broken = tmp_path / "broken-sd3"
    shutil.copytree(tiny_model("sd3"), broken)
    transformer = SD3Transformer2DModel.from_pretrained(broken / "transformer")
    with torch.no_grad():
        transformer.proj_out.weight.fill_(float("nan"))
    transformer.save_pretrained(broken / "transformer")
    status = finish(studio, start_training(studio, options(broken)))
    assert status["status"] == "failed"
    assert "loss became nan at step 1" in status["error"]
    assert "Start a new run with a lower learning rate (this one used 0.001)" in status["error"]
    assert status["lora"] is None


@pytest.mark.parametrize("change, error, message", [
    ({"dataset": "nope"}, NotFound, "No dataset 'nope'"),
    ({"dataset": "empty"}, InvalidInput, "has no images"),
    ({"dataset": "uncaptioned"}, InvalidInput, "1 image\\(s\\) without a caption"),
    ({"rank": 0}, InvalidInput, "Rank must be between 1 and 128"),
    ({"steps": 0}, InvalidInput, "Steps must be between 1"),
    ({"base": "no-such-model"}, InvalidInput, "Unknown model"),
    ({"resolution": 90}, InvalidInput, "multiple of 16 for FLUX \\(got 90; try 96\\)"),
    ({"lr": 0}, InvalidInput, "Learning rate must be above 0"),
    ({"optimizer": "sgd"}, InvalidInput, "Unknown optimizer"),
    ({"optimizer": "prodigy"}, InvalidInput, "needs the 'prodigyopt' package"),  # not installed for the tests
    ({"preset": "8gb"}, InvalidInput, "Unknown preset"),
    ({"train_text_encoder": True}, InvalidInput, "SDXL only"),
    ({"sample_every": 10}, InvalidInput, "needs at least one sample prompt"),
    ({"warmup_steps": 4}, InvalidInput, "Warm-up steps must be between 0 and 3"),
    ({"name": "a" * 101}, InvalidInput, "LoRA name is too long \\(101 characters\\): at most 100"),
    ({"name": "字" * 70}, InvalidInput, "LoRA name is too long .* \\(200 bytes"),  # 210 bytes in UTF-8
    ({"name": ".hidden"}, InvalidInput, "may not start with '.'"),
    ({"push_to_hub": "not a repo id"}, InvalidInput, "'not a repo id' is not a Hub repo id"),
])
def test_bad_datasets_and_options_are_refused_before_training(studio, tiny_model, dataset, change, error, message):
    add_dataset(studio, "empty", images=0)
    add_dataset(studio, "uncaptioned", images=2, trigger="", captions=["a fox", "  "])  # no trigger to fall back on
    with pytest.raises(error, match=message):
        start_training(studio, options(tiny_model("flux"), **change))
    assert studio.store.count("jobs") == 0


def test_a_hub_upload_without_a_token_is_refused_before_training(studio, tiny_model, dataset, monkeypatch):
    for env in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(InvalidInput, match="Pushing to the Hub needs a Hugging Face token"):
        start_training(studio, options(tiny_model("flux"), push_to_hub="me/fox"))
    assert studio.store.count("jobs") == 0


def test_a_failed_hub_upload_leaves_the_run_completed_with_its_lora(studio, tiny_model, dataset, monkeypatch):
    from masuka.errors import ProviderError
    from masuka.training import export

    def refused(folder, repo_id, token, private=True):
        raise ProviderError(f"Upload to {repo_id} failed: 403 Forbidden.")

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(export, "push_to_hub", refused)
    status = finish(studio, start_training(studio, options(tiny_model("flux"), steps=1, push_to_hub="me/fox")))
    assert status["status"] == "completed" and status["error"] is None
    assert status["lora"] and status["hub_url"] is None
    assert status["hub_error"].startswith("Upload to me/fox failed: 403 Forbidden. The LoRA is in the library")
    assert "upload to the Hub failed" in status["log"]
    assert inspect_lora(status["lora"]).name in [row["name"] for row in list_loras(studio, LOCAL_USER)]


def test_a_stop_while_the_run_waits_for_the_gpu_ends_it_at_once(studio, tiny_model, dataset):
    run = create_run(studio, options(tiny_model("flux")))
    with studio.gpu.hold("another job"):
        submit_run(studio, run)
        deadline = time.monotonic() + WAIT_S
        while "waiting for the GPU" not in (jobs.get(studio.store, run).log or ""):
            assert time.monotonic() < deadline, "the run never waited for the GPU"
            time.sleep(0.05)
        request_stop(studio, run)
        status = finish(studio, run)  # while the GPU is still held: the run did not wait for it
    assert status["status"] == "cancelled" and status["step"] == 0 and status["checkpoint_step"] is None
    assert status["error"] == ("Stopped by the user while it waited for the GPU; nothing was trained, so there was "
                               "nothing to save.")


def test_a_run_resumes_on_its_own_dataset_never_on_a_namesake_made_since(studio, tiny_model, dataset):
    from masuka.datasets.library import delete_dataset

    run = create_run(studio, options(tiny_model("flux")))
    with pytest.raises(InvalidInput, match=f"The train job #{run} .* is queued on dataset 'fox'"):
        delete_dataset(studio, "fox", LOCAL_USER)
    request_stop(studio, run)
    delete_dataset(studio, "fox", LOCAL_USER)
    with pytest.raises(NotFound, match="The dataset this run trained on \\('fox'\\) was deleted"):
        resume_run(studio, run)
    namesake = add_dataset(studio, "fox", trigger="other")  # same name; never the deleted row's id
    assert namesake != jobs.get(studio.store, run).state["dataset_id"]
    with pytest.raises(NotFound, match="was deleted"):
        resume_run(studio, run)
    assert run_status(studio, run)["status"] == "cancelled"


@pytest.mark.parametrize("run_id", [99999999999999999999, "99999999999999999999", 1e30, float("nan"), 1.5, "1x"])
def test_a_run_id_no_row_can_have_does_not_exist(studio, run_id):
    with pytest.raises(NotFound, match="does not exist"):
        run_status(studio, run_id)
    with pytest.raises(NotFound, match="does not exist"):
        resume_run(studio, run_id)


@pytest.mark.parametrize("architecture, precisions", [  # README's "What trains on which preset"
    ("flux", ["fp8", "fp8", "fp8", "bf16"]), ("flux2", ["fp8", "fp8", "bf16", "bf16"]),
    ("sd3", ["fp8", "fp8", "bf16", "bf16"]), ("sdxl", ["bf16", "bf16", "bf16", "bf16"]),
    ("qwen_image", [None, None, "fp8", "fp8"]), ("z_image", ["fp8", "fp8", "bf16", "bf16"]),
])
def test_each_preset_stores_the_base_weights_as_the_readme_says(architecture, precisions):
    from masuka.training.options import PRESETS, fill_defaults

    for preset, precision in zip(PRESETS, precisions, strict=True):
        if precision is None:
            with pytest.raises(InvalidInput, match=f"The {preset} preset does not fit"):
                fill_defaults(TrainOptions(dataset="fox", base="x", preset=preset), architecture)
            continue
        filled = fill_defaults(TrainOptions(dataset="fox", base="x", preset=preset), architecture)
        assert filled.base_precision == precision, (architecture, preset)
    assert fill_defaults(TrainOptions(dataset="fox", base="x", preset="40gb", base_precision="bf16"),
                         architecture).base_precision == "bf16"  # what the user sets wins


def test_a_lora_name_typed_with_a_combining_accent_is_the_composed_name():
    from masuka.training.options import check_options, fill_defaults

    filled = fill_defaults(TrainOptions(dataset="fox", base="x", name="Cafe\u0301"), "sdxl")  # "e" + U+0301
    check_options(filled, "sdxl", 8)
    assert filled.name == "Caf\u00e9"


def test_a_seed_of_minus_one_is_drawn_once_and_recorded(monkeypatch):
    from masuka.training.options import check_options, fill_defaults

    draws = iter([7, 2**32 - 1])
    monkeypatch.setattr("masuka.training.options.random.randint", lambda low, high: next(draws))
    assert fill_defaults(TrainOptions(dataset="fox", base="x", seed=-1), "sdxl").seed == 7
    last = fill_defaults(TrainOptions(dataset="fox", base="x", seed=-1), "sdxl")
    check_options(last, "sdxl", 8)  # the largest seed drawn is one the run takes
    assert last.seed == 2**32 - 1 and fill_defaults(TrainOptions(dataset="fox", base="x", seed=5), "sdxl").seed == 5
    with pytest.raises(InvalidInput, match="Seed must be"):
        check_options(fill_defaults(TrainOptions(dataset="fox", base="x", seed=-2), "sdxl"), "sdxl", 8)


def test_warm_up_with_the_constant_schedule_ramps_up_and_an_old_run_keeps_its_own_schedule(studio, tiny_model,
                                                                                          dataset):
    model = tiny_model("flux")
    run = start_training(studio, options(model, warmup_steps=3))
    status = finish(studio, run)
    assert status["status"] == "completed", status["error"]
    assert jobs.get(studio.store, run).params["scheduler"] == "constant_with_warmup"
    lrs = [m["lr"] for m in studio.store.find("job_metrics", "job_id = ?", [run], order_by="step")]
    np.testing.assert_allclose(lrs, [1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])

    old = create_run(studio, options(model, warmup_steps=3))  # as a run recorded before the mapping was made
    jobs.update(studio.store, old, params={**jobs.get(studio.store, old).params, "scheduler": "constant"})
    submit_run(studio, old)
    assert finish(studio, old)["status"] == "completed"
    lrs = [m["lr"] for m in studio.store.find("job_metrics", "job_id = ?", [old], order_by="step")]
    assert lrs == [1e-3] * 4


def test_presets_fill_what_the_user_left_open(studio, tiny_model, dataset):
    from masuka.training.options import fill_defaults

    flux = fill_defaults(TrainOptions(dataset="fox", base="x", preset="24gb"), "flux")
    assert (flux.resolution, flux.gradient_checkpointing, flux.base_precision, flux.batch_size) == (768, True, "fp8", 1)
    sdxl = fill_defaults(TrainOptions(dataset="fox", base="x", preset="12gb", resolution=640), "sdxl")
    assert (sdxl.resolution, sdxl.base_precision, sdxl.alpha) == (640, "bf16", 16.0)
    big = fill_defaults(TrainOptions(dataset="fox", base="x", preset="40gb", rank=32, alpha=8), "sd3")
    assert (big.resolution, big.batch_size, big.gradient_checkpointing, big.alpha) == (1024, 2, False, 8)


def test_aspect_ratio_buckets_with_batches_and_gradient_accumulation(studio, tiny_model):
    add_dataset(studio, "mixed", images=4, sizes=[(64, 64), (128, 64), (64, 128), (64, 64)])
    status = finish(studio, start_training(studio, options(tiny_model("sd3"), dataset="mixed", steps=3,
                                                           batch_size=2, grad_accum=2)))
    assert status["status"] == "completed", status["error"]
    assert "cached 4 image(s) in 3 aspect bucket(s)" in status["log"]
    assert [step for step, _loss in status["losses"]] == [1, 2, 3]


def test_samples_of_a_trained_text_encoder_use_its_lora(studio, tiny_model, dataset, monkeypatch):
    import torch

    from masuka.training import loop
    from masuka.training.architectures import trainer_for

    sessions, seen = [], []
    real_sample, real_kwargs = loop.sample, trainer_for("sdxl").sample_kwargs

    def sample(plan, session, step):
        sessions.append(session)
        return real_sample(plan, session, step)

    def sample_kwargs(self, text, empty):  # the prompt's embeddings against the text encoders as they are now
        session = sessions[-1]
        now = self.encode_text(session.pipe, ["sks, a fox"], session.accelerator.device)["prompt_embeds"]
        seen.append(torch.allclose(text["prompt_embeds"].float(), now.float()))
        return real_kwargs(self, text, empty)

    monkeypatch.setattr(loop, "sample", sample)
    monkeypatch.setattr(trainer_for("sdxl"), "sample_kwargs", sample_kwargs)
    status = finish(studio, start_training(studio, options(tiny_model("sdxl"), steps=2, lr=5e-2, sample_every=2,
                                                           sample_prompts=["sks, a fox"], sample_steps=1,
                                                           train_text_encoder=True)))
    assert status["status"] == "completed", status["error"]
    assert seen == [True] and len(status["samples"]) == 1


def test_sdxl_text_encoder_lora_is_trained_exported_and_loaded(studio, tiny_model, dataset):
    model = tiny_model("sdxl")
    status = finish(studio, start_training(studio, options(model, steps=2, lr=2e-2, train_text_encoder=True)))
    assert status["status"] == "completed", status["error"]
    keys = load_file(status["lora"]).keys()
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("text_encoder_2.") for k in keys)
    assert any(k.startswith("unet.") for k in keys)
    info = inspect_lora(status["lora"])
    assert np.abs(pixels(studio, model) - pixels(studio, model, [(info.name, 1.0)])).max() > 0


@pytest.mark.parametrize("preset, resolution, batch, advice", [
    ("24gb", 768, 1, ["choose the 16gb preset", "lower the resolution from 768 to 512 px"]),
    ("40gb", 1024, 2, ["choose the 24gb preset", "from 1024 to 768 px", "batch size from 2 to 1",
                       "turn on gradient checkpointing"]),
    ("12gb", 512, 1, ["lower the resolution from 512 to 256 px"]),
    (None, 1024, 1, ["choose the preset of your GPU's memory", "turn on gradient checkpointing"]),
])
def test_out_of_memory_message_says_what_to_lower(preset, resolution, batch, advice):
    from masuka.training.loop import out_of_memory_message
    from masuka.training.options import fill_defaults

    filled = fill_defaults(TrainOptions(dataset="fox", base="x", preset=preset, resolution=resolution,
                                        batch_size=batch), "flux")
    message = out_of_memory_message(filled)
    assert message.startswith(f"Out of GPU memory at {resolution} px, batch size {batch}, preset {preset or 'none'}")
    assert all(part in message for part in advice) and message.count("choose") <= 1
    assert f"choose the {preset} preset" not in message


def test_out_of_memory_advice_follows_the_presets_own_memory(monkeypatch):
    """Every preset is offered, smallest GPU memory first, and a preset of any name, added anywhere, takes its place
    by its ``gb``: the next smaller one is advised."""
    from masuka.training.loop import out_of_memory_message
    from masuka.training.options import PRESETS, fill_defaults

    def advice(preset):
        return out_of_memory_message(fill_defaults(TrainOptions(dataset="fox", base="x", preset=preset), "flux"))

    monkeypatch.setitem(PRESETS, "h100-80g", dict(gb=80, resolution=1024, gradient_checkpointing=False, batch_size=4))
    monkeypatch.setitem(PRESETS, "8gb", dict(gb=8, resolution=384, gradient_checkpointing=True, batch_size=1))
    ordered = sorted(PRESETS, key=lambda name: PRESETS[name]["gb"])
    offered = advice(None)
    assert all(name in offered for name in PRESETS), offered
    assert [offered.index(name) for name in ordered] == sorted(offered.index(name) for name in ordered), offered
    for smaller, preset in zip(ordered, ordered[1:]):
        assert f"choose the {smaller} preset" in advice(preset)
    assert "choose" not in advice(ordered[0])
    assert fill_defaults(TrainOptions(dataset="fox", base="x", preset="h100-80g"), "flux").base_precision == "bf16"


def test_models_no_preset_fits_are_refused_in_words_and_not_offered(studio, dataset, tmp_path):
    from masuka.models.catalog import trainable_models

    folder = tmp_path / "my-flux2-dev"  # a local copy of FLUX.2 [dev]: known by its pipeline class
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "Flux2Pipeline"}')
    for base in ("flux2-dev", str(folder)):
        with pytest.raises(InvalidInput, match=r"FLUX.2 \[dev\]'s 32B transformer .* fit none of the presets"):
            start_training(studio, TrainOptions(dataset="fox", base=base, steps=2))
    with pytest.raises(InvalidInput, match="12gb preset does not fit: Qwen-Image's 20B transformer needs the 24gb"):
        start_training(studio, TrainOptions(dataset="fox", base="qwen-image", preset="12gb", steps=2))
    assert "flux2-dev" not in trainable_models() and {"flux2-klein-4b", "qwen-image", "z-image-turbo"} <= set(
        trainable_models())
    assert studio.store.count("jobs") == 0


def test_a_lora_name_in_use_is_refused_up_front_and_a_made_up_one_gets_a_suffix(studio, tiny_model, dataset):
    from tests.loras.test_imports import write_flux_lora

    studio.config.loras_dir.mkdir(parents=True, exist_ok=True)
    write_flux_lora(studio.config.loras_dir / "fox-flux-run1.safetensors")  # run 1's name, taken by a dropped file
    list_loras(studio, LOCAL_USER)
    model = tiny_model("flux")
    with pytest.raises(InvalidInput, match="already have a LoRA named 'fox-flux-run1'"):
        start_training(studio, options(model, name="fox-flux-run1"))
    assert studio.store.count("jobs") == 0
    status = finish(studio, start_training(studio, options(model, steps=1)))
    assert status["status"] == "completed", status["error"]
    assert status["lora"].endswith("/lora/fox-flux-run1-2.safetensors")
    assert sorted(r["name"] for r in list_loras(studio, LOCAL_USER)) == ["fox-flux-run1", "fox-flux-run1-2"]


def test_a_mandatory_safety_check_screens_the_sample_images(studio, tiny_model, dataset, tmp_path):
    from masuka.image.aid_settings import AidSettings, save_aid_settings
    from masuka.image.safety import PLACEHOLDER
    from tests.image.tiny_aids import save_tiny_classifier

    classifier = save_tiny_classifier(tmp_path / "nsfw", "nsfw")
    save_aid_settings(studio.config, AidSettings(safety_model=str(classifier), safety_action="withhold",
                                                 safety_mandatory=True))
    status = finish(studio, start_training(studio, options(tiny_model("flux"), steps=2, sample_every=2,
                                                           sample_prompts=["sks, a fox"], sample_steps=1)))
    assert status["status"] == "completed", status["error"]
    assert len(status["samples"]) == 1
    assert all((np.asarray(Image.open(path).convert("RGB")) == PLACEHOLDER).all() for path in status["samples"])


def test_a_trainer_that_subclasses_another_trainer_is_found(monkeypatch):
    """A new UNet architecture reuses SDXL's loss by subclassing its trainer; a profile naming a trainer that does
    not exist is told in words, not as a bare KeyError in the run's row."""
    from dataclasses import replace

    from masuka.training.architectures import SDXL, trainer_for

    class UNetVariant(SDXL):
        name = "sdxl"

    profile = architectures.require("sdxl")
    monkeypatch.setitem(architectures.PROFILES, "sdxl",
                        replace(profile, training=replace(profile.training, trainer="UNetVariant")))
    assert trainer_for("sdxl") is UNetVariant
    monkeypatch.setitem(architectures.PROFILES, "sdxl",
                        replace(profile, training=replace(profile.training, trainer="NoSuchTrainer")))
    with pytest.raises(InvalidInput, match="names the trainer 'NoSuchTrainer', which is not a trainer class"):
        trainer_for("sdxl")
    with pytest.raises(InvalidInput, match="does not train LoRAs for FLUX.2|Unknown architecture"):
        trainer_for("nothing")


def test_a_run_queued_behind_another_users_run_says_what_it_waits_for(studio, tiny_model, dataset, monkeypatch):
    import threading

    from masuka.training.runs import LANE
    from masuka.ui.train import progress_text

    held = threading.Event()
    other = jobs.create(studio.store, "train", "alice", title="alice's run")
    studio.runner().submit(other, lambda ctx: held.wait(WAIT_S), lane=LANE)
    try:
        deadline = time.monotonic() + 30
        while jobs.get(studio.store, other).status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        run = start_training(studio, options(tiny_model("flux")))
        find, read = studio.store.find, []
        monkeypatch.setattr(studio.store, "find", lambda table, where=None, *a, **k: read.append(where) or
                            find(table, where, *a, **k))
        status = run_status(studio, run)
        assert not [where for where in read if where and "lane" in where], "counted, not loaded, at every poll"
        monkeypatch.undo()
        assert status["status"] == "queued" and status["note"] == "waiting for 1 earlier training run(s)"
        assert "waiting for 1 earlier training run(s)" in status["log"]
        assert "**queued** — step 0/4 · waiting for 1 earlier training run(s)" in progress_text(status)
        request_stop(studio, run)
        assert run_status(studio, run)["note"] == ""
    finally:
        held.set()


def test_a_run_holds_its_base_model_and_safety_classifier_from_their_download_to_its_end(studio, tiny_model, dataset,
                                                                                        monkeypatch, tmp_path):
    from masuka.image.aid_settings import AidSettings, save_aid_settings
    from masuka.models.manage import delete_model
    from tests.image.tiny_aids import save_tiny_classifier
    from tests.models.in_use import cached_repo, deletion_tried_in

    cache = tmp_path / "hf-cache"
    base = cached_repo(monkeypatch, cache, tiny_model("flux"), "acme/tiny-flux")
    classifier = cached_repo(monkeypatch, cache, save_tiny_classifier(tmp_path / "nsfw", "sfw"), "acme/tiny-nsfw")
    save_aid_settings(studio.config, AidSettings(safety_model=classifier, safety_mandatory=True))
    refusals = [deletion_tried_in(monkeypatch, studio, repo, studio.gpu) for repo in (base, classifier)]
    status = finish(studio, start_training(studio, options(base, steps=2, sample_every=2,
                                                           sample_prompts=["sks, a fox"], sample_steps=1)))
    assert status["status"] == "completed", status["error"]
    assert [len(tried) for tried in refusals] == [2, 2]
    assert delete_model(studio, base) > 0 and delete_model(studio, classifier) > 0  # once the run is over


def test_a_base_model_not_downloaded_fails_the_run_offline_before_the_gpu(studio, dataset, monkeypatch, tmp_path):
    from tests.models.in_use import use_cache

    use_cache(monkeypatch, tmp_path / "empty-hf-cache")
    slots = []
    monkeypatch.setattr(studio.gpu, "hold", lambda *args, **kwargs: slots.append(args))
    status = finish(studio, start_training(studio, options("flux-schnell", steps=1)))
    assert status["status"] == "failed" and slots == []
    assert "black-forest-labs/FLUX.1-schnell is not downloaded" in status["error"]
    assert "download it in the Models tab" in status["error"]
