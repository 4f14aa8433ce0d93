"""The ``local`` provider: a diffusers text/image-to-video pipeline (Wan 2.1/2.2, LTX-2, …) on this GPU.

Loaded once through the shared ``from_pretrained`` loader (safetensors only) into the studio's model cache,
placed by a memory plan chosen from the catalog's figures (offload, VAE tiling, fp8 storage), run inside
``studio.gpu.hold``, with per-step progress and the job's stop flag checked at each step, exported to MP4 with
``diffusers.utils.export_to_video``. The pipeline's video profile (:mod:`masuka.models.architectures.video`)
says which pipeline animates a first frame with the same weights, what else its call takes, and whether it
makes a soundtrack (muxed into the MP4 unless the request turns sound off).
"""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput
from masuka.gpu import device_plan
from masuka.image.copies import fitted_frame
from masuka.image.limits import MAX_SEED
from masuka.image.memory import sharing_weights
from masuka.image.pipelines import load_pipeline
from masuka.jobs import JobContext
from masuka.models.architectures.video import for_video_pipeline
from masuka.models.architectures.video_base import VideoProfile
from masuka.models.catalog import ModelSpec
from masuka.models.manage import using_models
from masuka.services import HUGGINGFACE
from masuka.studio import Studio
from masuka.video.availability import refuse_local_video
from masuka.video.catalog import model_entry, parse_size
from masuka.video.limits import local_frames
from masuka.video.media import add_audio, check_mp4
from masuka.video.request import VideoPlan


def run_local(studio: Studio, ctx: JobContext, plan: VideoPlan, image: Path | None, dest: Path, clip: int,
              on_phase: Callable[[str], None]) -> Path:
    """Make clip number ``clip`` of ``plan`` with the local pipeline, from ``image`` as first frame when given
    (cropped at the centre to the video's shape, as providers do), honouring Stop through the job's context (while
    it waits for the GPU too). ``on_phase`` is told the wait for the GPU (``waiting for the GPU (…)``), then
    ``running`` once the GPU is held. Progress counts the denoising steps of the whole chain, so it only goes
    forward. A plan of several clips needs a pipeline that animates a first frame (each next clip starts from the
    last frame): refused before the first clip is made otherwise."""
    import torch
    from diffusers.utils import export_to_video

    refuse_local_video()  # a job recorded before the app ran on ZeroGPU, resumed there
    request = plan.request
    entry = model_entry("local", request.model)
    source = entry.get("repo", request.model)
    source = str(Path(source).expanduser().resolve()) if Path(source).expanduser().is_dir() else source
    width, height = parse_size(plan.size)
    fps = request.fps or entry["fps"]
    steps = request.steps or entry["steps"]
    frames = local_frames(plan.primary.segments[clip], fps, entry.get("frame_multiple", 4))
    seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
    done, total = clip * steps, len(plan.primary.segments) * steps  # steps of the clips before, of them all
    ctx.progress(done, total)
    # fetched outside the GPU slot (the Models tab shows its progress), held until the pipeline is done
    with using_models(studio, request.owner, source), \
            studio.hold_gpu(f"video generation for {request.owner}", request.owner, on_wait=on_phase,
                            cancelled=ctx.stop_requested):
        on_phase("running")
        spec = ModelSpec(id=request.model, source=source, architecture=None, vram_gb=entry.get("vram_gb"),
                         memory_gb=entry.get("memory_gb", {}))
        device = device_plan(spec.vram_gb, memory_needs_gb=spec.memory_needs_gb)
        pipe = studio.models.get(("video", source, device),
                                 lambda: load_pipeline(spec, device, studio.keys.optional(HUGGINGFACE)))
        ctx.check_stop()  # a Stop while the model loaded: before the first step
        profile = for_video_pipeline(type(pipe).__name__)
        if image is not None or len(plan.primary.segments) > 1:
            animator = _image_pipeline(pipe, profile, request.model, plan.primary.segments)
            pipe = animator if image is not None else pipe
        if image is None:
            pipe = _text_pipeline(pipe, profile)
        parameters = inspect.signature(pipe.__call__).parameters
        if image is None and "image" in parameters and parameters["image"].default is inspect.Parameter.empty:
            raise InvalidInput(f"{request.model} makes videos from an image only: give a first frame.")
        accepted = set(parameters)

        def step_end(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
            ctx.progress(done + step + 1, total)
            ctx.check_stop()
            return kwargs

        kwargs: dict[str, Any] = dict(prompt=request.prompt, negative_prompt=request.negative_prompt or None,
                                      width=width, height=height, num_frames=frames, num_inference_steps=steps,
                                      guidance_scale=entry["guidance"], callback_on_step_end=step_end,
                                      generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
        if profile:
            kwargs.update(profile.call_arguments(pipe, fps))
        if image is not None:
            kwargs["image"] = fitted_frame(image, (width, height))
        with torch.inference_mode():
            output = pipe(**{k: v for k, v in kwargs.items() if k in accepted})
    partial = dest.with_name(dest.name + ".part.mp4")
    dest.parent.mkdir(parents=True, exist_ok=True)
    export_to_video(list(output.frames[0]), str(partial), fps=fps)
    sound = getattr(output, "audio", None) if request.audio is not False else None
    if sound is not None:
        silent, partial = partial, dest.with_name(dest.name + ".sound.mp4")
        rate = pipe.vocoder.config.output_sampling_rate
        add_audio(silent, torch.as_tensor(sound[0]).float().cpu().numpy(), rate, partial)
        silent.unlink()
    check_mp4(partial)
    os.replace(partial, dest)
    request.seed, request.steps = seed, steps
    ctx.progress(params=plan.to_params())
    return dest


def _text_pipeline(pipe: Any, profile: VideoProfile | None) -> Any:
    """The pipeline that makes a video from text alone with ``pipe``'s weights (an image-to-video folder of weights
    that do both runs the text one: :func:`_sharing`); ``pipe`` where no profile says."""
    return _sharing(pipe, profile.text_pipeline(type(pipe).__name__, pipe.config) if profile else None)


def _image_pipeline(pipe: Any, profile: VideoProfile | None, model: str, segments: list[int]) -> Any:
    """The pipeline that animates a first frame with ``pipe``'s weights (:func:`_sharing`)."""
    name = profile.image_pipeline(type(pipe).__name__, pipe.config) if profile else None
    if name is None and "image" not in inspect.signature(pipe.__call__).parameters:
        if len(segments) > 1:
            raise InvalidInput(f"{model} makes videos from text only, so it cannot continue a clip from its last "
                               f"frame: ask for at most {segments[0]} s.")
        raise InvalidInput(f"{model} makes videos from text only; remove the first frame.")
    return _sharing(pipe, name)


def _sharing(pipe: Any, name: str | None) -> Any:
    """``pipe`` when it is a ``name`` (or none is named), else the ``name`` pipeline around ``pipe``'s modules,
    built once per loaded pipeline (``pipe.masuka_sharing``)."""
    if name is None or type(pipe).__name__ == name:
        return pipe
    built = getattr(pipe, "masuka_sharing", None)
    if built is None:
        built = pipe.masuka_sharing = {}
    if name not in built:
        built[name] = sharing_weights(pipe, name)
    return built[name]
