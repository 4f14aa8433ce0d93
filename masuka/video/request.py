"""A video request and its validated plan: model limits, clip chain, price; all checked before any request."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.image.limits import MAX_SEED, MAX_STEPS
from masuka.store import LOCAL_USER
from masuka.validation import plain_text, whole_number
from masuka.video.availability import refuse_local_video
from masuka.video.catalog import (
    LOCAL,
    REMOTE_PROVIDERS,
    durations_for,
    lifecycle,
    listed_models,
    model_entry,
    parse_size,
    price_per_second,
    provider_entry,
    size_for_aspect,
    size_for_shape,
)
from masuka.video.limits import MAX_FPS

MAX_TOTAL_SECONDS = 60
LOCAL_SIZE_MULTIPLE = 16
LOCAL_MAX_SIDE = 1920


@dataclass
class VideoRequest:
    """What the user asked for; ``None`` fields take the model's defaults."""

    provider: str
    model: str
    prompt: str
    seconds: int | None = None
    size: str | None = None
    aspect: str | None = None
    image: str | None = None
    negative_prompt: str = ""
    fallback: list[str] = field(default_factory=list)
    steps: int | None = None
    fps: int | None = None
    seed: int | None = None
    owner: str = LOCAL_USER
    last_frame: str | None = None  # the clip ends on this image (Veo 3.1)
    references: list[str] = field(default_factory=list)  # up to 3 images that keep a subject or style (Veo 3.1)
    source_video: str | None = None  # video-to-video: the clip to restyle or edit (Runway Aleph 2)
    audio: bool | None = None  # sound on/off where the model offers the choice (None: the model's default)


#: request fields holding input files (copied into the data dir with the job, see :func:`masuka.access.input_copy_name`)
INPUT_FILES = ("image", "last_frame", "source_video")
#: those of them that hold a video, not a picture
VIDEO_INPUTS = ("source_video",)
#: the form's sound choice -> the request's ``audio``
SOUND = {"default": None, "on": True, "off": False}


def sound_choice(audio: bool | None) -> str:
    """The form's sound choice for a request's ``audio``."""
    return next(name for name, value in SOUND.items() if value is audio)


@dataclass
class Target:
    """One provider and model that can make the whole video, with its price."""

    provider: str
    model: str
    segments: list[int]
    cost_usd: float
    extends: bool = False  # clips after the first extend the video so far (Veo 3.1) instead of starting anew


@dataclass
class VideoPlan:
    """A validated request: size and clip lengths fixed, the primary target first, then fallbacks."""

    request: VideoRequest
    size: str
    seconds: int
    targets: list[Target]

    @property
    def primary(self) -> Target:
        return self.targets[0]

    @property
    def chained(self) -> bool:
        return len(self.primary.segments) > 1

    def to_params(self) -> dict:
        """The job row's ``params``: everything needed to run or resume (never a key)."""
        return {"request": asdict(self.request), "size": self.size, "seconds": self.seconds,
                "targets": [asdict(t) for t in self.targets]}

    @classmethod
    def from_params(cls, params: dict) -> "VideoPlan":
        return cls(VideoRequest(**params["request"]), params["size"], params["seconds"],
                   [Target(**t) for t in params["targets"]])


def plan_video(request: VideoRequest) -> VideoPlan:
    """Check everything the providers would refuse, and price the whole chain; raises :class:`InvalidInput`."""
    provider = provider_entry(request.provider)
    if request.provider == LOCAL:
        refuse_local_video()
    local_only = [name for name in ("steps", "fps", "seed") if getattr(request, name) is not None]
    if local_only and request.provider != LOCAL:  # a remote provider picks these itself
        raise InvalidInput(f"{provider['name']} does not take {' or '.join(local_only)}: only the local model does "
                           f"(leave {'it' if len(local_only) == 1 else 'them'} out).")
    for name, value, largest in (("steps", request.steps, MAX_STEPS), ("the frame rate (fps)", request.fps, MAX_FPS)):
        if value is not None:
            whole_number(name, value, 1, largest)
    if request.seed == -1:  # -1 is a random seed, as for images
        request.seed = None
    if request.seed is not None:
        whole_number("the seed", request.seed, 0, MAX_SEED)
    entry = model_entry(request.provider, request.model, request.fps)
    _check_provider(request, request.provider)
    request.prompt, request.negative_prompt = (request.prompt or "").strip(), (request.negative_prompt or "").strip()
    if not request.prompt:
        raise InvalidInput("The prompt is empty: describe the video you want.")
    size = _size(request, entry)
    if request.source_video and entry.get("source_video") and _default(request.seconds):
        request.seconds = source_seconds(request.provider, request.source_video)  # the output is that long
    seconds = durations_for(entry, size)[0] if _default(request.seconds) else request.seconds
    if not isinstance(seconds, int) or not 1 <= seconds <= MAX_TOTAL_SECONDS:
        raise InvalidInput(f"Seconds must be a whole number from 1 to {MAX_TOTAL_SECONDS} (got {seconds!r}).")
    targets = [_fit(request, request.provider, request.model, entry, size, seconds)]
    for spec in request.fallback:  # the first of each provider and model: the same one twice is tried once
        target = _fallback(request, spec, size, seconds)
        if all((target.provider, target.model) != (t.provider, t.model) for t in targets):
            targets.append(target)
    return VideoPlan(request, size, seconds, targets)


def _default(value: object) -> bool:
    """Whether a field was left empty, so the model's default applies (0 is a value, and is checked)."""
    return value is None or value == ""


def _check_provider(request: VideoRequest, provider_id: str) -> None:
    """What a provider refuses whatever its model: a prompt too long, frames too large or unreadable."""
    provider = provider_entry(provider_id)
    plain_text("the prompt", request.prompt, provider["max_prompt_chars"])
    plain_text("the negative prompt", request.negative_prompt, provider["max_prompt_chars"])
    if request.image:
        _check_image(request.image, provider, fitted=_frame_at_size(provider_id))
    for image in [request.last_frame, *request.references]:
        if image:
            _check_image(image, provider, "reference or last-frame")


def _fit(request: VideoRequest, provider_id: str, model: str, entry: dict, size: str, seconds: int) -> Target:
    """The target of one model of a plan, the primary or a fallback, once it is checked to make the request: its
    size, a first frame where it makes videos from an image only and none where it takes none, a source video's
    length, the clips that make ``seconds`` and the other inputs (:func:`_check_inputs`)."""
    if entry["sizes"] and size not in entry["sizes"]:
        raise InvalidInput(f"{entry['name']} makes {_list(entry['sizes'])} videos (got {size}).")
    if not request.image and not entry.get("text", True):
        raise InvalidInput(f"{entry['name']} makes videos from an image only: give a first frame.")
    if request.image and not entry.get("image"):
        raise InvalidInput(f"{entry['name']} takes no first frame: remove it, or choose a model that takes one.")
    if request.source_video and entry.get("source_video"):
        source = source_seconds(provider_id, request.source_video)
        if seconds != source:
            raise InvalidInput(f"{entry['name']} makes a video as long as its source video, {source} s (got "
                               f"{seconds}): give that length or none.")
    target = _target(provider_id, model, entry, size, seconds, request.audio)
    _check_inputs(request, entry, target)
    return target


def fallback_parts(spec: str) -> tuple[str, str]:
    """A fallback ``provider[:model]`` as (provider, model): the provider in lower case, the model "" when none is
    named; spaces around either are ignored."""
    name, _, model = (part.strip() for part in spec.partition(":"))
    return name.lower(), model


def _fallback(request: VideoRequest, spec: str, size: str, seconds: int) -> Target:
    """The target of a fallback ``provider[:model]`` (the CLI's ``--fallback``, the form's Fallback choices): the
    model named, checked as the primary is; without one, the provider's first model in the catalog that makes the
    request, retired ones left out. Spaces around its parts are ignored, and the provider's case."""
    (name, model), spec = fallback_parts(spec), spec.strip()
    if name == LOCAL:
        raise InvalidInput(f"Fallback {spec!r}: the local model cannot be a fallback: fallbacks are remote "
                           "providers.")
    if name not in REMOTE_PROVIDERS:
        raise InvalidInput(f"Fallback {spec!r}: unknown video provider {name!r}: choose one of "
                           f"{', '.join(REMOTE_PROVIDERS)} (fallbacks are remote providers).")
    if name == request.provider:
        raise InvalidInput(f"Fallback {spec!r}: choose another remote provider than {request.provider}.")
    try:
        _check_provider(request, name)
        if model:
            return _fit(request, name, model, model_entry(name, model), size, seconds)
    except InvalidInput as error:
        raise InvalidInput(f"Fallback {spec}: {error}") from None
    active = listed_models(name)
    if not active:
        raise InvalidInput(f"Fallback {name}: all its models are retired; name one as {name}:MODEL to use it.")
    reasons = []
    for key in active:
        try:
            return _fit(request, name, key, active[key], size, seconds)
        except InvalidInput as error:
            reasons.append(f"{key}: {error}")
    raise InvalidInput(f"Fallback {name}: none of its active models can make this video. {' '.join(reasons)}")


def negative_prompt_use(provider: str, entry: dict) -> bool | str:
    """Whether a model's provider sends a negative prompt: ``True``, ``"text"`` (only when the clip is made from
    text alone: its image-to-video route takes none) or ``False``. The catalog says so per model
    (``negative_prompt``), or for every model of a provider (local: any pipeline, in the catalog or not)."""
    return entry.get("negative_prompt", provider_entry(provider).get("negative_prompt", False))


def _check_inputs(request: VideoRequest, entry: dict, target: Target) -> None:
    """Last frame, references, source video, audio and a negative prompt only where the model takes them, and
    the first four never chained."""
    name = entry["name"]
    extras = [label for label, given in (("a last frame", request.last_frame), ("reference images",
              request.references), ("a source video", request.source_video)) if given]
    if extras and len(target.segments) > 1:
        verb = "applies" if len(extras) == 1 and extras[0].startswith("a ") else "apply"  # "a last frame" is one
        raise InvalidInput(f"{' and '.join(extras).capitalize()} {verb} to one clip: choose a length {name} makes "
                           "in one clip.")
    if request.last_frame and not entry.get("last_frame"):
        raise InvalidInput(f"{name} takes no last frame.")
    if request.last_frame and not request.image:
        raise InvalidInput("A last frame needs a first frame too.")
    if len(request.references) > entry.get("references", 0):
        raise InvalidInput(f"{name} takes {entry.get('references', 0) or 'no'} reference images "
                           f"(got {len(request.references)}).")
    if request.references and request.image:
        raise InvalidInput("Reference images and a first frame cannot be combined: give one or the other.")
    if request.source_video and not entry.get("source_video"):
        raise InvalidInput(f"{name} does not take a source video.")
    if entry.get("source_video") == "required" and not request.source_video:
        raise InvalidInput(f"{name} restyles or edits a video: give a source video.")
    if request.audio is not None and not entry.get("audio"):
        raise InvalidInput(f"{name} offers no sound on/off choice.")
    negative = negative_prompt_use(target.provider, entry) if request.negative_prompt else True
    if not negative:
        raise InvalidInput(f"{name} takes no negative prompt: leave it empty.")
    from_frames = request.image or (len(target.segments) > 1 and not target.extends)
    if negative == "text" and from_frames:
        raise InvalidInput(f"{name} takes a negative prompt only for a clip made from text alone, not from a frame "
                           f"({'a first frame' if request.image else 'a chain of clips'}): leave it empty.")


def source_seconds(provider_id: str, video: str) -> int:
    """Whole seconds of a source video, after checking it is a playable MP4 small enough to send to
    ``provider_id``."""
    provider = provider_entry(provider_id)
    path = Path(video)
    if not path.is_file():
        raise InvalidInput(f"The source video {path.name!r} was not found.")
    stat = path.stat()
    limit = provider.get("max_video_bytes", 0)
    if stat.st_size > limit:
        raise InvalidInput(f"The source video is too large for {provider['name']} ({stat.st_size / 1e6:.1f} "
                           f"MB; at most {limit / 1e6:.1f} MB).")
    return _probe_seconds(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _probe_seconds(path: str, mtime_ns: int, size: int) -> int:
    """Whole seconds of the playable MP4 at ``path``, probed with ffmpeg once per file as it is (``mtime_ns``,
    ``size``): one change of the Video form asks several times."""
    import imageio_ffmpeg

    from masuka.video.media import BrokenVideo, NotMP4, check_mp4

    try:
        check_mp4(Path(path))
    except NotMP4 as error:
        raise InvalidInput(f"The source video {Path(path).name!r} is not an MP4 video: it looks like {error.looks}. "
                           "Choose an MP4 clip.") from None
    except BrokenVideo as error:
        raise InvalidInput(f"The source video {Path(path).name!r} is not a playable MP4: {error}") from None
    return max(1, math.ceil(imageio_ffmpeg.count_frames_and_secs(path)[1] - 0.01))


def lifecycle_warnings(plan: VideoPlan) -> list[str]:
    """A line for each target whose model is deprecated ("ends YYYY-MM-DD") or retired."""
    warnings = []
    for target in plan.targets:
        entry = model_entry(target.provider, target.model)
        if warning := lifecycle(entry).warning(f"{entry['name']} ({target.provider})"):
            warnings.append(warning)
    return warnings


def made_as(target: Target, where: str = "") -> str:
    """How long a target's video is (then ``where``, e.g. " at 1280x720") and, when it takes several clips, how
    they make it: "for 15 s (2 clips chained: 10 s + 5 s)"."""
    seconds = f"for {sum(target.segments)} s{where}"
    if len(target.segments) == 1:
        return seconds
    extensions = len(target.segments) - 1
    how = (f"one {target.segments[0]} s clip extended {'once' if extensions == 1 else f'{extensions} times'}"
           if target.extends else f"{len(target.segments)} clips chained")
    return f"{seconds} ({how}: {' + '.join(f'{s} s' for s in target.segments)})"


def _target(provider: str, model: str, entry: dict, size: str, seconds: int, audio: bool | None = None) -> Target:
    segments = clip_segments(entry, size, seconds)
    price = price_per_second(entry, size, audio)
    return Target(provider, model, segments, round(price * sum(segments), 4),
                  extends=len(segments) > 1 and bool(extension_segments(entry, size, seconds)))


def clip_segments(entry: dict, size: str | None, seconds: int) -> list[int]:
    """The clips a model makes ``seconds`` from at ``size``: one, extensions of the first or a chain; raises
    :class:`InvalidInput` when it cannot within :data:`MAX_TOTAL_SECONDS`."""
    return extension_segments(entry, size, seconds) or chain_segments(entry, size, seconds)


def extension_segments(entry: dict, size: str | None, seconds: int) -> list[int]:
    """For a model that extends its own clips (``extend_seconds`` at ``extend_sizes``): the longest first clip,
    then extensions until ``seconds`` is reached; empty when one clip does or the model cannot extend at
    ``size``. Extension continues the scene itself, so it keeps motion and sound across the joins that
    last-frame chaining breaks."""
    allowed = sorted(durations_for(entry, size))
    step = entry.get("extend_seconds")
    if not step or seconds <= allowed[-1] or size not in entry.get("extend_sizes", []):
        return []
    segments = [allowed[-1]]
    while sum(segments) < seconds:
        segments.append(step)
    if sum(segments) > MAX_TOTAL_SECONDS:
        raise InvalidInput(f"{seconds} s cannot be made from a {allowed[-1]} s clip and {step} s extensions "
                           f"within {MAX_TOTAL_SECONDS} s.")
    return segments


def chain_segments(entry: dict, size: str | None, seconds: int) -> list[int]:
    """Clip lengths that make ``seconds``: one clip when the model allows it, else a chain of the longest clips
    and a last one just long enough (the total may round up to the next allowed length)."""
    allowed = sorted(durations_for(entry, size))
    if seconds in allowed:
        return [seconds]
    if seconds < allowed[-1]:
        raise InvalidInput(f"{entry['name']} makes clips of {_list(allowed)} seconds at {size} "
                           f"(got {seconds}).")
    if not entry.get("image"):
        raise InvalidInput(f"{entry['name']} makes clips up to {allowed[-1]} s and cannot continue from a frame, "
                           f"so it cannot chain a {seconds} s video.")
    segments = []
    remaining = seconds
    while remaining > allowed[-1]:
        segments.append(allowed[-1])
        remaining -= allowed[-1]
    segments.append(next(d for d in allowed if d >= remaining))
    if sum(segments) > MAX_TOTAL_SECONDS:
        raise InvalidInput(f"{seconds} s cannot be made from {_list(allowed)} s clips within {MAX_TOTAL_SECONDS} s.")
    return segments


def _size(request: VideoRequest, entry: dict) -> str:
    """The size asked for (or the model's of the aspect asked for); left out, the model's size whose shape is
    closest to the first frame's, else its first."""
    from masuka.image.tasks import upright_size

    if request.size and request.aspect:
        raise InvalidInput("Give either a size (WxH) or an aspect ratio, not both.")
    if request.aspect:
        return size_for_aspect(entry, request.aspect)
    if not entry["sizes"]:  # a local model outside the catalog: any size its config allows
        size = request.size or (entry.get("suggested_sizes") or ["832x480"])[0]
        width, height = parse_size(size)
        multiple = entry.get("size_multiple", LOCAL_SIZE_MULTIPLE)
        largest = min(entry.get("max_side", LOCAL_MAX_SIDE), LOCAL_MAX_SIDE)
        if width % multiple or height % multiple or max(width, height) > largest:
            raise InvalidInput(f"{entry['name']} makes sizes that are multiples of {multiple} up to {largest} "
                               f"(got {size}).")
        return f"{width}x{height}"
    shape = upright_size(request.image) if request.image and not request.size else None
    size = request.size or (size_for_shape(entry["sizes"], *shape) if shape else entry["sizes"][0])
    parse_size(size)
    return size  # one the model makes: checked with the rest (:func:`_fit`)


def _check_image(image: str, provider: dict, role: str = "first-frame", fitted: bool = False) -> None:
    """An image the provider takes: there, readable whole within the pixel cap, and within its byte limit as it is
    sent (its :func:`~masuka.image.copies.plain_copy`; ``fitted``: sent at the video's size, a 1792x1024 frame at
    most, far within any limit)."""
    from masuka.image.copies import plain_copy

    path = Path(image)
    if not path.is_file():
        raise InvalidInput(f"The {role} image {path.name!r} was not found.")
    suffix, data = plain_copy(path, f"{role} image")
    limit = provider["max_image_bytes"]
    if len(data) > limit and not fitted:
        raise InvalidInput(f"The {role} image is too large for {provider['name']} ({len(data) / 1e6:.1f} MB as "
                           f"{suffix[1:].upper()}; at most {limit / 1e6:.1f} MB).")


def _frame_at_size(provider_id: str) -> bool:
    """Whether the provider's API takes a first frame at the video's size only (so it is sent fitted to it)."""
    from masuka.video.providers import provider_class

    return provider_id != LOCAL and provider_class(provider_id).frame_at_size


def _list(values: list) -> str:
    return ", ".join(str(v) for v in values)
