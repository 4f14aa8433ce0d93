"""LoRA files: checked to be real safetensors for a known architecture before use, then applied by name.

Accepts diffusers/peft keys (``transformer.…lora_A.weight``, ``unet.…``) and kohya keys
(``lora_unet_…lora_down.weight``); the safetensors header may name the architecture outright
(``masuka.architecture``, or kohya's ``ss_base_model_version``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput, NotFound

MAX_HEADER = 100 * 2**20
ARCH_HINTS = {"flux": "flux", "sd3": "sd3", "sdxl": "sdxl", "sd_xl": "sdxl"}


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
        """Adapter name inside a pipeline: stable for the same file content, different for another file."""
        stat = self.path.stat()
        digest = hashlib.sha1(f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        return f"lora_{digest}"

    @property
    def short_hash(self) -> str:
        """A1111's LoRA hash (``Lora hashes`` in its infotext, Civitai's AutoV3): see :func:`lora_hash`."""
        return lora_hash(self.path)

    @property
    def trigger(self) -> str:
        return self.metadata.get("masuka.trigger", "")


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
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput(f"LoRA {path.name!r} is not a safetensors file (pickle-based .ckpt/.pt/.bin LoRAs are "
                           "refused for safety; convert it to .safetensors).") from None
    if path.stat().st_size < 8 + length + end:
        raise InvalidInput(f"LoRA {path.name!r} is truncated: the file is shorter than its header says.")
    return header


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
    keys = list(header)
    if not any("lora" in k for k in keys):
        raise InvalidInput(f"{path.name!r} holds no LoRA weights (no lora_A/lora_down tensors).")
    arch = _architecture(keys, metadata, header)
    if arch is None:
        raise InvalidInput(f"LoRA {path.name!r} is not for a known architecture (Flux, SD3 or SDXL).")
    ranks = [v["shape"][0] for k, v in header.items() if k.endswith(("lora_A.weight", "lora_down.weight"))]
    return LoraInfo(path=path.resolve(), architecture=arch, rank=max(ranks) if ranks else None, metadata=metadata)


def _architecture(keys: list[str], metadata: dict[str, str], header: dict) -> str | None:
    declared = (metadata.get("masuka.architecture") or metadata.get("ss_base_model_version") or "").lower()
    for hint, arch in ARCH_HINTS.items():
        if declared.startswith(hint):
            return arch
    if any(m in k for k in keys for m in ("single_transformer_blocks", "single_blocks", "double_blocks")):
        return "flux"
    if any("joint_blocks" in k or k.startswith("transformer.transformer_blocks") for k in keys):
        return "sd3"
    unet = [k for k in keys if k.startswith(("unet.", "lora_unet_", "lora_te2_", "text_encoder_2."))]
    if unet:
        cross = [v["shape"][1] for k, v in header.items() if "attn2" in k and "to_k" in k
                 and k.endswith(("lora_A.weight", "lora_down.weight"))]
        return None if cross and cross[0] == 768 else "sdxl"
    return None


def check_fits(info: LoraInfo, architecture: str | None, model: str) -> None:
    """Refuse a LoRA made for another architecture than the model's."""
    if architecture and info.architecture != architecture:
        raise InvalidInput(f"LoRA {info.name!r} was made for {info.architecture.upper()}, but {model!r} is "
                           f"{architecture.upper()}.")


def apply_loras(pipe: Any, chosen: list[tuple[LoraInfo, float]]) -> None:
    """Make exactly ``chosen`` active on ``pipe`` with their weights; files already loaded are not re-read.

    A pipeline on the fast path has one hot-swapped slot instead (see :mod:`masuka.image.fast`).
    """
    from masuka.image.fast import fast_state, hotswap_loras

    if fast_state(pipe) is not None:
        hotswap_loras(pipe, chosen)
        return
    wanted = {info.adapter: (info, weight) for info, weight in chosen}
    loaded = {name for names in pipe.get_list_adapters().values() for name in names}
    stale = sorted(loaded - set(wanted))
    if stale:
        pipe.delete_adapters(stale)
    for adapter, (info, _weight) in wanted.items():
        if adapter in loaded:
            continue
        pipe.load_lora_weights(str(info.path), adapter_name=adapter)
        if not any(adapter in names for names in pipe.get_list_adapters().values()):
            raise InvalidInput(f"LoRA {info.name!r} does not fit this model: none of its layers matched.")
    if wanted:
        pipe.set_adapters(list(wanted), [weight for _info, weight in wanted.values()])
