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
