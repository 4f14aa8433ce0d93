"""The architecture registry: its facts, and LoRA files recognised from their layer names and tensor shapes.

The LoRA fixtures have the real layer names and widths of files made by diffusers/peft, kohya (sd-scripts,
musubi-tuner), ai-toolkit and the BFL originals for each family; rank 1 and float16 keep them small.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import diffusers
import numpy as np
import pytest
from safetensors.numpy import save_file

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.loras.files import inspect_lora
from masuka.models import architectures
from masuka.models.catalog import architecture_of, image_models, resolve_image_model

ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
JOINT = ATTENTION + ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def peft(prefix: str, layers: dict[str, tuple[int, int]]) -> dict[str, tuple[int, ...]]:
    """diffusers/peft keys (``lora_A``/``lora_B``) for ``{layer: (in, out)}``."""
    keys = {}
    for layer, (width_in, width_out) in layers.items():
        keys[f"{prefix}{layer}.lora_A.weight"] = (1, width_in)
        keys[f"{prefix}{layer}.lora_B.weight"] = (width_out, 1)
    return keys


def kohya(prefix: str, layers: dict[str, tuple[int, int]]) -> dict[str, tuple[int, ...]]:
    """kohya keys (``lora_down``/``lora_up`` + ``alpha``), layer names joined by ``_``."""
    keys = {}
    for layer, (width_in, width_out) in layers.items():
        name = prefix + layer.replace(".", "_")
        keys |= {f"{name}.lora_down.weight": (1, width_in), f"{name}.lora_up.weight": (width_out, 1),
                 f"{name}.alpha": ()}
    return keys


def blocks(template: str, indices, names, width: int, out: int | None = None) -> dict[str, tuple[int, int]]:
    return {template.format(i=i, name=name): (width, out or width) for i in indices for name in names}


FLUX1_DOUBLE = blocks("transformer_blocks.{i}.attn.{name}", (0, 7, 18), JOINT, 3072)
FLUX1_SINGLE = blocks("single_transformer_blocks.{i}.{name}", (0, 37), ("attn.to_q", "proj_mlp"), 3072)
SD35_LARGE = blocks("transformer_blocks.{i}.attn.{name}", (0, 20, 37), JOINT, 2432)
QWEN = (blocks("transformer_blocks.{i}.attn.{name}", (0, 30, 59), JOINT, 3072)
        | blocks("transformer_blocks.{i}.{name}", (0, 59), ("img_mlp.net.0.proj", "txt_mlp.net.0.proj"), 3072))

CASES = {
    "FLUX.1 diffusers, double blocks only": (peft("transformer.", FLUX1_DOUBLE), "flux"),
    "FLUX.1 ai-toolkit": (peft("transformer.", FLUX1_DOUBLE | FLUX1_SINGLE), "flux"),
    "FLUX.1 kohya": (kohya("lora_unet_", blocks("double_blocks.{i}.{name}", (0, 18), ("img_attn.qkv",), 3072, 9216)
                           | blocks("single_blocks.{i}.{name}", (0, 37), ("linear1",), 3072, 21504)), "flux"),
    "FLUX.1 kohya, double blocks only": (
        kohya("lora_unet_", blocks("double_blocks.{i}.{name}", range(19), ("img_attn.qkv", "txt_attn.qkv"),
                                   3072, 9216)), "flux"),
    "FLUX.1 BFL names": (peft("diffusion_model.", blocks("double_blocks.{i}.{name}", (0,), ("img_mlp.0",), 3072,
                                                          12288)), "flux"),
    "FLUX.2 [klein] 4B diffusers": (peft("transformer.", blocks(
        "single_transformer_blocks.{i}.attn.{name}", (0, 19), ("to_qkv_mlp_proj",), 3072, 27648)
        | blocks("transformer_blocks.{i}.{name}", (0, 4), ("attn.to_q", "ff.linear_in"), 3072)), "flux2"),
    "FLUX.2 [dev] diffusers, attention only": (peft("transformer.", blocks(
        "transformer_blocks.{i}.attn.{name}", range(8), ATTENTION, 6144)), "flux2"),
    "FLUX.2 [klein] BFL names": (peft("diffusion_model.", blocks("single_blocks.{i}.{name}", (0, 19), ("linear1",),
                                                                  3072, 27648)), "flux2"),
    "SD3.5 Large diffusers": (peft("transformer.", SD35_LARGE), "sd3"),
    "SD3.5 Medium diffusers (second attention)": (peft("transformer.", blocks(
        "transformer_blocks.{i}.{name}", (0, 12), ("attn.to_q", "attn2.to_q"), 1536)), "sd3"),
    "SD3 kohya": (kohya("lora_unet_", blocks("joint_blocks.{i}.x_block.{name}", (0, 23), ("attn.qkv",), 1536,
                                             4608)), "sd3"),
    "SDXL diffusers": (peft("unet.", blocks("down_blocks.{i}.attentions.0.transformer_blocks.0.{name}", (1, 2),
                                            ("attn2.to_k", "attn2.to_v"), 2048, 640)), "sdxl"),
    "SDXL kohya": (kohya("lora_unet_", blocks("input_blocks.{i}.1.transformer_blocks.0.{name}", (4, 7),
                                              ("attn2.to_k",), 2048, 640))
                   | kohya("lora_te2_", {"text_model.encoder.layers.0.self_attn.q_proj": (1280, 1280)}), "sdxl"),
    "Qwen-Image diffusers": (peft("transformer.", QWEN), "qwen_image"),
    "Qwen-Image musubi-tuner": (kohya("lora_unet_", QWEN), "qwen_image"),
    "Qwen-Image Lightning-style, attention only": (
        peft("transformer.", blocks("transformer_blocks.{i}.attn.{name}", range(60), ("to_q",), 3072)), "qwen_image"),
    "Z-Image diffusers": (peft("diffusion_model.", blocks("layers.{i}.{name}", (0, 29), (
        "attention.to_q", "attention.to_k", "feed_forward.w1"), 3840)), "z_image"),
    "Z-Image original names": (peft("diffusion_model.", blocks("layers.{i}.attention.{name}", (0, 29), ("qkv",),
                                                               3840, 11520)), "z_image"),
}
REFUSED = {
    "SD 1.x": kohya("lora_unet_", blocks("down_blocks.{i}.attentions.0.transformer_blocks.0.{name}", (0, 1),
                                         ("attn2.to_k",), 768, 320))
    | kohya("lora_te_", {"text_model.encoder.layers.0.self_attn.q_proj": (768, 768)}),
    "SD 2.x": peft("unet.", blocks("down_blocks.{i}.attentions.0.transformer_blocks.0.{name}", (0, 1),
                                   ("attn2.to_k",), 1024, 320)),
    "Wan": peft("diffusion_model.", blocks("blocks.{i}.{name}", (0, 39), ("self_attn.q", "cross_attn.k"), 5120)),
    "LTX-Video": peft("transformer.", blocks("transformer_blocks.{i}.{name}", (0, 27), ("attn1.to_q", "attn2.to_k"),
                                             2048)),
    "CogVideoX": peft("transformer.", blocks("transformer_blocks.{i}.attn1.{name}", (0, 41), ATTENTION, 3072)),
    "HunyuanVideo": peft("transformer.", blocks("transformer_blocks.{i}.attn.{name}", (0, 19), ATTENTION, 3072)
                         | blocks("single_transformer_blocks.{i}.attn.{name}", (0, 39), ("to_q",), 3072)),
    "LoHa/LoKr": {"lora_unet_double_blocks_0_img_attn_qkv.hada_w1_a": (3072, 1),
                  "lora_unet_double_blocks_0_img_attn_qkv.hada_w1_b": (1, 3072)},
}


def write(path, shapes: dict[str, tuple[int, ...]], metadata: dict | None = None):
    save_file({key: np.zeros(shape, np.float16) for key, shape in shapes.items()}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("case", CASES)
def test_loras_are_recognised_by_layer_names_and_shapes(tmp_path, case):
    shapes, expected = CASES[case]
    info = inspect_lora(write(tmp_path / "x.safetensors", shapes))
    assert info.architecture == expected and info.rank == 1


@pytest.mark.parametrize("family", REFUSED)
def test_loras_for_other_models_are_refused_naming_what_they_are_for(studio, tmp_path, tiny_model, family):
    from masuka.image.generate import ImageRequest, generate_images

    path = write(tmp_path / "other.safetensors", REFUSED[family])
    with pytest.raises(InvalidInput, match=f"{family}.*; MASUKA's models are FLUX.1, FLUX.2"):
        inspect_lora(path)
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           loras=[(str(path), 1.0)])
    with pytest.raises(InvalidInput, match=family):  # at use, before anything loads
        generate_images(studio, request, allow_any_path=True)


def test_metadata_never_outweighs_the_shapes(tmp_path):
    shapes, _ = CASES["SD3.5 Large diffusers"]
    info = inspect_lora(write(tmp_path / "x.safetensors", shapes, {"ss_base_model_version": "flux1"}))
    assert info.architecture == "sd3"


def test_import_lora_reports_the_profile_id(capsys, tmp_path):
    for case, (shapes, expected) in {k: CASES[k] for k in ("Z-Image diffusers", "FLUX.2 [klein] 4B diffusers",
                                                            "Qwen-Image diffusers")}.items():
        path = write(tmp_path / f"{expected}.safetensors", shapes)
        code = main(["models", "import-lora", "--data-dir", str(tmp_path / "data"), "--file", str(path), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(out)["architecture"] == expected, case
    code = main(["models", "import-lora", "--data-dir", str(tmp_path / "data"), "--file",
                 str(write(tmp_path / "wan.safetensors", REFUSED["Wan"])), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and "is for Wan (video)" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("profile", architectures.PROFILES.values(), ids=lambda p: p.id)
def test_each_profile_names_real_pipeline_classes_and_catalog_entries(profile):
    for task, class_name in profile.pipelines.items():
        assert task in architectures.base.TASKS and hasattr(diffusers, class_name), class_name
        assert architecture_of(class_name) == profile.id
    entries = [key for key, entry in image_models().items() if entry["architecture"] == profile.id]
    assert entries, f"no catalog entry for {profile.id}"
    for key in entries:
        spec = resolve_image_model(key)
        assert spec.profile is profile and spec.size_multiple == profile.size_multiple
        assert profile.covers(spec.pipeline) and spec.license and spec.vram_gb
    for model_id in profile.real_models:
        assert model_id in image_models()


@pytest.mark.parametrize("profile", architectures.PROFILES.values(), ids=lambda p: p.id)
def test_the_call_arguments_a_profile_names_are_its_pipelines(profile):
    """Generation passes a pipeline only the arguments its ``__call__`` takes: a wrong name would be dropped
    unseen (Guidance ignored while the PNG records it), so each one a profile names is checked here."""
    import inspect

    def takes(class_name: str) -> set[str]:
        return set(inspect.signature(getattr(diffusers, class_name).__call__).parameters)

    controls = profile.controlnets
    classes = {*profile.pipelines.values(), *profile.also_covers, *profile.edit_pipelines,
               *([controls.pipeline, controls.union_pipeline] if controls else [])} - {""}
    for class_name in classes:
        if profile.guidance_argument:
            assert profile.guidance_argument in takes(class_name), class_name
        if profile.negative_prompt:
            assert "negative_prompt" in takes(class_name), class_name
    for class_name, sizing in profile.edit_size_arguments.items():
        assert set(sizing(512, 512)) <= takes(class_name), class_name
    saver = inspect.signature(getattr(diffusers, profile.pipeline).save_lora_weights).parameters
    assert profile.lora_layers_argument in saver


def test_a_guidance_argument_the_pipeline_does_not_take_is_refused_at_load(studio, tiny_model, monkeypatch):
    from dataclasses import replace

    from masuka.image.generate import ImageRequest, generate_images

    monkeypatch.setitem(architectures.PROFILES, "sdxl", replace(architectures.PROFILES["sdxl"],
                                                                guidance_argument="cfg"))
    request = ImageRequest(prompt="a fox", model=str(tiny_model("sdxl")), steps=1, width=64, height=64)
    with pytest.raises(ValueError, match="SDXL profile gives Guidance as 'cfg', which StableDiffusionXLPipeline "
                                         "does not take"):
        generate_images(studio, request, allow_any_path=True)
    assert studio.store.count("generations") == 0


def test_pipeline_classes_are_matched_exactly():
    """Only the classes a profile names are its own: a sibling (FLUX.1 Redux, SD 1.5's StableDiffusionPipeline
    while no profile names it) whose name starts or ends like one of them is no profile's."""
    assert architecture_of("Flux2Pipeline") == "flux2" and architecture_of("Flux2KleinPipeline") == "flux2"
    assert architecture_of("FluxPipeline") == "flux"
    covered = {name for p in architectures.PROFILES.values() for name in p.pipelines.values()} | {
        name for p in architectures.PROFILES.values() for name in (*p.also_covers, *p.edit_pipelines)}
    others = [name for name in dir(diffusers) if name.endswith("Pipeline") and name not in covered]
    assert "FluxPriorReduxPipeline" in others
    assert [name for name in others if architecture_of(name)] == []


def test_the_registry_imports_without_torch_and_lists_every_profile_module_once():
    """Every module of the package imports without torch, and each image profile module is in the registry under
    its own id (a forgotten registry line, or an id two modules share, shows as a count that differs)."""
    code = ("import sys, importlib, pkgutil, masuka.models.architectures as a, masuka.models.catalog\n"
            "modules = [importlib.import_module(f'{a.__name__}.{m.name}') for m in pkgutil.iter_modules(a.__path__)]\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
            "print(len(a.PROFILES), sum(isinstance(getattr(m, 'PROFILE', None), a.Profile) for m in modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    registered, modules = map(int, result.stdout.split())
    assert registered == modules == len(architectures.PROFILES)


def test_two_profiles_with_one_id_are_refused():
    from dataclasses import replace

    from masuka.models.architectures.registry import by_id

    flux = architectures.PROFILES["flux"]
    with pytest.raises(ValueError, match="Two profiles have the id 'flux' \\(FLUX.1 and FLUX.1 copy\\)"):
        by_id((flux, architectures.PROFILES["sdxl"], replace(flux, label="FLUX.1 copy")))


@pytest.mark.parametrize("index", [b"{not json", b"", b"[]", b'{"_class_name": 5}', b"{}", b"\xff\xfe"],
                         ids=["broken", "empty", "a list", "a number", "no class", "binary"])
def test_a_folder_with_a_damaged_model_index_is_refused_in_one_line(tmp_path, index):
    (tmp_path / "model_index.json").write_bytes(index)
    with pytest.raises(InvalidInput, match="model_index.json of .* is not a diffusers pipeline index"):
        resolve_image_model(str(tmp_path))


@pytest.mark.parametrize("model", ["~nosuchuser-masuka/model", "~nosuchuser-masuka"])
def test_a_home_folder_of_nobody_is_refused_as_a_missing_folder(model):
    with pytest.raises(InvalidInput, match="does not exist: there is no user 'nosuchuser-masuka'"):
        resolve_image_model(model)


def pipeline_folder(folder, class_name: str, **components: str):
    """A folder whose model_index.json names ``class_name`` and ``components`` ({name: class}): all that
    recognising it reads."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": class_name, **{name: ["diffusers", cls] for name, cls in components.items()}}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def test_a_catalog_model_typed_by_its_repo_id_is_that_catalog_model():
    assert resolve_image_model("black-forest-labs/FLUX.1-dev") == resolve_image_model("flux-dev")
    assert resolve_image_model("Qwen/Qwen-Image").profile.guidance_argument == "true_cfg_scale"


@pytest.mark.parametrize("where, class_name, components, catalog_id", [
    ("flux2-dev", "Flux2Pipeline", {}, "flux2-dev"),
    ("fill", "FluxFillPipeline", {}, "flux-fill-dev"),
    ("kontext", "FluxKontextPipeline", {}, "flux-kontext-dev"),
    ("pg", "StableDiffusionXLPipeline", {"scheduler": "EDMDPMSolverMultistepScheduler"}, "playground-v2.5"),
    ("sdxl", "StableDiffusionXLPipeline", {"scheduler": "EulerDiscreteScheduler"}, "sdxl"),
    ("Z-Image", "ZImagePipeline", {}, "z-image"),  # saved by `hf download Tongyi-MAI/Z-Image --local-dir Z-Image`
    ("hub/models--Tongyi-MAI--Z-Image/snapshots/0123abcd", "ZImagePipeline", {}, "z-image"),
    ("my-turbo-finetune", "ZImagePipeline", {}, "z-image-turbo"),
])
def test_a_folder_takes_the_defaults_of_the_catalog_model_it_holds(tmp_path, where, class_name, components,
                                                                   catalog_id):
    """Siblings of one architecture differ in steps, guidance and memory: a folder gets those of the catalog model
    of its pipeline class, told apart by the repo it is a snapshot of, its components' classes, then its name."""
    spec = resolve_image_model(str(pipeline_folder(tmp_path / where, class_name, **components)))
    known = resolve_image_model(catalog_id)
    assert (spec.steps, spec.guidance, spec.max_sequence_length) == (
        known.steps, known.guidance, known.max_sequence_length)
    assert spec.memory_needs_gb == known.memory_needs_gb and spec.pipeline == class_name


@pytest.mark.parametrize("class_name, configs, catalog_id", [
    ("FluxPipeline", {"transformer": ("FluxTransformer2DModel", {"guidance_embeds": False}),
                      "scheduler": ("FlowMatchEulerDiscreteScheduler", {"shift": 1.0, "use_dynamic_shifting": False})},
     "flux-schnell"),
    ("FluxPipeline", {"transformer": ("FluxTransformer2DModel", {"guidance_embeds": True})}, "flux-dev"),
    ("Flux2KleinPipeline", {"transformer": ("Flux2Transformer2DModel", {"num_layers": 8, "num_single_layers": 24})},
     "flux2-klein-9b"),
    ("Flux2KleinPipeline", {"transformer": ("Flux2Transformer2DModel", {"num_layers": 5, "num_single_layers": 20})},
     "flux2-klein-4b"),
])
def test_siblings_of_one_class_are_told_apart_by_their_config(tmp_path, class_name, configs, catalog_id):
    """A folder named after neither sibling (FLUX.1 [schnell] saved as ``my-flux``) is the one its components'
    configs match: [schnell] would otherwise run 28 steps with [dev]'s guidance."""
    folder = pipeline_folder(tmp_path / "my-flux", class_name, **{name: cls for name, (cls, _) in configs.items()})
    for name, (_, config) in configs.items():
        (folder / name).mkdir()
        file = "scheduler_config.json" if name == "scheduler" else "config.json"
        (folder / name / file).write_text(json.dumps(config))
    spec, known = resolve_image_model(str(folder)), resolve_image_model(catalog_id)
    assert (spec.steps, spec.guidance, spec.memory_needs_gb) == (known.steps, known.guidance, known.memory_needs_gb)


def test_a_folder_of_a_known_architecture_has_memory_figures_for_the_auto_plan(tmp_path):
    from masuka.gpu import MEMORY_PLANS, choose_memory_plan

    qwen = resolve_image_model(str(pipeline_folder(tmp_path / "qwen", "QwenImagePipeline")))
    assert qwen.memory_needs_gb == resolve_image_model("qwen-image").memory_needs_gb
    assert choose_memory_plan(22, qwen.memory_needs_gb) in MEMORY_PLANS[1:]  # 58 GB in full: an offloading plan
    older = resolve_image_model(str(pipeline_folder(tmp_path / "edit", "QwenImageEditPipeline")))  # no catalog entry
    profile = architectures.get("qwen_image")
    assert older.memory_needs_gb == profile.memory_gb and older.steps == profile.defaults["steps"]


def test_a_repo_id_is_recognised_from_the_cache_without_the_network(monkeypatch, tmp_path, tiny_model):
    from huggingface_hub import snapshot_download

    from tests.models.fake_hub import FakeRepo, hub_online

    assert resolve_image_model("acme/tiny-sd3").architecture is None  # nothing cached: not known yet
    with hub_online(monkeypatch, {"acme/tiny-sd3": FakeRepo.of_folder(tiny_model("sd3"))}, tmp_path / "hf") as hub:
        snapshot_download("acme/tiny-sd3", cache_dir=tmp_path / "hf")
        fetched = dict(hub.downloads)
        spec = resolve_image_model("acme/tiny-sd3")
        assert hub.downloads == fetched
    known = resolve_image_model("sd35-large")
    assert (spec.id, spec.architecture, spec.pipeline, spec.size_multiple) == (
        "acme/tiny-sd3", "sd3", "StableDiffusion3Pipeline", 16)
    assert (spec.steps, spec.guidance, spec.memory_needs_gb) == (known.steps, known.guidance, known.memory_needs_gb)


def test_the_first_use_of_a_repo_not_downloaded_gets_its_architecture(monkeypatch, studio, tmp_path, tiny_model):
    """Before the download, the repo's model_index.json (read from the Hub, not kept in the cache) gives the
    profile: FLUX sizes are multiples of 16 and its unused negative prompt is not recorded."""
    from masuka.image.generate import ImageRequest, generate_images
    from masuka.image.metadata import parse_parameters, read_parameters
    from masuka.models.manage import model_status
    from tests.models.fake_hub import FakeRepo, hub_online

    def make(**kw):
        return generate_images(studio, ImageRequest("a fox", "acme/tiny-flux", steps=1, height=64, seed=1,
                                                    negative_prompt="blurry", **kw))

    with hub_online(monkeypatch, {"acme/tiny-flux": FakeRepo.of_folder(tiny_model("flux"))}, tmp_path / "hf"):
        with pytest.raises(InvalidInput, match="multiple of 16"):
            make(width=72)
        assert studio.store.count("jobs", "kind = 'download'") == 0  # refused before downloading
        assert "acme/tiny-flux" not in {row["repo"] for row in model_status()}  # the index read left no trace
        result = make(width=64)[0]
    row = studio.store.get("generations", result.id)
    assert row["params"]["architecture"] == "flux" and row["negative_prompt"] == ""
    assert parse_parameters(read_parameters(result.path)).negative_prompt == ""


def test_a_downloaded_repo_of_no_known_architecture_asks_the_hub_nothing_more(monkeypatch, tmp_path, tiny_model):
    """Its cached model_index.json already said it has no profile (it generates generically): asking the Hub for
    that file again before every generation would only repeat the answer."""
    import huggingface_hub
    from huggingface_hub import snapshot_download

    from masuka.models.catalog import ask_hub
    from tests.models.fake_hub import FakeRepo, hub_online

    def asked(*args, **kwargs):
        raise AssertionError(f"the Hub was asked for {args}")

    repo = FakeRepo.of_folder(tiny_model("sd3"))
    repo.files["model_index.json"] = repo.files["model_index.json"].replace(b"StableDiffusion3Pipeline",
                                                                            b"SomeOtherPipeline")
    with hub_online(monkeypatch, {"acme/other": repo}, tmp_path / "hf"):
        snapshot_download("acme/other", cache_dir=tmp_path / "hf")
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", asked)
        assert ask_hub(resolve_image_model("acme/other")).architecture is None


def test_a_profile_certain_of_a_refused_familys_lora_takes_it(tmp_path, monkeypatch):
    """Once a profile runs a family the foreign table refuses (as SD 1.5 would for SD 1.x LoRAs), the profiles
    answer first: its LoRAs are its own, and the families it does not cover are still refused by name. The
    families come from ``REFUSED``: the first UNet one is taken by a stand-in profile certain of its
    cross-attention width."""
    from dataclasses import replace

    from masuka.models.architectures import sdxl
    from masuka.models.architectures.base import lora_layers

    def cross_widths(family: str) -> set[int]:
        return lora_layers({key: {"shape": list(shape)} for key, shape in REFUSED[family].items()}).widths(
            sdxl.CROSS_ATTENTION)

    taken = next(family for family in REFUSED if cross_widths(family))
    other = next(family for family in REFUSED if family not in (taken, "LoHa/LoKr"))

    def matches_lora(layers):
        widths = layers.widths(sdxl.CROSS_ATTENTION)
        return architectures.Match.CERTAIN if widths == cross_widths(taken) else architectures.Match.NO

    stand_in = replace(sdxl.PROFILE, id="stand_in", label="Stand-in", matches_lora=matches_lora)
    monkeypatch.setitem(architectures.PROFILES, "stand_in", stand_in)
    assert inspect_lora(write(tmp_path / "taken.safetensors", REFUSED[taken])).architecture == "stand_in"
    with pytest.raises(InvalidInput, match=f"is for {re.escape(other)}"):
        inspect_lora(write(tmp_path / "other.safetensors", REFUSED[other]))


def test_every_text_encoder_of_a_published_architecture_has_an_offline_tokenizer(monkeypatch):
    """Random-weight real models get the tokenizer the table in shared.py names for each text-encoder class; a
    class it does not name is told before anything is built, not as a pipeline missing its tokenizer."""
    from masuka.models import synthetic
    from masuka.models.architectures.shared import TOKENIZERS

    for architecture, specs in synthetic.REAL_MODELS.values():
        assert all(cls in TOKENIZERS for name, (cls, _config) in specs.items() if name.startswith("text_encoder")), \
            architecture
    architecture, specs = synthetic.REAL_MODELS["sdxl"]
    monkeypatch.setitem(synthetic.REAL_MODELS, "sdxl-umt5", (architecture, {
        **specs, "text_encoder_2": ("UMT5EncoderModel", {})}))
    with pytest.raises(ValueError, match="no offline tokenizer for UMT5EncoderModel.*TOKENIZERS"):
        synthetic.real_pipeline("sdxl-umt5")
