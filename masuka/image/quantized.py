"""4-bit transformers for small cards: a GGUF file (``gguf_offload``) or bitsandbytes NF4 (``nf4_offload``).

Both are memory plans (rows of :data:`masuka.memory_plans.PLANS` with ``quantized`` set, which also name the
package each needs) that load the denoiser quantized and offload each model to the GPU only while it runs
(diffusers' docs give FLUX.1-dev about 6-7 GB peak that way on a 4-bit transformer). ``gguf_offload`` reads
the transformer from the ``.gguf`` file named by ``MASUKA_GGUF_FILE`` (a path, or a Hugging Face file URL such
as ``https://huggingface.co/city96/FLUX.1-dev-gguf/blob/main/flux1-dev-Q4_K_S.gguf``) through diffusers'
``GGUFQuantizationConfig``, the rest of the pipeline from the model's repo or folder; ``nf4_offload`` quantizes
the transformer and the big text encoder while loading (``PipelineQuantizationConfig`` with
``bitsandbytes_4bit``, NF4, CUDA only); under ``gguf_offload`` the big text encoder is 8-bit where bitsandbytes
is installed, as under the other small plans.
LoRAs load on both as diffusers allows (peft layers over the quantized linear layers).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka.config import gguf_file
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.memory_plans import find_plan
from masuka.models import architectures

if TYPE_CHECKING:
    from masuka.jobs import Watch
    from masuka.studio import Studio

#: a Hugging Face file URL: repo, revision, file
_HUB_FILE = re.compile(r"^https?://[^/]+/([^/]+/[^/]+)/(?:blob|resolve)/([^/]+)/(.+)$")


def check_quantized_plan(memory: str, architecture: str | None = None) -> None:
    """Refuse a plan whose package is missing, a quantized plan on a UNet model of ``architecture``, NF4 off CUDA, or
    GGUF with no file named, saying what to do (``auto`` passes)."""
    plan = find_plan(memory)
    if plan is None:
        return
    profile = architectures.get(architecture)
    if plan.quantized and profile and profile.denoiser != "transformer":  # first: no quantized plan fits a UNet
        raise InvalidInput(f"{memory} quantizes a model's transformer, and {profile.label} has a "
                           f"{profile.denoiser} instead: choose another memory plan.")
    if plan.quantized == "nf4":
        from masuka.gpu import usable_device

        if usable_device() != "cuda":
            raise InvalidInput(f"{memory} needs a CUDA GPU (bitsandbytes 4-bit); choose gguf_offload or another "
                               "plan.")
    if plan.package and importlib.util.find_spec(plan.package) is None:
        raise InvalidInput(f"The {memory} memory plan needs the {plan.package} package, which is not installed: "
                           f"{plan.install} (see requirements-extras.txt), then restart MASUKA.")
    if plan.quantized == "gguf":
        named = gguf_file()
        if not named:
            raise InvalidInput(f"The {memory} memory plan loads the transformer from a .gguf file: set "
                               "MASUKA_GGUF_FILE to its path or Hugging Face URL, then restart MASUKA.")
        remote = named.startswith(("https://", "http://"))
        if not named.lower().endswith(".gguf") or not (_hub_file(named) if remote else
                                                       Path(named).expanduser().is_file()):
            raise InvalidInput(f"MASUKA_GGUF_FILE ({named}) is not " + ("a .gguf file's URL" if remote else
                               "an existing .gguf file") + ": name the transformer's .gguf file, then restart MASUKA.")


def fetch_gguf(studio: Studio, owner: str, memory: str, watch: Watch | None = None) -> str:
    """``MASUKA_GGUF_FILE`` as a local path, for a GGUF plan ("" for another plan): a Hugging Face file URL is
    found in the Hub cache or downloaded there as a download job for ``owner`` (joined when one runs; progress to
    ``watch``, shown in the Models tab, stopped there), so callers run this before taking the GPU. The Hub
    unreachable with the file not cached, or the download failed or stopped, is :class:`ModelUnavailable`."""
    if _quantized(memory) != "gguf":
        return ""
    named = gguf_file()
    hub_file = _hub_file(named)
    if hub_file is None:
        return named
    from masuka.models.manage import fetch_file_for_use

    repo, revision, filename = hub_file
    return fetch_file_for_use(studio, owner, repo, filename, revision, watch, what=f"MASUKA_GGUF_FILE ({named})",
                              remedy="download it once the Hub can be reached, or name a local .gguf file")


def gguf_path(memory: str) -> str:
    """``MASUKA_GGUF_FILE`` as a local path for loading, without downloading (:func:`fetch_gguf` ran before the
    GPU slot); a URL whose file the cache does not hold is :class:`ModelUnavailable`."""
    named = gguf_file()
    hub_file = _hub_file(named)
    if hub_file is None:
        return named
    from masuka.models.hub import cached_file

    repo, revision, filename = hub_file
    if path := cached_file(repo, filename, revision):
        return path
    raise ModelUnavailable(f"MASUKA_GGUF_FILE ({named}) is no longer in the Hugging Face cache (deleted since it "
                           f"was fetched?): run the {memory} request again, which downloads it first.")


def gguf_repo(memory: str) -> str | None:
    """The Hugging Face repo ``MASUKA_GGUF_FILE`` comes from, under ``gguf_offload``: a URL's, or the one whose
    cache folder a path lies in (None for another plan or a file outside the cache), for work to hold it against
    deletion (:func:`~masuka.models.manage.holding_repos`)."""
    if _quantized(memory) != "gguf":
        return None
    named = gguf_file()
    if hub_file := _hub_file(named):
        return hub_file[0]
    from masuka.models.hub import hub_cache_dir

    path, cache = Path(named).expanduser().resolve(), hub_cache_dir().resolve()
    kind, _, repo = path.relative_to(cache).parts[0].partition("--") if path.is_relative_to(cache) else ("", "", "")
    return repo.replace("--", "/") if kind == "models" and repo else None


def _hub_file(named: str) -> tuple[str, str, str] | None:
    """(repo, revision, file) of a Hugging Face file URL (``…/<owner>/<name>/blob|resolve/<revision>/<file>``)."""
    found = _HUB_FILE.match(named)
    return (found[1], found[2], found[3]) if found else None


def replaced_components(memory: str) -> tuple[str, ...]:
    """The components a memory plan loads from elsewhere than the model's repo (their weights need no download)."""
    return ("transformer",) if _quantized(memory) == "gguf" else ()


def _quantized(memory: str) -> str | None:
    """How plan ``memory`` quantizes the transformer (``nf4``, ``gguf``), ``None`` for another plan or ``auto``."""
    plan = find_plan(memory)
    return plan.quantized if plan else None


def quantized_components(source: str, memory: str, dtype: Any, token: str | None = None,
                         architecture: str | None = None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load the denoiser of ``source`` quantized as ``memory`` says; NF4
    also quantizes the big text encoder of ``architecture``'s profile (T5-XXL: about 9.5 GB on the GPU while it
    encodes in bf16, more than the 4-bit transformer), as diffusers' own NF4 recipe does."""
    check_quantized_plan(memory)
    if _quantized(memory) == "gguf":
        return {"transformer": gguf_transformer(gguf_path(memory), source, dtype, token)}
    import torch
    from diffusers import PipelineQuantizationConfig

    profile = architectures.get(architecture)
    encoder = [profile.big_text_encoder] if profile and profile.big_text_encoder else []
    config = PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit", components_to_quantize=["transformer", *encoder],
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype,
                      "bnb_4bit_use_double_quant": dtype is not torch.float32})
    return {"quantization_config": config}


def gguf_transformer(path: str, source: str, dtype: Any, token: str | None = None) -> Any:
    """The transformer in a ``.gguf`` file, with the configuration of ``source``'s ``transformer`` folder."""
    import json

    import diffusers
    from diffusers import GGUFQuantizationConfig

    from masuka.models.catalog import explain_load_error, resolve_image_model

    none = InvalidInput(f"gguf_offload replaces a model's transformer, and {source} has none (a UNet model such "
                        "as SDXL cannot use it): choose another memory plan.")
    config = Path(source) / "transformer" / "config.json"
    if not Path(source).is_dir():
        from huggingface_hub import hf_hub_download

        try:
            config = Path(hf_hub_download(source, "transformer/config.json", token=token))
        except Exception as error:
            if type(error).__name__ == "EntryNotFoundError":
                raise none from error
            raise explain_load_error(resolve_image_model(source), error) from error
    try:
        class_name = json.loads(config.read_text(encoding="utf-8"))["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise none from error
    model_class = getattr(diffusers, class_name)
    try:
        return model_class.from_single_file(path, quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                            config=source, subfolder="transformer", torch_dtype=dtype, token=token)
    except (IndexError, KeyError) as error:  # diffusers' conversion looks up tensors this file does not have
        raise InvalidInput(f"MASUKA_GGUF_FILE ({path}) could not be loaded as the {class_name} of {source}: its "
                           f"tensors are not those of a {class_name} (another architecture, or an incomplete file). "
                           "Name a .gguf of this model's transformer.") from error
    except Exception as error:
        raise InvalidInput(f"MASUKA_GGUF_FILE ({path}) could not be loaded as the {class_name} of {source}: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}. Name a .gguf of "
                           "this model's transformer.") from error
