"""``python -m masuka bench image`` on a tiny model: figures printed as JSON, kept in the store, listed newest
first by ``latest_bench_results``; the benchmark's images never reach the user's History or outputs."""

from __future__ import annotations

import json

import pytest

from masuka.bench import latest_bench_results
from masuka.cli import main


def test_bench_image_reports_overheads_loads_and_lora_switches(config, capsys):
    code = main(["bench", "image", "--tiny", "flux", "--size", "64", "--steps", "2", "--runs", "1",
                 "--data-dir", str(config.data_dir), "--json"])
    assert code == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    figures = row["figures"]
    assert figures["model"] == "tiny-flux" and figures["memory_plan"] == "full" and figures["device"] == "cpu"
    assert figures["second_generation_loads"] == 0
    assert figures["task_switch_loads"] == 0, "image-to-image shares the loaded weights"
    assert figures["img2img_half_strength_time_ratio"] > 0
    for name in ("baseline_s_per_image", "masuka_s_per_image", "cli_s", "bare_load_and_call_s", "lora_switch_s",
                 "lora_hotswap_s", "masuka_it_per_s", "peak_rss_gb"):
        assert figures[name] > 0, name
    ratio = figures["baseline_s_per_image"] / figures["masuka_s_per_image"]
    assert figures["speedup"] == pytest.approx(ratio, rel=0.01)

    from masuka.studio import Studio

    studio = Studio.open(config)
    try:
        latest = latest_bench_results(studio)
        assert latest[0]["id"] == row["id"] and latest[0]["figures"] == figures
        assert latest[0]["params"]["tiny"] == "flux"
        assert studio.store.count("generations") == 0, "the benchmark's images stay out of History"
    finally:
        studio.close()
    assert [path for path in config.outputs_dir.rglob("*") if path.is_file()] == []


def test_latest_results_keep_the_newest_of_each_benchmark(studio):
    for kind, model, value in [("startup", None, 1.0), ("image", "sdxl", 2.0), ("startup", None, 3.0),
                               ("image", "flux-dev", 4.0), ("image", "sdxl", 5.0)]:
        studio.store.insert("bench_results", {"kind": kind, "params": {"model": model}, "machine": "test",
                                              "figures": {"model": model, "value": value}})
    latest = latest_bench_results(studio)
    assert [(r["kind"], r["figures"]["value"]) for r in latest] == [("image", 5.0), ("image", 4.0), ("startup", 3.0)]
    studio.store.insert("bench_results", {"kind": "image", "params": {"model": "sdxl", "through_app": True},
                                          "machine": "test", "figures": {"model": "sdxl", "value": 6.0}})
    latest = latest_bench_results(studio)  # a --through-app run is a benchmark of its own: the plain row stays
    assert [r["figures"]["value"] for r in latest] == [6.0, 5.0, 4.0, 3.0]


def test_a_four_bit_plan_is_measured_through_the_loading_path(config, capsys, tiny_model, tmp_path, monkeypatch):
    """A model's files are what the 4-bit plans quantize: a tiny Flux folder with its transformer in a GGUF file
    runs through ``generate_images`` under ``gguf_offload`` against the plain pipeline."""
    from diffusers import FluxTransformer2DModel

    from tests.image.test_quantized import write_gguf

    model = tiny_model("flux")
    path = tmp_path / "transformer-Q8_0.gguf"
    assert write_gguf(FluxTransformer2DModel.from_pretrained(model, subfolder="transformer"), path) > 0
    monkeypatch.setenv("MASUKA_GGUF_FILE", str(path))
    code = main(["bench", "image", "--model", str(model), "--memory-plan", "gguf_offload", "--size", "64",
                 "--steps", "2", "--runs", "1", "--data-dir", str(config.data_dir), "--json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["figures"]
    assert figures["memory_plan"] == "gguf_offload" and figures["masuka_s_per_image"] > 0
    assert figures["baseline_s_per_image"] > 0


@pytest.mark.parametrize("plan", ["nf4_offload", "gguf_offload"])
def test_a_four_bit_plan_is_not_measured_on_random_weights(config, capsys, plan):
    """Random weights are built in memory, so a 4-bit plan (quantized while loading files) would measure an
    unquantized transformer under its name: the run is refused before anything is built."""
    code = main(["bench", "image", "--model", "flux-dev", "--random-weights", "--memory-plan", plan,
                 "--data-dir", str(config.data_dir)])
    assert code != 0
    assert f"The {plan} plan quantizes the transformer while loading it from files" in capsys.readouterr().err


def test_random_weights_that_do_not_fit_host_memory_are_refused_before_building(config, capsys, monkeypatch):
    """FLUX.1-dev's 12B transformer in fp32 on a CPU: refused naming the GiB needed and available, not left to
    the allocator's traceback or the OOM killer."""
    from masuka.bench import image

    monkeypatch.setattr(image, "available_host_gb", lambda: 3.0)
    monkeypatch.setattr(image, "real_pipeline", lambda *args: pytest.fail("built despite the host memory check"))
    code = main(["bench", "image", "--model", "flux-dev", "--random-weights", "--data-dir", str(config.data_dir)])
    assert code != 0
    err = capsys.readouterr().err
    assert "flux-dev with random weights needs about" in err and "GiB of host memory" in err
    assert "3 GiB available" in err and "Traceback" not in err


@pytest.mark.parametrize("flags, wrong", [
    (["--through-app", "--tiny", "flux"], "--tiny"), (["--through-app", "--fast"], "--fast"),
    (["--through-app", "--memory-plan", "model_offload"], "--memory-plan"),
    (["--through-app", "--warmup", "3"], "--warmup"), (["--through-app", "--step-cache", "0.1"], "--step-cache"),
    (["--through-app", "--random-weights"], "--random-weights"),
    (["--through-app", "--model", "flux-dev"], "--through-app measures a pipeline folder, not 'flux-dev'"),
    (["--through-app", "--model", "/nonexistent/tiny-flux"], "The folder /nonexistent/tiny-flux does not exist"),
])
def test_through_app_refuses_what_it_does_not_take(config, capsys, flags, wrong):
    code = main(["bench", "image", *flags, "--data-dir", str(config.data_dir)])
    err = capsys.readouterr().err
    assert code != 0 and wrong in err and "Traceback" not in err


@pytest.mark.parametrize("flags, message", [
    (["image", "--size", "-64"], "must be at least 64"), (["image", "--size", "0"], "must be at least 64"),
    (["image", "--size", "48"], "must be at least 64"), (["image", "--through-app", "--size", "32"], "at least 64"),
    (["image", "--size", "4096"], "must be a multiple of 16 from 64 to 2048 (got 4096)"),
    (["image", "--through-app", "--size", "100"], "must be a multiple of 16 from 64 to 2048 (got 100)"),
    (["image", "--steps", "-1"], "must be at least 1"), (["image", "--steps", "0"], "must be at least 1"),
    (["image", "--warmup", "-3"], "must be at least 0"),
    (["train", "--steps", "4", "--rounds", "1"], "must be at least 5"),
    (["train", "--rounds", "0"], "must be at least 1"),
])
def test_numeric_bench_options_are_checked_before_anything_runs(config, capsys, flags, message):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", *flags, "--data-dir", str(config.data_dir)])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
