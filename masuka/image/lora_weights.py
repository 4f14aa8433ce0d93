"""Reading a LoRA file into a pipeline as a named adapter, with a file made for another size of the model refused
in words (diffusers' own error lists every mismatched tensor)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from masuka.errors import InvalidInput
from masuka.model_cache import building
from masuka.models import architectures

if TYPE_CHECKING:
    from masuka.loras.files import LoraInfo

#: the logger diffusers repeats a failed load's whole error to (every mismatched tensor, one line each)
_LOAD_LOGGER = "diffusers.loaders.peft"
#: how torch (the denoiser) and transformers (a text encoder) say a tensor has another shape than the model's
_MISMATCH = ("size mismatch", "ignore_mismatched_sizes")


def load_lora(pipe: Any, info: LoraInfo, adapter: str | None = None, **options: Any) -> None:
    """Load ``info`` as the adapter ``adapter`` (its own name by default; ``options`` go to
    ``load_lora_weights``). A file made for another size of the same architecture (SD3.5 Large on
    Medium, FLUX.2 [klein] 4B on 9B: the names fit, the widths do not) is refused, and the parts of it already
    attached (the denoiser's, when a text encoder's do not fit) are removed, so the pipeline is as it was.

    FLUX.1's loader would widen the model's own layers for a file with wider layers (a Canny/Depth control
    LoRA, one for another size): :func:`refuse_wider` refuses such a file before the model is touched, and any
    widening that still happens is undone (:func:`_undo_widening`)."""
    name = adapter or info.adapter
    own = _own_layers(pipe)
    try:
        refuse_wider(pipe, info)
        with building(), _errors_unlogged():
            pipe.load_lora_weights(str(info.path), adapter_name=name, **options)
    except (RuntimeError, NotImplementedError) as error:
        widened = _undo_widening(pipe, own)
        if not (widened or isinstance(error, NotImplementedError) or any(w in str(error) for w in _MISMATCH)):
            raise
        _delete_adapter(pipe, name)
        raise InvalidInput(_other_size(info)) from None
    except BaseException:
        _undo_widening(pipe, own)
        raise
    if _undo_widening(pipe, own):
        raise InvalidInput(_other_size(info))
    _in_compute_dtype(pipe, name)


def refuse_wider(pipe: Any, info: LoraInfo) -> None:
    """Refuse ``info`` before it is loaded into a pipeline whose loader widens the model's layers to fit a LoRA
    (diffusers' FLUX.1 loader: the widened layers stay after the LoRA is removed, breaking every later image), if
    any of its layers takes more inputs or gives more outputs than the model's layer, or it replaces the model's
    norms (a control LoRA). Other pipelines refuse such a file themselves (``size mismatch``)."""
    if not hasattr(pipe, "_maybe_expand_transformer_param_shape_or_error_"):
        return
    import torch

    denoiser = getattr(pipe, "transformer", None)
    if denoiser is None:
        return
    stat = info.path.stat()
    checked = (str(info.path), stat.st_mtime_ns, stat.st_size, type(denoiser).__name__,
               repr(sorted(denoiser.config.items())))
    if checked in _FITTING:  # a file read and converted once per model: the fast path swaps the same few often
        return
    with building():
        state = pipe.lora_state_dict(str(info.path))
    prefix = f"{getattr(pipe, 'transformer_name', 'transformer')}."
    norms = tuple(getattr(pipe, "_control_lora_supported_norm_keys", ()))
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        if "lora" not in key and any(norm in key for norm in norms):
            raise InvalidInput(_other_size(info, "it replaces the model's norm layers, as a control LoRA does"))
        if not key.endswith(".lora_A.weight"):
            continue
        layer = key[len(prefix):-len(".lora_A.weight")]
        try:
            module = denoiser.get_submodule(layer)
        except AttributeError:
            continue  # a layer the model does not have: diffusers ignores it
        module = getattr(module, "base_layer", module)
        if not isinstance(module, torch.nn.Linear):
            continue
        outputs, inputs = _weight_shape(module.weight)
        up = state.get(f"{prefix}{layer}.lora_B.weight")
        wide_out = up is not None and up.ndim == 2 and up.shape[0] > outputs
        if tensor.ndim == 2 and tensor.shape[1] > inputs or wide_out:
            what = (f"its {layer} layer gives {up.shape[0]} outputs where the model's gives {outputs}" if wide_out
                    else f"its {layer} layer takes {tensor.shape[1]} inputs where the model's takes {inputs}")
            raise InvalidInput(_other_size(info, what))
    _FITTING[checked] = None
    while len(_FITTING) > 256:
        del _FITTING[next(iter(_FITTING))]


#: the LoRA files :func:`refuse_wider` found to fit (path, modification time, size, the denoiser's class and
#: config: the widths), oldest first
_FITTING: dict[tuple, None] = {}


def _weight_shape(weight: Any) -> tuple[int, int]:
    """(outputs, inputs) of a linear layer's weight, also when quantized (bitsandbytes and GGUF store it
    flattened or packed)."""
    if type(weight).__name__ == "Params4bit":
        shape = weight.quant_state.shape
    elif type(weight).__name__ == "GGUFParameter":
        shape = weight.quant_shape
    else:
        shape = weight.shape
    return int(shape[0]), int(shape[1])


def _own_layers(pipe: Any) -> dict[str, Any]:
    """The denoiser's linear layers by name, where its loader may widen them (references, nothing copied)."""
    import torch

    denoiser = getattr(pipe, "transformer", None)
    if denoiser is None or not hasattr(pipe, "_maybe_expand_transformer_param_shape_or_error_"):
        return {}
    return {name: getattr(module, "base_layer", module) for name, module in denoiser.named_modules()
            if isinstance(getattr(module, "base_layer", module), torch.nn.Linear) and not name.endswith("base_layer")
            and ".lora_" not in name}


def _undo_widening(pipe: Any, own: dict[str, Any]) -> bool:
    """Put back the model's own layers (``own``, from before the load) where a LoRA load widened them (diffusers'
    FLUX.1 loader notes it in ``_overwritten_params``; its own reset restores only top-level layers); whether
    there were any. Every LoRA loaded into the pipeline goes with them (the next request loads its LoRAs again)."""
    denoiser = getattr(pipe, "transformer", None)
    if denoiser is None or not getattr(denoiser, "_overwritten_params", None):
        return False
    pipe.unload_lora_weights(reset_to_overwritten_params=True)
    for name, layer in own.items():
        if denoiser.get_submodule(name) is not layer:
            parent, _, child = name.rpartition(".")
            setattr(denoiser.get_submodule(parent) if parent else denoiser, child, layer)
    if "x_embedder" in own and getattr(denoiser.config, "in_channels", None) != own["x_embedder"].in_features:
        denoiser.config.in_channels = own["x_embedder"].in_features  # as diffusers' own reset does
    denoiser._overwritten_params = None
    return True


def _delete_adapter(pipe: Any, adapter: str) -> None:
    """Remove the parts of ``adapter`` a failed load attached (none at all, when it failed before any)."""
    if any(adapter in names for names in pipe.get_list_adapters().values()):
        pipe.delete_adapters(adapter)


def _other_size(info: LoraInfo, why: str = "") -> str:
    """The refusal of ``info`` for layers of other widths than the model's (``why``: which, where it is known)."""
    profile = architectures.get(info.architecture)
    label = profile.label if profile else info.architecture
    if not why:
        return (f"LoRA {info.name!r} was made for another size of {label} than this model (its layers have other "
                "widths): choose a LoRA made for this model.")
    return (f"LoRA {info.name!r} was made for another size of {label} than this model, or for a control variant of it "
            f"such as FLUX.1 Canny/Depth [dev] ({why}): choose a LoRA made for this model.")


def _in_compute_dtype(pipe: Any, adapter: str) -> None:
    """Move ``adapter``'s layers out of fp8 into the plan's compute dtype: peft gives a new adapter its layer's
    dtype, which ``fp8_offload`` stores in fp8 and upcasts only for the layer's own forward."""
    import torch

    from masuka.image.memory import denoisers_of

    for denoiser in denoisers_of(pipe):
        for module in denoiser.modules():
            for name in getattr(module, "adapter_layer_names", ()):
                layers = getattr(module, name)
                if isinstance(layers, torch.nn.ModuleDict) and adapter in layers and \
                        any(param.dtype.itemsize == 1 for param in layers[adapter].parameters()):
                    layers[adapter].to(pipe.masuka_plan.dtype)


@contextmanager
def _errors_unlogged() -> Iterator[None]:
    """Drop diffusers' error log of a failed load while it runs: the exception carries the same words."""
    logger = logging.getLogger(_LOAD_LOGGER)
    logger.addFilter(_below_errors)
    try:
        yield
    finally:
        logger.removeFilter(_below_errors)


def _below_errors(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR
