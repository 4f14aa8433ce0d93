"""What ControlNet images (:mod:`.control`) and style references (:mod:`.reference`) share: the checks of a list
of guiding pictures and the profile's support for them."""

from __future__ import annotations

from typing import Any

from PIL import Image

from masuka.errors import InvalidInput, ModelUnavailable
from masuka.image.tasks import open_picture
from masuka.models.architectures import get as get_profile
from masuka.models.hub import not_downloaded

MAX_GUIDES = 3
MAX_WEIGHT = 2.0


def check_guides(items: list, what: str, has_task: bool, fast: bool) -> None:
    """Guiding pictures go with plain text-to-image (not the compiled fast path), at most :data:`MAX_GUIDES` of a
    kind."""
    if fast:
        raise InvalidInput(f"Fast is for text-to-image without {what} images: turn it off to use them.")
    if has_task:
        raise InvalidInput(f"{what.capitalize()} images work with text-to-image: remove the starting image or the "
                           f"{what}s.")
    if len(items) > MAX_GUIDES:
        raise InvalidInput(f"At most {MAX_GUIDES} {what} images at a time (got {len(items)}).")


def guide_number(label: str, value: Any) -> float:
    """``value`` as a float, or :class:`InvalidInput` (a form or API may send anything)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{label} must be a number (got {str(value)[:40]!r}).") from None


def guide_weight(label: str, weight: Any) -> float:
    weight = guide_number(f"{label}: the weight", weight)
    if not 0 <= weight <= MAX_WEIGHT:
        raise InvalidInput(f"{label}: the weight must be between 0 and {MAX_WEIGHT:g} (got {weight:g}).")
    return weight


def guide_picture(path: Any, label: str) -> Image.Image:
    return open_picture(path, label.lower()).convert("RGB")


def guide_support(architecture: str | None, model: str, attribute: str, refusal: str) -> Any:
    """The profile's declaration ``attribute`` (``controlnets``, ``style_references``), or :class:`InvalidInput`
    naming the model and ending with ``refusal``."""
    profile = get_profile(architecture)
    support = getattr(profile, attribute, None)
    if support is None:
        raise InvalidInput(f"{model} ({profile.label if profile else 'this architecture'}) {refusal}")
    return support


def unavailable(what: str, repo: str, error: BaseException) -> ModelUnavailable:
    """One line naming the model that could not be loaded and why: not in the cache while the Hub cannot be
    reached (why, as :func:`~masuka.models.hub.not_downloaded` says: offline or the network), else the loader's
    first line (a missing repo, a gated repo without a token, files of another layout)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, LocalEntryNotFoundError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return not_downloaded(f"The {what} {repo}", "it is downloaded on first use once the Hub can be reached")
    reason = (str(error).strip().splitlines() or [""])[0]
    return ModelUnavailable(f"The {what} {repo} could not be loaded ({type(error).__name__}: {reason}).")
