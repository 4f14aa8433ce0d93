"""The list of profiles, and the questions everything else asks it."""

from __future__ import annotations

from masuka.errors import InvalidInput
from masuka.models.architectures import flux, flux2, qwen_image, sd3, sdxl, z_image
from masuka.models.architectures.base import LYCORIS_PART, LoraLayers, Match, Profile
from masuka.models.architectures.foreign import VERSIONS, foreign_family


def by_id(profiles: tuple[Profile, ...]) -> dict[str, Profile]:
    """Id -> profile, in order; :class:`ValueError` when two share an id (the later would replace the earlier)."""
    found: dict[str, Profile] = {}
    for profile in profiles:
        if profile.id in found:
            raise ValueError(f"Two profiles have the id {profile.id!r} ({found[profile.id].label} and "
                             f"{profile.label}): each architecture needs its own.")
        found[profile.id] = profile
    return found


#: every architecture MASUKA runs; on a tie between LoRA matches the earlier one wins
PROFILES: dict[str, Profile] = by_id((flux.PROFILE, flux2.PROFILE, sd3.PROFILE, sdxl.PROFILE, qwen_image.PROFILE,
                                      z_image.PROFILE))


class UnknownLora(ValueError):
    """A file whose layers fit no profile; the message ("is for SD 1.x") says what it is for when that is known."""


def get(architecture: str | None) -> Profile | None:
    return PROFILES.get(architecture or "")


def require(architecture: str | None) -> Profile:
    """The profile of ``architecture``, for code that only runs on a known one; :class:`InvalidInput` otherwise."""
    profile = PROFILES.get(architecture or "")
    if profile is None:
        raise InvalidInput(f"Unknown architecture {architecture!r}: MASUKA knows {labels()}.")
    return profile


def for_pipeline(pipeline_class: str) -> Profile | None:
    """The profile covering a diffusers pipeline class (exact names: ``Flux2Pipeline`` is not FLUX.1's)."""
    return next((p for p in PROFILES.values() if p.covers(pipeline_class)), None)


def labels() -> str:
    names = [p.label for p in PROFILES.values()]
    return ", ".join(names[:-1]) + " and " + names[-1]


def identify_lora(layers: LoraLayers, metadata: dict[str, str]) -> Profile:
    """The profile a LoRA file is for, from its layer names and shapes; metadata only settles ties.

    The profiles answer first: a profile certain of a file takes it, even when a refused family
    (:mod:`.foreign`) would claim it too, so a profile for a family refused so far (SD 1.5) gets its LoRAs.
    Raises :class:`UnknownLora` naming what the file is for (SD 1.x, a video model, a LyCORIS adapter…).
    """
    if is_lycoris(layers):
        raise UnknownLora("is a LoHa/LoKr (LyCORIS) adapter, which diffusers cannot apply")
    scores = {p.id: p.matches_lora(layers) for p in PROFILES.values()}
    best = max(scores.values())
    family = foreign_family(layers) if best is not Match.CERTAIN else None
    if family:
        raise UnknownLora(f"is for {family}")
    hinted = _declared(metadata)
    if best is Match.NO:
        version = (metadata.get("ss_base_model_version") or "").lower()
        family = next((name for prefix, name in VERSIONS.items() if version.startswith(prefix)), None)
        raise UnknownLora(f"is for {family}" if family else "is not for an architecture MASUKA knows")
    candidates = [pid for pid, score in scores.items() if score == best]
    return PROFILES[hinted if hinted in candidates else candidates[0]]


def is_lycoris(layers: LoraLayers) -> bool:
    return any(LYCORIS_PART.search(key) for key in layers.keys)


def _declared(metadata: dict[str, str]) -> str | None:
    """The profile a file's metadata names: MASUKA's own key, or kohya's ``ss_base_model_version``."""
    declared = metadata.get("masuka.architecture", "")
    if declared in PROFILES:
        return declared
    version = (metadata.get("ss_base_model_version") or "").lower()
    matches = [(len(prefix), p.id) for p in PROFILES.values() for prefix in p.kohya_versions
               if version.startswith(prefix)]
    return max(matches)[1] if matches else None
