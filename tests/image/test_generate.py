"""Image generation through the domain function, on tiny pipelines loaded with from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput, ModelUnavailable
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters


def request(model, **kw) -> ImageRequest:
    values = dict(prompt="a red fox in the snow", model=str(model), steps=2, width=64, height=64, seed=11)
    values.update(kw)
    return ImageRequest(**values)


@pytest.mark.parametrize("architecture", ["flux", "sd3", "sdxl"])
def test_each_architecture_makes_a_recorded_png(studio, tiny_model, architecture):
    results = generate_images(studio, request(tiny_model(architecture), negative_prompt="blurry"))
    assert len(results) == 1
    image = Image.open(results[0].path)
    assert image.size == (64, 64) and image.format == "PNG"
    row = studio.store.get("generations", results[0].id)
    assert row["status"] == "completed" and row["seed"] == 11
    assert studio.config.absolute(row["output_path"]) == results[0].path
    assert row["steps"] == 2 and row["width"] == 64 and row["prompt"] == "a red fox in the snow"


def test_same_seed_same_image_and_batch_seeds_are_distinct(studio, tiny_model):
    model = tiny_model("flux")
    first = generate_images(studio, request(model, batch=3))
    again = generate_images(studio, request(model, seed=12))
    assert [r.seed for r in first] == [11, 12, 13]
    pixels = [np.asarray(Image.open(r.path)) for r in first]
    assert not np.array_equal(pixels[0], pixels[1])
    assert np.array_equal(pixels[1], np.asarray(Image.open(again[0].path)))


def test_random_seed_is_chosen_shown_and_stored(studio, tiny_model):
    result = generate_images(studio, request(tiny_model("flux"), seed=-1))[0]
    assert studio.store.get("generations", result.id)["seed"] == result.seed >= 0


def test_metadata_round_trip(studio, tiny_model):
    result = generate_images(studio, request(tiny_model("sdxl"), negative_prompt="low quality", guidance=6.5))[0]
    parsed = parse_parameters(read_parameters(result.path))
    assert parsed.prompt == "a red fox in the snow"
    assert parsed.negative_prompt == "low quality"
    assert (parsed.steps, parsed.guidance, parsed.seed, parsed.width, parsed.height) == (2, 6.5, 11, 64, 64)
    assert parsed.sampler == "Euler"


def test_pipeline_is_cached_between_requests_and_switching_frees_it(studio, tiny_model):
    generate_images(studio, request(tiny_model("flux")))
    generate_images(studio, request(tiny_model("flux"), seed=3))
    assert studio.models.loads == 1
    generate_images(studio, request(tiny_model("sdxl")))
    assert studio.models.loads == 2
    assert studio.models.key[1] == str(tiny_model("sdxl"))


def test_step_progress_is_reported(studio, tiny_model):
    steps = []
    generate_images(studio, request(tiny_model("flux"), steps=3, batch=2), on_step=lambda *a: steps.append(a))
    assert steps == [(0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 3), (1, 2, 3), (1, 3, 3)]


def test_step_progress_counts_the_sampler_s_own_steps(studio, tiny_model):
    """Heun evaluates the model twice a step (5 timesteps for 3 steps): the progress counts to 5 of 5, not 5 of 3."""
    steps = []
    generate_images(studio, request(tiny_model("sdxl"), steps=3, sampler="Heun"), on_step=lambda *a: steps.append(a))
    assert steps == [(0, step, 5) for step in range(1, 6)]


def test_stop_keeps_finished_images_and_records_the_cancel(studio, tiny_model):
    import threading

    from masuka.errors import Cancelled

    stop = threading.Event()
    with pytest.raises(Cancelled):
        generate_images(studio, request(tiny_model("flux"), batch=3, steps=3), stop=stop,
                        on_step=lambda index, step, total: index == 1 and stop.set())
    rows = studio.store.find("generations", order_by="id")
    assert [r["status"] for r in rows] == ["completed", "cancelled"]
    assert studio.config.absolute(rows[0]["output_path"]).is_file()


def test_a_stop_before_the_work_gets_the_gpu_loads_no_model(studio, tiny_model):
    """Stop pressed while the work waited for the GPU, which is free the moment it looks: the work ends before
    the model loads, and nothing is recorded."""
    import threading

    from masuka.errors import Cancelled

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        generate_images(studio, request(tiny_model("flux")), stop=stop)
    assert studio.models.loads == 0 and not studio.store.find("generations")


def test_crash_mid_batch_keeps_earlier_images_and_records_failure(studio, tiny_model, monkeypatch):
    from masuka.image import generate

    calls = {"n": 0}
    real_save = generate._save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(generate, "_save", failing_save)
    with pytest.raises(OSError):
        generate_images(studio, request(tiny_model("flux"), batch=3))
    rows = studio.store.find("generations", order_by="id")
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert "No space left" in rows[1]["error"] and rows[1]["output_path"] is None


@pytest.mark.parametrize("change, message", [
    ({"prompt": "   "}, "prompt is empty"),
    ({"width": 70}, "multiple of 16"),
    ({"height": 32}, "between 64 and 2048"),
    ({"width": 100000}, "between 64 and 2048"),
    ({"steps": 0}, "between 1 and 200"),
    ({"steps": -3}, "between 1 and 200"),
    ({"batch": 5}, "between 1 and 4"),
    ({"seed": -7}, "between 0 and"),
    ({"guidance": 99}, "Guidance"),
    ({"model": "no-such-model"}, "Unknown model"),
    ({"model": "/etc/../etc"}, "not a diffusers pipeline folder"),
    ({"loras": [("missing-lora", 1.0)]}, "was not found"),
    ({"prompt": "x" * 5000}, "too long"),
])
def test_bad_input_is_refused_and_nothing_is_recorded(studio, tiny_model, change, message):
    values = {"model": str(tiny_model("flux")), **change}
    with pytest.raises(InvalidInput, match=message):
        generate_images(studio, request(**values))
    assert studio.store.count("generations") == 0


def test_model_that_cannot_be_downloaded_names_the_repo_and_why(studio):
    with pytest.raises(ModelUnavailable, match=r"someone/not-here.*(offline|not found)"):
        generate_images(studio, request("someone/not-here"))
    assert studio.store.count("generations") == 0
