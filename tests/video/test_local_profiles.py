"""Local video on the architecture profiles: tiny random Wan 2.2 (TI2V, two-expert A14B) and LTX-2 pipelines,
written to folders and loaded through ``from_pretrained``, run as video jobs."""

from __future__ import annotations

import pytest

from masuka.video.jobs import start_video, wait_video
from masuka.video.media import check_mp4, has_audio
from tests.video.test_local import frames_and_size, local


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``tiny(variant)`` -> folder of a tiny random video pipeline of that profile variant."""
    from masuka.models.synthetic import save_tiny_video_pipeline

    built = {}

    def make(variant: str):
        if variant not in built:
            built[variant] = save_tiny_video_pipeline(tmp_path_factory.mktemp(variant), variant=variant)
        return built[variant]

    return make


def test_wan22_ti2v_makes_text_and_image_to_video_with_one_load(studio, tiny, first_frame):
    from masuka.video.catalog import model_entry

    folder = tiny("wan2.2-ti2v")
    assert model_entry("local", str(folder))["size_multiple"] == 32  # 16x VAE, 2x2 patches
    text = wait_video(studio, start_video(studio, local(folder)), timeout=300)
    assert text["status"] == "completed", text["error"]
    assert frames_and_size(studio.config.absolute(text["result"]["video"])) == (9, (32, 32))
    image = wait_video(studio, start_video(studio, local(folder, image=str(first_frame))), timeout=300)
    assert image["status"] == "completed", image["error"]
    assert frames_and_size(studio.config.absolute(image["result"]["video"])) == (9, (32, 32))
    assert studio.models.loads == 1  # the first frame reuses the loaded TI2V weights
    pipe = studio.models.get(studio.models.key, lambda: None)
    assert pipe.masuka_sharing["WanImageToVideoPipeline"].transformer is pipe.transformer


def test_a_first_frame_keeps_the_memory_plans_fp8_weights(tiny):
    import torch
    from diffusers import DiffusionPipeline

    from masuka.gpu import DevicePlan
    from masuka.image.pipelines import prepare_pipeline
    from masuka.models.architectures.wan import PROFILE
    from masuka.video.local import _image_pipeline

    pipe = DiffusionPipeline.from_pretrained(tiny("wan2.2-ti2v"), use_safetensors=True)
    prepare_pipeline(pipe, DevicePlan("cpu", "float32", memory="fp8_offload", vae_tiling=True))
    image_pipe = _image_pipeline(pipe, PROFILE, "wan2.2-ti2v", [5])
    assert type(image_pipe).__name__ == "WanImageToVideoPipeline" and image_pipe.config.expand_timesteps
    assert image_pipe.transformer.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn


def test_a_folder_chains_only_when_its_pipeline_animates_a_first_frame(studio, tiny):
    """Its video profile says so from ``model_index.json``: text-to-video Wan 2.1 and A14B folders are offered no
    chained lengths and a chain is priced with the reason and refused before any job; TI2V and LTX-2 chain."""
    from masuka.errors import InvalidInput
    from masuka.ui.video import CHAIN_LENGTHS, _seconds_choices, price

    for variant in ("wan2.1", "wan2.2-a14b"):
        folder = str(tiny(variant))
        assert not set(CHAIN_LENGTHS) & set(_seconds_choices("local", folder)), variant
        assert "cannot continue from a frame, so it cannot chain a 15 s video" in price(
            studio, "local", folder, 15, "32x32", None, [], "a fox"), variant
        with pytest.raises(InvalidInput, match="cannot chain a 15 s video"):
            start_video(studio, local(folder, seconds=15))
    assert studio.store.count("jobs") == 0
    for variant in ("wan2.2-ti2v", "ltx2"):
        folder = str(tiny(variant))
        assert set(CHAIN_LENGTHS) <= set(_seconds_choices("local", folder)), variant
        assert "Estimated cost: $0.00** for 15 s at 32x32" in price(studio, "local", folder, 15, "32x32", None, [],
                                                                    "a fox")


def test_wan22_a14b_runs_both_experts_with_per_step_progress(studio, tiny):
    folder = tiny("wan2.2-a14b")
    row = wait_video(studio, start_video(studio, local(folder, steps=4)), timeout=300)
    assert row["status"] == "completed", row["error"]
    assert (row["step"], row["total"], row["progress"]) == (4, 4, 1.0)
    pipe = studio.models.get(studio.models.key, lambda: None)
    assert pipe.config.boundary_ratio == 0.875 and pipe.transformer_2 is not None


def test_fp8_plan_stores_both_wan22_experts_in_fp8(tiny):
    import torch
    from diffusers import DiffusionPipeline

    from masuka.gpu import DevicePlan
    from masuka.image.memory import apply_memory_plan

    pipe = DiffusionPipeline.from_pretrained(tiny("wan2.2-a14b"), use_safetensors=True)
    apply_memory_plan(pipe, DevicePlan("cpu", "float32", memory="fp8_offload", vae_tiling=True))
    for expert in (pipe.transformer, pipe.transformer_2):
        assert expert.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    assert pipe.vae.use_tiling


def test_ltx2_video_comes_with_sound_unless_turned_off(studio, tiny, first_frame):
    from masuka.video.catalog import model_entry

    folder = tiny("ltx2")
    entry = model_entry("local", str(folder))
    assert entry["audio"] and entry["frame_multiple"] == 2
    row = wait_video(studio, start_video(studio, local(folder)), timeout=300)
    assert row["status"] == "completed", row["error"]
    video = studio.config.absolute(row["result"]["video"])
    check_mp4(video)
    assert frames_and_size(video) == (9, (32, 32)) and has_audio(video)
    quiet = wait_video(studio, start_video(studio, local(folder, audio=False, image=str(first_frame))), timeout=300)
    assert quiet["status"] == "completed", quiet["error"]
    assert not has_audio(studio.config.absolute(quiet["result"]["video"]))
    assert studio.models.loads == 1


@pytest.mark.parametrize("variant", ["ltx2", "wan2.2-ti2v"])
def test_an_image_to_video_folder_of_weights_that_also_do_text_makes_a_video_from_a_prompt(studio, tmp_path, variant):
    """LTX-2 and Wan 2.2 TI2V weights saved as their image-to-video pipeline: a prompt alone makes a video through
    the text pipeline built around the same modules (it was refused once loaded: the folder's class needs a frame)."""
    import json

    import diffusers

    from masuka.models.architectures.video import for_video_pipeline, tiny_video_pipeline
    from masuka.video.catalog import model_entry

    pipe = tiny_video_pipeline(variant)
    text_class = type(pipe).__name__
    image_class = for_video_pipeline(text_class).image_pipeline(text_class, pipe.config)
    folder = tmp_path / "image-to-video"
    getattr(diffusers, image_class).from_pipe(pipe).save_pretrained(folder, safe_serialization=True)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == image_class
    assert model_entry("local", str(folder))["text"], "offered for text"
    row = wait_video(studio, start_video(studio, local(folder)), timeout=300)
    assert row["status"] == "completed", row["error"]
    loaded = studio.models.get(studio.models.key, lambda: None)
    assert type(loaded).__name__ == image_class and list(loaded.masuka_sharing) == [text_class]
    assert loaded.masuka_sharing[text_class].transformer is loaded.transformer, "nothing loaded twice"
