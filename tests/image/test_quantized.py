"""The 4-bit memory plans: a tiny Flux transformer written to a GGUF file (Q8_0 where the shapes allow) loads
through diffusers' GGUF support and generates on the CPU, with and without a LoRA; a missing package or file is
refused with what to install or set."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput, ModelUnavailable
from masuka.image.generate import ImageRequest, generate_images, plan_request


def write_gguf(transformer, path) -> int:
    """Write ``transformer``'s weights in diffusers' names; 2-D weights whose rows fit Q8_0 blocks are quantized.
    Returns how many tensors were quantized."""
    writer = gguf.GGUFWriter(str(path), arch="flux")
    quantized = 0
    for name, tensor in transformer.state_dict().items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized += 1
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantized


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path), dtype=float)


@pytest.mark.slow
def test_a_gguf_transformer_loads_and_generates_with_and_without_a_lora(studio, tiny_model, tmp_path, monkeypatch):
    from diffusers import FluxTransformer2DModel

    from masuka.image.pipelines import get_pipeline
    from masuka.models.catalog import resolve_image_model
    from masuka.models.synthetic import save_tiny_lora

    model = tiny_model("flux")
    path = tmp_path / "transformer-Q8_0.gguf"
    assert write_gguf(FluxTransformer2DModel.from_pretrained(model, subfolder="transformer"), path) > 0
    monkeypatch.setenv("MASUKA_GGUF_FILE", str(path))
    request = dict(prompt="a red fox", model=str(model), steps=2, width=64, height=64, seed=5,
                   memory_plan="gguf_offload")
    [plain] = generate_images(studio, ImageRequest(**request), allow_any_path=True)
    pipe = get_pipeline(studio.models, resolve_image_model(str(model)), memory="gguf_offload")  # the cached one
    assert studio.models.loads == 1
    assert type(pipe.transformer.transformer_blocks[0].attn.to_q.weight).__name__ == "GGUFParameter"

    lora = save_tiny_lora("flux", tmp_path / "style.safetensors")
    [styled] = generate_images(studio, ImageRequest(**request, loras=[(str(lora), 1.0)]), allow_any_path=True)
    assert np.abs(pixels(styled) - pixels(plain)).mean() > 0.5  # the LoRA applies over the GGUF layers

    [full] = generate_images(studio, ImageRequest(**{**request, "memory_plan": "full"}), allow_any_path=True)
    assert np.abs(pixels(plain) - pixels(full)).mean() < 8  # 8-bit weights: close to the full-precision image
    rows = studio.store.find("generations", order_by="id")
    assert [row["params"]["memory_plan"] for row in rows] == ["gguf_offload", "gguf_offload", "full"]


def flux_gguf(tiny_model, folder) -> str:
    """The tiny FLUX transformer written to ``folder``/transformer-Q8_0.gguf."""
    from diffusers import FluxTransformer2DModel

    path = folder / "transformer-Q8_0.gguf"
    write_gguf(FluxTransformer2DModel.from_pretrained(tiny_model("flux"), subfolder="transformer"), path)
    return str(path)


@pytest.mark.slow
def test_image_to_image_inpaint_and_controlnet_run_over_a_gguf_transformer(studio, tiny_model, pictures, tmp_path,
                                                                            monkeypatch):
    from masuka.image.control import Control
    from masuka.image.tasks import InitImage
    from masuka.models.tiny_control import save_tiny_controlnet
    from tests.image.guides import square_picture

    photo, mask = pictures
    monkeypatch.setenv("MASUKA_GGUF_FILE", flux_gguf(tiny_model, tmp_path))
    net = str(save_tiny_controlnet("flux", tmp_path / "cn-flux"))
    request = dict(prompt="a red fox", model=str(tiny_model("flux")), steps=2, width=64, height=64, seed=5,
                   memory_plan="gguf_offload")
    [plain] = generate_images(studio, ImageRequest(**request), allow_any_path=True)
    for extra in ({"init": InitImage(photo, strength=0.6)}, {"init": InitImage(photo, strength=0.9, mask=mask)},
                  {"controls": [Control("canny", square_picture(tmp_path), 1.0, model=net)]}):
        [made] = generate_images(studio, ImageRequest(**request, **extra), allow_any_path=True)
        assert np.abs(pixels(made) - pixels(plain)).mean() > 0.5
    assert studio.models.loads == 1  # the task and ControlNet pipelines share the quantized transformer
    assert studio.store.count("generations", "status = 'completed'") == 4


def test_nf4_is_refused_before_loading_off_cuda_and_on_a_unet_model(studio, tiny_model, monkeypatch):
    import masuka.gpu

    flux, sdxl = str(tiny_model("flux")), str(tiny_model("sdxl"))
    with pytest.raises(InvalidInput, match=r"nf4_offload needs a CUDA GPU \(bitsandbytes 4-bit\); choose "
                                           "gguf_offload or another plan"):
        plan_request(studio, ImageRequest(prompt="a fox", model=flux, memory_plan="nf4_offload"))
    monkeypatch.setattr(masuka.gpu, "usable_device", lambda: "cuda")
    with pytest.raises(InvalidInput, match="nf4_offload quantizes a model's transformer, and SDXL has a unet"):
        plan_request(studio, ImageRequest(prompt="a fox", model=sdxl, memory_plan="nf4_offload"))
    assert studio.models.loads == 0


def test_nf4_off_cuda_on_a_unet_model_does_not_suggest_gguf(studio, tiny_model):
    """Off CUDA, NF4 on SDXL says the plan does not fit a UNet, not "choose gguf_offload" (refused there too)."""
    with pytest.raises(InvalidInput) as refused:
        plan_request(studio, ImageRequest(prompt="a fox", model=str(tiny_model("sdxl")), memory_plan="nf4_offload"))
    assert str(refused.value) == ("nf4_offload quantizes a model's transformer, and SDXL has a unet instead: choose "
                                  "another memory plan.")


@pytest.mark.parametrize("architecture", ["flux", "sd3", "sdxl", None])
def test_nf4_quantizes_the_big_text_encoder_with_the_transformer(monkeypatch, architecture):
    """T5-XXL in bf16 takes about 9.5 GB on the GPU while it encodes: more than a 4-bit FLUX.1 transformer."""
    import torch

    import masuka.gpu
    from masuka.image.quantized import quantized_components
    from masuka.models import architectures

    monkeypatch.setattr(masuka.gpu, "usable_device", lambda: "cuda")
    config = quantized_components("some/repo", "nf4_offload", torch.bfloat16,
                                  architecture=architecture)["quantization_config"]
    encoder = architectures.get(architecture).big_text_encoder if architecture else None
    assert config.components_to_quantize == ["transformer", *([encoder] if encoder else [])]
    assert config.quant_backend == "bitsandbytes_4bit" and config.quant_kwargs["bnb_4bit_quant_type"] == "nf4"


def test_missing_package_or_file_is_refused_with_what_to_do(studio, tiny_model, monkeypatch):
    import importlib.util

    import masuka.gpu

    model = str(tiny_model("flux"))
    monkeypatch.setattr(masuka.gpu, "usable_device", lambda: "cuda")  # NF4 is refused off CUDA before the package
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    with pytest.raises(InvalidInput, match=r"nf4_offload memory plan needs the bitsandbytes package.*pip install"):
        plan_request(studio, ImageRequest(prompt="a fox", model=model, memory_plan="nf4_offload"))
    monkeypatch.delenv("MASUKA_GGUF_FILE", raising=False)
    with pytest.raises(InvalidInput, match="set MASUKA_GGUF_FILE"):
        plan_request(studio, ImageRequest(prompt="a fox", model=model, memory_plan="gguf_offload"))


def test_a_gguf_file_that_is_missing_or_not_this_model_s_transformer_is_named(studio, tiny_model, tmp_path,
                                                                              monkeypatch):
    flux, sd3, sdxl = (str(tiny_model(architecture)) for architecture in ("flux", "sd3", "sdxl"))
    request = dict(prompt="a fox", steps=1, width=64, height=64, memory_plan="gguf_offload")
    for named, refusal in ((tmp_path / "gone.gguf", "not an existing .gguf file"),
                           (tmp_path / "notes.txt", "not an existing .gguf file"),
                           ("https://huggingface.co/x/y/blob/main/model.bin", "not a .gguf file's URL")):
        monkeypatch.setenv("MASUKA_GGUF_FILE", str(named))
        with pytest.raises(InvalidInput, match=refusal):
            plan_request(studio, ImageRequest(model=flux, **request))
    text = tmp_path / "text.gguf"
    text.write_text("not a gguf file")
    monkeypatch.setenv("MASUKA_GGUF_FILE", str(text))
    with pytest.raises(InvalidInput, match=rf"MASUKA_GGUF_FILE \({text}\) could not be loaded as the "
                                           "FluxTransformer2DModel"):
        generate_images(studio, ImageRequest(model=flux, **request), allow_any_path=True)
    monkeypatch.setenv("MASUKA_GGUF_FILE", flux_gguf(tiny_model, tmp_path))
    with pytest.raises(InvalidInput, match=rf"could not be loaded as the SD3Transformer2DModel of {sd3}: its tensors "
                                           r"are not those of a SD3Transformer2DModel \(another architecture, or an "
                                           r"incomplete file\)"):
        generate_images(studio, ImageRequest(model=sd3, **request), allow_any_path=True)
    with pytest.raises(InvalidInput, match="gguf_offload quantizes a model's transformer, and SDXL has a unet"):
        generate_images(studio, ImageRequest(model=sdxl, **request), allow_any_path=True)
    assert studio.store.count("generations", "status = 'completed'") == 0


def test_a_hub_model_under_gguf_offload_downloads_everything_but_the_transformer_s_weights(studio, tiny_model,
                                                                                           tmp_path, monkeypatch):
    from diffusers import FluxTransformer2DModel

    from tests.models.fake_hub import FakeRepo, hub_online

    folder = tiny_model("flux")
    path = tmp_path / "transformer-Q8_0.gguf"
    write_gguf(FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer"), path)
    monkeypatch.setenv("MASUKA_GGUF_FILE", str(path))
    weights = "transformer/diffusion_pytorch_model.safetensors"
    request = dict(prompt="a fox", model="acme/tiny-flux", steps=1, width=64, height=64, seed=1)
    with hub_online(monkeypatch, {"acme/tiny-flux": FakeRepo.of_folder(folder)}, tmp_path / "hf-cache") as hub:
        assert weights in hub.repos["acme/tiny-flux"].files
        generate_images(studio, ImageRequest(**request, memory_plan="gguf_offload"))
        generate_images(studio, ImageRequest(**request, memory_plan="gguf_offload"))
        assert weights not in hub.downloads and hub.downloads["vae/diffusion_pytorch_model.safetensors"] == 1
        assert studio.store.count("jobs", "kind = 'download' and status = 'completed'") == 1  # once, used twice
        generate_images(studio, ImageRequest(**request, memory_plan="full"))  # now the transformer is needed
        assert hub.downloads[weights] == 1
        assert studio.store.count("jobs", "kind = 'download' and status = 'completed'") == 2


def test_a_gguf_file_named_by_url_is_downloaded_before_the_gpu_slot(studio, tiny_model, tmp_path, monkeypatch):
    from contextlib import contextmanager

    from tests.models.fake_hub import FakeRepo, hub_online

    gguf = Path(flux_gguf(tiny_model, tmp_path)).read_bytes()
    monkeypatch.setenv("MASUKA_GGUF_FILE", "https://huggingface.co/acme/flux-gguf/blob/main/model-Q8_0.gguf")
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           memory_plan="gguf_offload")
    downloads: dict[str, int] = {}  # the fake Hub's, once it runs
    downloaded_at_slot = []
    real = studio.hold_gpu

    @contextmanager
    def hold(*args, **kwargs):
        downloaded_at_slot.append(downloads.get("model-Q8_0.gguf"))
        with real(*args, **kwargs):
            yield

    monkeypatch.setattr(studio, "hold_gpu", hold)
    with pytest.raises(ModelUnavailable, match=r"is not downloaded and the Hugging Face Hub \(.*\) cannot be "
                                               r"reached \(offline"):
        generate_images(studio, request, allow_any_path=True)  # the tests run with HF_HUB_OFFLINE=1
    assert downloaded_at_slot == []  # refused before the GPU
    with hub_online(monkeypatch, {"acme/flux-gguf": FakeRepo({"model-Q8_0.gguf": gguf})}, tmp_path / "hf") as hub:
        downloads = hub.downloads
        generate_images(studio, request, allow_any_path=True)
        generate_images(studio, request, allow_any_path=True)
    assert downloaded_at_slot == [1, 1] and downloads["model-Q8_0.gguf"] == 1


def test_a_gguf_plan_on_a_unet_model_is_refused_before_anything_is_fetched(monkeypatch):
    """GGUF replaces a transformer: on SDXL (a UNet) it is refused at planning, before a GGUF named by URL is
    downloaded (NF4's refusal there: test_nf4_is_refused_before_loading_off_cuda_and_on_a_unet_model)."""
    from masuka.image.quantized import check_quantized_plan

    monkeypatch.setenv("MASUKA_GGUF_FILE", "https://huggingface.co/acme/sdxl-gguf/blob/main/unet-Q4_K_S.gguf")
    with pytest.raises(InvalidInput, match="gguf_offload quantizes a model's transformer, and SDXL has a unet"):
        check_quantized_plan("gguf_offload", "sdxl")


@pytest.mark.slow
def test_the_repo_a_gguf_file_comes_from_is_held_while_the_generation_runs(studio, tiny_model, tmp_path,
                                                                         monkeypatch):
    """"Delete from cache" of the repo the ``.gguf`` file is in (named by its path in the cache or by URL) is
    refused while a ``gguf_offload`` request runs, rather than pulling the file from under its load."""
    from masuka.models.hub import repo_cache_folder
    from tests.models.in_use import SHA, cached_repo, deletion_tried_in

    (tmp_path / "gguf").mkdir()
    flux_gguf(tiny_model, tmp_path / "gguf")
    repo = cached_repo(monkeypatch, tmp_path / "hf", tmp_path / "gguf", "acme/flux-gguf")
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           memory_plan="gguf_offload")
    refusals = deletion_tried_in(monkeypatch, studio, repo, studio.gpu)
    for named in (repo_cache_folder(repo) / "snapshots" / SHA / "transformer-Q8_0.gguf",
                  f"https://huggingface.co/{repo}/blob/main/transformer-Q8_0.gguf"):
        monkeypatch.setenv("MASUKA_GGUF_FILE", str(named))
        generate_images(studio, request, allow_any_path=True)
    assert len(refusals) == 4  # as each request took the GPU and as it left it
