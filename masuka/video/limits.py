"""What a local video pipeline folder can make, read from its own configs (as the catalog says it for the models
it lists): the size multiple (the VAE's spatial compression times the transformer's patch), the largest side
and the longest clip (the transformer's rotary table, ``rope_max_seq_len``), the frame multiple (the VAE's
temporal compression; LTX-2's follows from its patches and scalings), whether it makes sound, whether it
animates a first frame, so can chain clips, and whether it needs one (its video profile). Read from JSON only:
nothing is loaded."""

from __future__ import annotations

import json
from pathlib import Path

from masuka.models.architectures.video import for_video_pipeline

#: sizes offered in the Video tab for a local folder, those the model can make
SUGGESTED_SIZES = ("832x480", "480x832", "1280x720", "720x1280", "512x512", "256x256", "128x128", "64x64", "32x32")
MAX_SECONDS = 10
MAX_SIDE = 1920  # without a rotary table: the largest side MASUKA offers for local video
MAX_FPS = 60  # frame rate of a local video or an image sequence


def local_frames(seconds: int, fps: int, multiple: int) -> int:
    """Frames for ``seconds`` at ``fps``: video VAEs want ``multiple * k + 1`` frames."""
    return max(1, round(seconds * fps / multiple)) * multiple + 1


def folder_limits(folder: Path, fps: int) -> dict:
    """Catalog-style limits (``sizes`` empty: any size that fits; ``size_multiple``, ``max_side``, ``durations``,
    ``frame_multiple``, ``suggested_sizes``, ``audio``; ``image`` and ``text`` where a video profile covers its
    pipeline) for a pipeline folder; empty when its configs say nothing."""
    transformer = _config(folder / "transformer" / "config.json")
    vae = _config(folder / "vae" / "config.json")
    if not transformer or not vae:
        return {}
    patch = transformer.get("patch_size") or 1
    patch_t, patch_side = (int(patch[0]), int(patch[1])) if isinstance(patch, list) else (1, int(patch))
    spatial, temporal = _compression(vae)
    multiple = spatial * patch_side
    rope = transformer.get("rope_max_seq_len")
    max_side = int(rope) * multiple if rope else MAX_SIDE
    max_frames = (int(rope) * patch_t - 1) * temporal + 1 if rope else None
    durations = [s for s in range(1, MAX_SECONDS + 1)
                 if max_frames is None or local_frames(s, fps, temporal) <= max_frames]
    index = _config(folder / "model_index.json")
    profile = for_video_pipeline(index.get("_class_name", ""))
    image = {"image": profile.image_pipeline(index["_class_name"], index) is not None,
             "text": profile.text_pipeline(index["_class_name"], index) is not None} if profile else {}
    return {"audio": bool(profile and profile.audio), "size_multiple": multiple, "max_side": max_side,
            "frame_multiple": temporal, "durations": durations or [1], **image,
            "suggested_sizes": [size for size in SUGGESTED_SIZES if _fits(size, multiple, max_side)]}


def _compression(vae: dict) -> tuple[int, int]:
    """(spatial, temporal) compression of a video VAE: Wan's name them; LTX's follow from patches and scalings."""
    if "scale_factor_spatial" in vae or "spatio_temporal_scaling" not in vae:
        return int(vae.get("scale_factor_spatial") or 8), int(vae.get("scale_factor_temporal") or 4)
    scaling = 2 ** sum(bool(s) for s in vae["spatio_temporal_scaling"])
    return (int(vae.get("spatial_compression_ratio") or vae.get("patch_size", 1) * scaling),
            int(vae.get("temporal_compression_ratio") or vae.get("patch_size_t", 1) * scaling))


def _fits(size: str, multiple: int, max_side: int) -> bool:
    width, height = (int(side) for side in size.split("x"))
    return not width % multiple and not height % multiple and max(width, height) <= max_side


def _config(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
