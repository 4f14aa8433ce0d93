"""AUTOMATIC1111's web API (``/sdapi/v1/...``), translated into MASUKA's own calls.

Field names, types and answers follow A1111 (``modules/api/models.py``): base64 images, ``parameters``, ``info``
as a JSON string with ``infotexts`` and ``all_seeds``. Unknown fields are ignored, as A1111 does. What has no
meaning here is accepted and said to be ignored in the README (a ``sampler_name`` the model cannot use: it keeps
its own scheduler; ``inpainting_fill`` 2 and 3 start from the original; ``skip`` stops like ``interrupt``).
The ControlNet and ADetailer extensions' ``alwayson_scripts`` are read by :mod:`masuka.api.a1111_scripts`.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from masuka.access import usable_model
from masuka.api.a1111_scripts import MODULE_LIST, adetailer_faces, controlnet_models, controlnet_units
from masuka.api.auth import Caller, Refused, caller_off_loop
from masuka.api.work import (
    ApiWork,
    Outcome,
    TooManyWaiting,
    Uploads,
    file_base64,
    image_bytes,
    invalid_fields,
    png_base64,
)
from masuka.errors import GPUBusy, InvalidInput, MasukaError, ModelUnavailable, NotFound, bounded
from masuka.image.defaults import load_defaults
from masuka.image.generate import MAX_BATCH, ImageRequest, image_spec
from masuka.image.metadata import parse_parameters, read_metadata
from masuka.image.samplers import SAMPLER_NAMES, check_sampler, fitting_sampler
from masuka.image.tasks import InitImage, open_picture, seen_size, upscale
from masuka.image.upscale.job import upscale_image
from masuka.image.upscale.models import list_upscalers
from masuka.image.upscale.request import SCALES, UpscaleRequest, upscale_source
from masuka.loras.library import find_new_loras, list_loras
from masuka.models.catalog import image_models

UPSCALERS = ("None", "Lanczos", "Nearest")
#: A1111's samplers (its 1.10 list, without the schedule suffixes older versions put in the name): a name that
#: is A1111's but not MASUKA's is ignored like one the model cannot use; any other name is refused
A1111_SAMPLERS = ("DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
                  "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM",
                  "DDIM CFG++", "PLMS", "UniPC", "LCM")
#: A1111 schedule types whose sigma schedule MASUKA has for some samplers, by the suffix of its sampler names
SCHEDULES = {"karras": "Karras", "exponential": "Exponential", "beta": "Beta"}


class Txt2Img(BaseModel):
    """The fields of A1111's ``StableDiffusionTxt2ImgProcessingAPI`` that mean something here."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None  # A1111's older name of the field, used when sampler_name is empty
    scheduler: str | None = None
    batch_size: int = Field(1, ge=1)
    n_iter: int = Field(1, ge=1)
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    override_settings: dict[str, Any] | None = None
    send_images: bool = True
    save_images: bool = False
    styles: list[str] | None = None
    alwayson_scripts: dict[str, Any] | None = None


class Img2Img(Txt2Img):
    """A1111's ``StableDiffusionImg2ImgProcessingAPI``: init images, mask and how to use them."""

    init_images: list[str] | None = None
    denoising_strength: float = 0.75
    mask: str | None = None
    mask_blur: int | None = 4
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    include_init_images: bool = False


class PngInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str


class Options(BaseModel):
    """The body of ``POST /options``: the one setting that means something here."""

    model_config = ConfigDict(extra="ignore")
    sd_model_checkpoint: str | None = None


class ExtraSingleImage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str
    resize_mode: int = 0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaler_1: str = "None"


#: the status of each expected failure (the first that fits); any other MasukaError is a 500
STATUSES = {NotFound: 404, InvalidInput: 422, TooManyWaiting: 429, GPUBusy: 503, ModelUnavailable: 503}
#: what a route answers itself (:func:`a1111_error`) rather than as a traceback
ANSWERED = (Refused, ValidationError, MasukaError)
Body = TypeVar("Body", bound=BaseModel)


def a1111_errors(func: Callable) -> Callable:
    """A route (plain or async) whose expected failures are answered as A1111 answers them (:func:`a1111_error`)."""
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def answered(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except ANSWERED as error:
                return a1111_error(error)

        return answered

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ANSWERED as error:
            return a1111_error(error)

    return wrapper


def a1111_error(error: Exception) -> JSONResponse:
    """``{"error", "detail", "body", "errors"}`` with a status; a body's bad fields as FastAPI lists them (A1111
    leaves those to FastAPI): 422 ``{"detail": [{"loc": ["body", field], "msg", ...}]}``."""
    if isinstance(error, ValidationError):
        return invalid_fields([dict(item, loc=["body", *item["loc"]]) for item in error.errors(include_url=False)])
    if isinstance(error, Refused):
        title = {401: "Unauthorized", 429: "Too Many Requests"}.get(error.status, "Forbidden")
        headers = {"WWW-Authenticate": 'Basic realm="MASUKA"'} if error.status == 401 else {}
        if error.retry_after:
            headers["Retry-After"] = str(error.retry_after)
        return _error(error.status, title, str(error), headers)
    status = next((code for kind, code in STATUSES.items() if isinstance(error, kind)), 500)
    if isinstance(error, TooManyWaiting):
        return _error(status, "TooManyRequests", str(error), {"Retry-After": str(error.retry_after)})
    return _error(status, type(error).__name__, str(error))


def _error(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    message = bounded(message)
    return JSONResponse({"error": kind, "detail": message, "body": "", "errors": message}, status_code=status,
                        headers=headers)


def too_large(message: str) -> JSONResponse:
    """A body over the upload limit (see :meth:`ApiWork.route_class`)."""
    return _error(413, "PayloadTooLarge", message)


def a1111_router(work: ApiWork, caller_of: Callable[[Request], Caller]) -> APIRouter:
    """The ``/sdapi/v1`` routes for one app."""
    studio = work.studio
    router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111 API"], route_class=work.route_class(too_large))

    def posted(model: type[Body], generates: bool = True
               ) -> Callable[[Callable[..., Any]], Callable[[Request], Awaitable[Any]]]:
        """A POST route run as ``route(caller, body)`` in a thread of the server's, so a quick answer never waits
        behind generations; one that ``generates`` runs as ``route(caller, body, hangup)`` in the REST APIs' own
        (see :meth:`ApiWork.watched`: ``hangup`` is set when the client goes). Who calls is checked first, and only
        then is the JSON body read and checked against ``model``."""

        def decorate(route: Callable[..., Any]) -> Callable[[Request], Awaitable[Any]]:
            async def endpoint(request: Request) -> Any:
                caller = await caller_off_loop(caller_of, request)
                try:
                    data = await request.json()
                except ValueError:
                    raise InvalidInput("The body must be JSON.") from None
                body = model.model_validate(data)
                if generates:
                    return await work.watched(request, route, caller, body)
                return await anyio.to_thread.run_sync(route, caller, body)

            endpoint.__name__ = route.__name__
            return a1111_errors(endpoint)

        return decorate

    def to_request(caller: Caller, body: Txt2Img, uploads: Uploads, init: InitImage | None = None) -> ImageRequest:
        batch = body.batch_size * body.n_iter
        if not 1 <= batch <= MAX_BATCH:
            raise InvalidInput(f"batch_size × n_iter must be between 1 and {MAX_BATCH} (got {batch}).")
        model = (body.override_settings or {}).get("sd_model_checkpoint") or work.model_for(caller.user)
        controls, references = controlnet_units(
            body.alwayson_scripts, uploads.decode,
            lambda net: usable_model(studio, caller.user, net, marker="config.json"))
        face_strength = adetailer_faces(body.alwayson_scripts)
        # the prompt's <lora:name:weight> tags are taken out by plan_request, as for every route
        return ImageRequest(prompt=body.prompt, model=str(model), negative_prompt=body.negative_prompt,
                            steps=body.steps, guidance=body.cfg_scale, width=body.width, height=body.height,
                            seed=body.seed, batch=batch, owner=caller.user, init=init,
                            sampler=a1111_sampler(body.sampler_name or body.sampler_index, body.scheduler,
                                                  str(model)), controls=controls,
                            style_references=references, face_detail=face_strength is not None,
                            face_strength=ImageRequest.face_strength if face_strength is None else face_strength)

    def answer(outcome: Outcome, body: Txt2Img) -> dict:
        request, results = outcome.request, outcome.results
        seeds = [r.seed for r in results]
        info = {
            "prompt": body.prompt, "all_prompts": [body.prompt] * len(results),
            "negative_prompt": body.negative_prompt, "all_negative_prompts": [body.negative_prompt] * len(results),
            "seed": seeds[0] if seeds else body.seed, "all_seeds": seeds, "subseed": -1,
            "all_subseeds": [-1] * len(results), "subseed_strength": 0, "width": request.width,
            "height": request.height, "sampler_name": body.sampler_name, "scheduler": body.scheduler,
            "cfg_scale": request.guidance,
            "steps": request.steps, "batch_size": body.batch_size, "restore_faces": False,
            "sd_model_name": request.model, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": request.init.strength if request.init else None, "styles": body.styles or [],
            "job_timestamp": outcome.timestamp, "index_of_first_image": 0,
            "infotexts": [r.parameters for r in results], "history_ids": [r.id for r in results],
            "interrupted": outcome.interrupted,
        }
        if results:
            parsed = parse_parameters(results[0].parameters)
            sampler, schedule = split_schedule(parsed.sampler or "")
            info.update(width=parsed.width, height=parsed.height, steps=parsed.steps, cfg_scale=parsed.guidance,
                        sampler_name=sampler, scheduler=schedule)
        verdicts = [(studio.store.get("generations", r.id)["params"] or {}).get("safety") for r in results]
        if any(verdicts):  # the safety check ran: each image's score and what was done to it
            info["safety"] = verdicts
        images = [file_base64(r.path) for r in results] if body.send_images else []
        return {"images": images, "parameters": body.model_dump(), "info": json.dumps(info)}

    @router.post("/txt2img")
    @posted(Txt2Img)
    def txt2img(caller: Caller, body: Txt2Img, hangup: threading.Event) -> Any:
        with work.uploads(caller) as uploads:
            return answer(work.generate(caller, to_request(caller, body, uploads), hangup), body)

    @router.post("/img2img")
    @posted(Img2Img)
    def img2img(caller: Caller, body: Img2Img, hangup: threading.Event) -> Any:
        if not body.init_images:
            raise InvalidInput("init_images is empty: send the picture to start from (base64).")
        with work.uploads(caller) as uploads:
            image = uploads.decode(body.init_images[0], "init image")
            inverted = bool(body.mask and body.inpainting_mask_invert)
            mask = a1111_mask(uploads, body.mask, inverted, seen_size(image, "init image")) if body.mask else None
            init = InitImage(image, body.denoising_strength, mask, body.mask_blur or 0, invert_mask=inverted,
                             only_masked_padding=body.inpaint_full_res_padding if body.inpaint_full_res else None,
                             fill_masked=body.inpainting_fill == 0)
            result = answer(work.generate(caller, to_request(caller, body, uploads, init), hangup), body)
        if not body.include_init_images:  # as A1111: the pictures sent come back in parameters only when asked
            result["parameters"].update(init_images=None, mask=None)
        return result

    @router.post("/png-info")
    @posted(PngInfo, generates=False)
    def png_info(_caller: Caller, body: PngInfo) -> Any:
        try:
            metadata = read_metadata(io.BytesIO(image_bytes(body.image, "image")))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise InvalidInput("The image is not a readable PNG, JPEG or WebP file.") from None
        text = metadata.parameters or ""
        if not text:  # another tool's metadata, or none: its text fields, as A1111 lists them
            return {"info": "", "items": metadata.items, "parameters": {}}
        p = parse_parameters(text)
        prompt = p.prompt + "".join(f" <lora:{name}:{weight:g}>" for name, weight in p.loras)
        fields = {"Prompt": prompt, "Negative prompt": p.negative_prompt, "Steps": p.steps, "Sampler": p.sampler,
                  "CFG scale": p.guidance, "Seed": p.seed, "Size-1": p.width, "Size-2": p.height, "Model": p.model,
                  **p.extra}
        return {"info": text, "items": {"parameters": text, **metadata.items},
                "parameters": {k: v for k, v in fields.items() if v is not None}}

    @router.get("/progress")
    @a1111_errors
    def progress(request: Request, skip_current_image: bool = False) -> Any:
        caller = caller_of(request)
        state = work.current(caller.user)
        if state is None:  # idle: job_count 0, as A1111's State.end() leaves it (clients wait for that)
            idle = _state(None) | {"interrupted": work.interrupted.get(caller.user, False)}
            return {"progress": 0.0, "eta_relative": 0.0, "state": idle, "current_image": None,
                    "textinfo": None}
        current = None if skip_current_image or state.last_image is None else file_base64(state.last_image)
        started = f"image {state.job_no + 1}/{state.job_count}, step {state.step}/{state.steps}"
        return {"progress": state.fraction, "eta_relative": state.eta or 0.0, "state": _state(state),
                "current_image": current, "textinfo": started if state.steps else "Waiting..."}

    @router.post("/interrupt")
    @a1111_errors
    def interrupt(request: Request) -> Any:
        work.interrupt(caller_of(request).user)
        return {}

    @router.post("/skip")
    @a1111_errors
    def skip(request: Request) -> Any:
        work.interrupt(caller_of(request).user)
        return {}

    @router.get("/options")
    @a1111_errors
    def get_options(request: Request) -> Any:
        caller = caller_of(request)
        return {"sd_model_checkpoint": work.model_for(caller.user),  # samples_format: as images are saved and sent
                "samples_format": load_defaults(studio.config).output_format.lower().replace("jpeg", "jpg"),
                "sd_checkpoint_hash": None, "CLIP_stop_at_last_layers": 1}

    @router.post("/options")
    @posted(Options, generates=False)
    def set_options(caller: Caller, options: Options) -> Any:
        if options.sd_model_checkpoint is not None:
            work.models[caller.user] = image_spec(studio, caller.user, options.sd_model_checkpoint).id
        return None

    @router.get("/sd-models")
    @a1111_errors
    def sd_models(request: Request) -> Any:
        caller_of(request)
        return [{"title": key, "model_name": key, "hash": None, "sha256": None, "filename": entry["repo"],
                 "config": None} for key, entry in image_models().items()]

    @router.get("/samplers")
    @a1111_errors
    def samplers(request: Request) -> Any:
        caller_of(request)
        return [{"name": name, "aliases": [], "options": {"scheduler": schedule} if schedule != "automatic" else {}}
                for name, schedule in ((name, split_schedule(name)[1]) for name in SAMPLER_NAMES)]

    @router.get("/schedulers")
    @a1111_errors
    def schedulers(request: Request) -> Any:
        caller_of(request)
        return [{"name": name, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
                for name, label in {"automatic": "Automatic", **SCHEDULES}.items()]

    @router.get("/loras")
    @a1111_errors
    def loras(request: Request) -> Any:
        caller = caller_of(request)
        return [{"name": row["name"], "alias": row["name"], "path": str(studio.config.absolute(row["path"])),
                 "metadata": row["metadata"] or {}} for row in list_loras(studio, caller.user)]

    @router.get("/upscalers")
    @a1111_errors
    def upscalers(request: Request) -> Any:
        caller_of(request)
        files = list_upscalers(studio.config)
        return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
                for name in UPSCALERS] + [{"name": name, "model_name": name, "model_path": None, "model_url": None,
                                           "scale": None} for name in files]

    @router.post("/extra-single-image")
    @posted(ExtraSingleImage)
    def extra_single_image(caller: Caller, body: ExtraSingleImage, hangup: threading.Event) -> Any:
        names = (*UPSCALERS, *list_upscalers(studio.config))
        if body.upscaler_1 not in names:
            raise InvalidInput(f"Upscaler {body.upscaler_1!r} is not available here: use {', '.join(names)}.")
        size = (body.upscaling_resize_w, body.upscaling_resize_h) if body.resize_mode == 1 else None
        model = body.upscaler_1 not in UPSCALERS  # a model upscaler: MASUKA's upscale job
        if model and (size is not None or body.upscaling_resize not in SCALES):
            raise InvalidInput(f"Model upscaler {body.upscaler_1!r} upscales by 2 or 4 (upscaling_resize, with "
                               "resize_mode 0).")
        if not model:  # nothing kept: the answer carries the picture, as A1111's does
            picture = upscale_source(open_picture(io.BytesIO(image_bytes(body.image, "image")), "image"))
            return {"html_info": "", "image": png_base64(upscale(picture, body.upscaler_1, body.upscaling_resize,
                                                                 size))}
        with work.uploads(caller) as uploads:
            source = uploads.decode(body.image, "image")
            made = upscale_image(studio, UpscaleRequest(source, int(body.upscaling_resize), body.upscaler_1,
                                                        owner=caller.user), stop=hangup)[0].path
        return {"html_info": "", "image": file_base64(made)}

    @router.post("/refresh-checkpoints")
    @a1111_errors
    def refresh_checkpoints(request: Request) -> Any:
        caller_of(request)
        return None

    @router.post("/refresh-loras")
    @a1111_errors
    def refresh_loras(request: Request) -> Any:
        find_new_loras(studio, caller_of(request).user)  # registers LoRA files dropped into the library folder
        return None

    @router.get("/scripts")
    @a1111_errors
    def scripts(request: Request) -> Any:
        caller_of(request)
        # the extensions' always-on scripts MASUKA reads; "controlnet m2m" is how webuiapi recognises the ControlNet
        # extension, and only then does it send an empty unit list with each request (else it sends a shared
        # default dict again, holding the units of an earlier call); it runs nothing here
        return {"txt2img": ["controlnet", "controlnet m2m", "adetailer"], "img2img": ["adetailer"]}

    return router


def controlnet_router(work: ApiWork, caller_of: Callable[[Request], Caller]) -> APIRouter:
    """sd-webui-controlnet's own discovery routes (``/controlnet/...``), for clients that ask before they send
    units."""
    router = APIRouter(prefix="/controlnet", tags=["AUTOMATIC1111 API"], route_class=work.route_class(too_large))

    @router.get("/version")
    @a1111_errors
    def version(request: Request) -> Any:
        caller_of(request)
        return {"version": 2}

    @router.get("/model_list")
    @a1111_errors
    def model_list(request: Request) -> Any:
        caller_of(request)
        return {"model_list": ["None", *controlnet_models()]}

    @router.get("/module_list")
    @a1111_errors
    def module_list(request: Request) -> Any:
        caller_of(request)
        return {"module_list": list(MODULE_LIST)}

    return router


def a1111_sampler(name: str | None, scheduler: str | None, model: str) -> str:
    """The MASUKA sampler for A1111's ``sampler_name`` and ``scheduler`` on ``model``: the name with the schedule
    (``DPM++ 2M`` + ``karras`` -> ``DPM++ 2M Karras``) when the model can use that, else the sampler without the
    schedule, else "" (the model's own scheduler). A name that is neither MASUKA's nor A1111's gets
    :class:`InvalidInput`."""
    name = (name or "").strip()
    if not name:
        return ""
    base, _schedule = split_schedule(name)
    known = {n.lower() for n in (*SAMPLER_NAMES, *A1111_SAMPLERS)}
    if name.lower() not in known and base.lower() not in known and name.lower() not in ("automatic", "default"):
        check_sampler(name, None, model)  # raises, naming the samplers there are
    suffix = SCHEDULES.get((scheduler or "").strip().lower())
    if suffix and base == name:
        return fitting_sampler(f"{name} {suffix}", model) or fitting_sampler(name, model)
    return fitting_sampler(name, model) or fitting_sampler(base, model)


def a1111_mask(uploads: Uploads, data: str, invert: bool, size: tuple[int, int]) -> Path:
    """A1111's ``mask`` kept as the mask it stands for (white = repaint; ``inpainting_mask_invert``, ``invert``,
    repaints the black part: the request says so, and the History row keeps both, so Reuse repaints the same part):
    one with transparency that is not fully opaque read by its alpha (opaque = repaint, cut at half as A1111's
    ``create_binary_mask`` does), any other by its brightness. A mask read by its alpha that leaves nothing to
    repaint is refused in those words (not as an all-black mask, which the sender did not draw). A mask of another
    size than the init picture's (``size``) is stretched to it, as A1111 resizes both to the same size."""
    picture = open_picture(io.BytesIO(image_bytes(data, "mask")), "mask")  # upright, 8-bit
    by_alpha = picture.has_transparency_data and picture.convert("RGBA").getchannel("A").getextrema()[0] < 255
    if not by_alpha:
        return uploads.keep(_stretched(picture, size), "mask")
    mask = picture.convert("RGBA").getchannel("A").point(lambda alpha: 255 if alpha > 128 else 0)
    if mask.getextrema() == ((255, 255) if invert else (0, 0)):  # nothing to repaint: say why
        rule = "a mask with transparency is read by its alpha, as A1111 reads it: opaque means repaint"
        if invert:
            raise InvalidInput(f"The mask is more than half opaque everywhere and inpainting_mask_invert repaints "
                               f"what is transparent, so nothing would be repainted ({rule}): leave transparent "
                               "where the image should change.")
        what = "fully transparent" if picture.convert("RGBA").getchannel("A").getextrema()[1] == 0 else \
            "nowhere more than half opaque"
        raise InvalidInput(f"The mask is {what}, so nothing would be repainted ({rule}): paint opaque where the "
                           "image should change.")
    return uploads.keep(_stretched(mask, size), "mask")


def _stretched(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    return mask if mask.size == size else mask.resize(size, Image.Resampling.BILINEAR)  # no ringing past an edge


def split_schedule(sampler: str) -> tuple[str, str]:
    """``DPM++ 2M Karras`` -> (``DPM++ 2M``, ``karras``); a name without a schedule -> (name, ``automatic``)."""
    for schedule, suffix in SCHEDULES.items():
        if sampler.lower().endswith(f" {suffix.lower()}"):
            return sampler[:-len(suffix) - 1], schedule
    return sampler, "automatic"


def _state(state: Any) -> dict:
    return {"skipped": False, "interrupted": bool(state and state.interrupted),
            "stopping_generation": False, "job": "" if state is None else "txt2img",
            "job_count": state.job_count if state else 0, "job_timestamp": state.timestamp if state else "0",
            "job_no": state.job_no if state else 0, "sampling_step": state.step if state else 0,
            "sampling_steps": state.steps if state else 0}
