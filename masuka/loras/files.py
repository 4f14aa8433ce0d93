"""LoRA files: checked to be real safetensors for a known architecture before use (then applied by name in
:mod:`masuka.image.adapters`).

The architecture comes from the layer names and tensor shapes in the header (each profile's
``matches_lora``, see :mod:`masuka.models.architectures`), in diffusers/peft (``transformer.…lora_A.weight``),
kohya (``lora_unet_…lora_down.weight`` + ``.alpha``) and ai-toolkit/BFL (``diffusion_model.double_blocks…``)
naming; metadata (``masuka.architecture``, kohya's ``ss_base_model_version``) only settles ties. Files for
models MASUKA does not run (SD 1.x/2.x, video models, LoHa/LoKr) are refused saying what they are for.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput, NotFound
from masuka.models import architectures

MAX_HEADER = 100 * 2**20
#: the inputs of a FLUX.1 Canny/Depth [dev] x_embedder (BFL's ``img_in``): the latents and the control image's, 64
#: each (FLUX.1 [dev] takes 64, Fill 384); a LoRA of theirs widens a FLUX.1 model's layer, and MASUKA runs neither
FLUX_CONTROL_INPUTS = 128
#: the attention norms a Canny/Depth control LoRA replaces (diffusers' and BFL's names), which FLUX.2 LoRAs lack
CONTROL_NORM = re.compile(r"(norm_(added_)?[qk]\.weight|(query|key)_norm\.scale)$")


@dataclass(frozen=True)
class LoraInfo:
    """A LoRA file that passed inspection."""

    path: Path
    architecture: str
    rank: int | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def adapter(self) -> str:
        """Adapter name inside a pipeline: stable for the same file content, different for another file;
        :class:`InvalidInput` once the file is gone (deleted since the request was checked)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise deleted(self.name) from None
        digest = hashlib.sha1(f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        return f"lora_{digest}"

    @property
    def short_hash(self) -> str:
        """A1111's LoRA hash (``Lora hashes`` in its infotext, Civitai's AutoV3): see :func:`lora_hash`."""
        return lora_hash(self.path)

    @property
    def trigger(self) -> str:
        return self.metadata.get("masuka.trigger", "")


def deleted(name: str) -> InvalidInput:
    """The answer to a request whose LoRA ``name`` was deleted after the request was checked."""
    return InvalidInput(f"LoRA {name!r} was deleted: choose another LoRA and try again.")


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file; refuses anything else (pickles included) without loading it."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise InvalidInput(f"LoRA {path.name!r} is not a safetensors file (too short).")
            (length,) = struct.unpack("<Q", raw)
            if not 2 <= length <= MAX_HEADER:
                raise ValueError("bad header length")
            header = json.loads(handle.read(length))
    except (ValueError, RecursionError):  # not JSON text (or nested past what JSON parsers follow)
        raise InvalidInput(f"LoRA {path.name!r} is not a safetensors file (pickle-based .ckpt/.pt/.bin LoRAs are "
                           "refused for safety; convert it to .safetensors).") from None
    try:
        end = _data_end(header)
    except ValueError as error:
        raise InvalidInput(f"LoRA {path.name!r} is a damaged safetensors file ({error}).") from None
    if path.stat().st_size < 8 + length + end:
        raise InvalidInput(f"LoRA {path.name!r} is truncated: the file is shorter than its header says.")
    _check_layout(path)
    return header


def _data_end(header: Any) -> int:
    """Where the header says the tensor data ends; :class:`ValueError` unless it has the safetensors form (a
    ``__metadata__`` of text, a dtype, a list shape and two offsets per tensor)."""
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("__metadata__ is not a map of text")
    tensors = [v for k, v in header.items() if k != "__metadata__"]
    for tensor in tensors:
        if not (isinstance(tensor, dict) and isinstance(tensor.get("dtype"), str)
                and isinstance(tensor.get("shape"), list) and all(isinstance(n, int) for n in tensor["shape"])
                and isinstance(tensor.get("data_offsets"), list) and len(tensor["data_offsets"]) == 2
                and all(isinstance(n, int) for n in tensor["data_offsets"])):
            raise ValueError("a tensor entry lacks its dtype, shape or offsets")
    return max((tensor["data_offsets"][1] for tensor in tensors), default=0)


def _check_layout(path: Path) -> None:
    """Refuse a file safetensors itself would not load (offsets that do not match shape x dtype, gaps, overlaps),
    checked by opening it (the header only; no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np"):
            pass
    except SafetensorError as error:
        raise InvalidInput(f"LoRA {path.name!r} is a damaged safetensors file ({error}).") from None


def lora_hash(path: str | Path) -> str:
    """The first 12 hex digits of the SHA-256 of the tensor data after the safetensors header, as A1111 writes
    in ``Lora hashes`` (its ``addnet_hash_safetensors``); computed once per file version."""
    stat = Path(path).stat()
    return _tensor_hash(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _tensor_hash(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        handle.seek(8 + length)
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def inspect_lora(path: str | Path) -> LoraInfo:
    """Check a LoRA file and tell its architecture and rank; :class:`InvalidInput` if it is not usable."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"LoRA {path.name!r} is a folder, not a .safetensors file.")
    if not path.is_file():
        raise NotFound(f"LoRA file {path.name!r} does not exist.")
    if path.suffix.lower() != ".safetensors":
        raise InvalidInput(f"LoRA {path.name!r} must be a .safetensors file (pickle formats are refused).")
    header = read_header(path)
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    layers = architectures.lora_layers(header)
    if not layers.modules and not architectures.is_lycoris(layers):
        raise InvalidInput(f"{path.name!r} holds no LoRA weights (no lora_A/lora_down tensors).")
    try:
        arch = architectures.identify_lora(layers, metadata).id
    except architectures.UnknownLora as error:
        raise InvalidInput(f"LoRA {path.name!r} {error}; MASUKA's models are {architectures.labels()}.") \
            from None
    if arch == "flux" and FLUX_CONTROL_INPUTS in layers.widths(r"(x_embedder|img_in)$"):
        if (not any(CONTROL_NORM.search(key) for key in header)  # FLUX.2's x_embedder takes 128 inputs too
                and architectures.PROFILES["flux2"].matches_lora(layers) is not architectures.Match.NO):
            return LoraInfo(path=path.resolve(), architecture="flux2", rank=_rank(header), metadata=metadata)
        raise InvalidInput(f"LoRA {path.name!r} is a FLUX.1 Canny/Depth [dev] control LoRA (its x_embedder takes a "
                           "control image too), which MASUKA does not run: choose a LoRA made for FLUX.1.")
    return LoraInfo(path=path.resolve(), architecture=arch, rank=_rank(header), metadata=metadata)


def _rank(header: dict) -> int | None:
    """The largest rank of a LoRA file's layers (None when it has no lora_A/lora_down tensor, as LyCORIS files)."""
    ranks = [v["shape"][0] for k, v in header.items()
             if k.endswith(("lora_A.weight", "lora_down.weight")) and v["shape"]]
    return max(ranks) if ranks else None


def check_fits(info: LoraInfo, architecture: str | None, model: str) -> None:
    """Refuse a LoRA made for another architecture than the model's."""
    if architecture and info.architecture != architecture:
        raise InvalidInput(f"LoRA {info.name!r} was made for {_label(info.architecture)}, but {model!r} is "
                           f"{_label(architecture)}.")


def _label(architecture: str) -> str:
    profile = architectures.get(architecture)
    return profile.label if profile else architecture.upper()
