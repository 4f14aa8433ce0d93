"""OpenAI's Images API (``/v1/images/generations``, ``/v1/images/edits``, ``/v1/models``) on MASUKA's models.

``model`` is a catalog id, a diffusers repo id or a local folder; OpenAI's own image model names
(``gpt-image-2.5-flare``, ``dall-e-3``...) mean "my default model", so tools with a fixed model name work too.
``quality`` and ``style`` are accepted and have no effect. Images come back as saved or converted
(:class:`Delivery`), in one answer or as server-sent events. Errors are OpenAI error objects.

MASUKA's generation aids are extension fields OpenAI does not define (:class:`Aids`: ``optimize_prompt``,
``safety_check``, ``face_detail``, ``face_strength``), sent by the official SDK through ``extra_body``: in the
JSON body of a generation, as form fields of an edit.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.routing import Match

from masuka.access import may_read
from masuka.api.auth import Caller, Refused, caller_off_loop
from masuka.api.work import ApiWork, Outcome, TooManyWaiting, Uploads
from masuka.errors import GPUBusy, InvalidInput, MasukaError, ModelUnavailable, NotFound, bounded
from masuka.image.generate import MAX_BATCH, ImageRequest, used_prompt
from masuka.image.metadata import read_parameters, save_image
from masuka.image.tasks import InitImage
from masuka.models.catalog import image_models
from masuka.store import row_id

#: OpenAI's image model names, dated snapshots included (``gpt-image-2-2026-04-21``, ``chatgpt-image-latest``)
OPENAI_MODEL = re.compile(r"(gpt-image|chatgpt-image|dall-e)(-[\w.-]+)?")
EDIT_STRENGTH = 0.8  # an edit without a mask: how far the whole picture may move
SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")


class Aids(BaseModel):
    """MASUKA's extension fields (sent with ``extra_body``): the generation aids. An edit's come from its form
    (``"true"``, ``"0.5"``...)."""

    model_config = ConfigDict(extra="ignore")

    optimize_prompt: bool = False
    safety_check: bool = False
    face_detail: bool = False
    face_strength: float = 0.4


class Delivery(BaseModel):
    """How the images come back: base64 or a URL, as PNG, JPEG or WebP (unset: as MASUKA saved them), in one
    answer or, with ``stream``, as one ``image_generation.completed`` (``image_edit.completed``) event each once
    they are made (no partial images). An edit's come from its form."""

    model_config = ConfigDict(extra="ignore")

    response_format: Literal["b64_json", "url"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int = Field(100, ge=0, le=100)
    stream: bool = False


class Generation(Aids, Delivery):
    """The body of ``POST /v1/images/generations`` (unknown fields ignored)."""

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    quality: str | None = None
    style: str | None = None


class OpenAIError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code, self.headers = status, kind, param, code, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": bounded(str(self)), "type": self.kind, "param": self.param, "code": self.code}}


def openai_errors(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Every failure as ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's status codes."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except OpenAIError as error:
            return _error(error)
        except Refused as error:
            code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(error.status, "forbidden")
            kind = "rate_limit_error" if error.status == 429 else "invalid_request_error"
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
            return _error(OpenAIError(error.status, str(error), kind=kind, code=code, headers=headers))
        except ValidationError as error:
            first = error.errors()[0]
            if not first["loc"]:  # the body itself: a list, a string
                return _error(OpenAIError(400, "The body must be a JSON object."))
            return _error(OpenAIError(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}",
                                      param=str(first["loc"][0])))
        except InvalidInput as error:
            return _error(OpenAIError(400, str(error)))
        except NotFound as error:
            return _error(OpenAIError(404, str(error), code="not_found"))
        except TooManyWaiting as error:
            return _error(OpenAIError(429, str(error), kind="rate_limit_error", code="rate_limit_exceeded",
                                      headers={"Retry-After": str(error.retry_after)}))
        except GPUBusy as error:
            return _error(OpenAIError(503, str(error), kind="server_error"))
        except ModelUnavailable as error:
            return _error(OpenAIError(503, str(error), kind="server_error", code="model_not_available"))
        except MasukaError as error:
            return _error(OpenAIError(500, str(error), kind="server_error"))
        except HTTPException as error:  # Starlette's own refusals of a body (a form field over 1 MB, no boundary)
            return _error(OpenAIError(error.status_code, error.detail))

    return wrapper


def _model(key: str) -> dict[str, Any]:
    return {"id": key, "object": "model", "created": 0, "owned_by": "masuka"}


def _error(error: OpenAIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def too_large(message: str) -> JSONResponse:
    """A body over the upload limit (see :meth:`ApiWork.route_class`)."""
    return _error(OpenAIError(413, message))


def openai_router(work: ApiWork, caller_of: Callable[[Request], Caller]) -> APIRouter:
    """The ``/v1`` image routes for one app."""
    studio = work.studio
    router = APIRouter(prefix="/v1", tags=["OpenAI Images API"], route_class=work.route_class(too_large))

    def to_request(caller: Caller, prompt: str, model: str | None, n: Any, size: str | None,
                   init: InitImage | None = None, aids: Aids | None = None) -> ImageRequest:
        try:
            count = int(n)
        except (TypeError, ValueError):
            raise OpenAIError(400, f"n must be a whole number (got {n!r}).", param="n") from None
        if not 1 <= count <= MAX_BATCH:
            raise OpenAIError(400, f"n must be between 1 and {MAX_BATCH} (got {count}).", param="n")
        width = height = None
        if size and size != "auto":
            match = SIZE.fullmatch(size.lower())
            if not match:
                raise OpenAIError(400, f"size must look like 1024x1024 (got {size!r}).", param="size")
            width, height = int(match[1]), int(match[2])
        chosen = work.model_for(caller.user) if not model or OPENAI_MODEL.fullmatch(model) else model
        extra = {name: getattr(aids, name) for name in Aids.model_fields} if aids is not None else {}
        return ImageRequest(prompt=prompt, model=chosen, width=width, height=height, batch=count,
                            owner=caller.user, init=init, **extra)

    async def run(request: Request, caller: Caller, image_request: ImageRequest, delivery: Delivery,
                  event: str) -> Any:
        try:
            outcome: Outcome = await work.watched(request, work.generate, caller, image_request)
        except InvalidInput as error:
            param = "size" if any(word in str(error).lower() for word in ("width", "height")) else None
            raise OpenAIError(400, str(error), param=param) from None
        stopped = stopped_error(outcome) if outcome.interrupted else None
        pictures = await work.call(lambda: [delivered(r.path, delivery) for r in outcome.results])
        if delivery.stream:
            return StreamingResponse(_events(event, pictures, stopped), media_type="text/event-stream")
        if stopped:
            raise stopped
        data = []
        for result, picture in zip(outcome.results, pictures, strict=True):
            if delivery.response_format == "url":
                url = request.url_for("openai_image_file", image_id=result.id)
                item = {"url": str(url.include_query_params(**file_query(delivery)))}
            else:
                item = {"b64_json": base64.b64encode(picture.data).decode()}
            data.append(dict(item, revised_prompt=used_prompt(result)))  # the optimized prompt, when it was
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if pictures:
            answer.update(output_format=pictures[0].format, size=pictures[0].size)
        return answer

    @router.post("/images/generations")
    @openai_errors
    async def generations(request: Request) -> Any:
        caller = await caller_off_loop(caller_of, request)
        try:
            body = Generation.model_validate(await request.json())
        except ValueError as error:
            if isinstance(error, ValidationError):
                raise
            raise OpenAIError(400, "The body must be JSON.") from None
        return await run(request, caller, to_request(caller, body.prompt, body.model, body.n, body.size,
                                                     aids=body), body, "image_generation")

    @router.post("/images/edits")
    @openai_errors
    async def edits(request: Request) -> Any:
        caller = await caller_off_loop(caller_of, request)
        form = await request.form()
        images = form.getlist("image") + form.getlist("image[]")
        if not images or not hasattr(images[0], "read"):
            raise OpenAIError(400, "Send the picture to edit as the multipart file 'image'.", param="image")
        prompt = form_text(form, "prompt") or ""
        aids = Aids.model_validate(form_texts(form, Aids.model_fields))
        delivery = Delivery.model_validate(form_texts(form, Delivery.model_fields))
        async with work.uploads(caller) as uploads:
            image = await work.call(uploads.decode, await images[0].read(), "init image")
            mask_file = form.get("mask")
            mask = None
            if mask_file is not None and hasattr(mask_file, "read"):
                mask = await work.call(_openai_mask, uploads, await mask_file.read())
            init = InitImage(image, 1.0 if mask else EDIT_STRENGTH, mask, mask_blur=0)
            image_request = to_request(caller, prompt, form_text(form, "model"), form_text(form, "n") or 1,
                                       form_text(form, "size"), init, aids)
            return await run(request, caller, image_request, delivery, "image_edit")

    @router.api_route("/images/files/{image_id}", methods=["GET", "HEAD"], name="openai_image_file")
    @openai_errors
    async def image_file(image_id: str, request: Request, format: str | None = None,
                         compression: str | None = None) -> Any:
        """A generated image by its history id, as saved or in the ``format`` and ``compression`` (its
        ``output_compression``) the request asked for (:func:`file_query`)."""
        caller = await caller_off_loop(caller_of, request)
        path = await anyio.to_thread.run_sync(own_image, caller, image_id)  # a database read, a file check
        asked = {name: value for name, value in (("output_format", format), ("output_compression", compression))
                 if value is not None}
        if not asked:
            return FileResponse(path)
        delivery = Delivery.model_validate(asked)
        picture = await work.call(delivered, path, delivery)
        return Response(picture.data, media_type=f"image/{picture.format}")

    def own_image(caller: Caller, image_id: str) -> Path:
        """The file of the caller's generation ``image_id`` (any user's for an admin), else a 404."""
        number = row_id(image_id)
        row = studio.store.get("generations", number) if number else None
        path = studio.config.absolute(row["output_path"]) if row and row.get("output_path") else None
        if path is None or not path.is_file() or (row["owner"] != caller.user and not caller.admin) \
                or not may_read(studio, caller.user, path):
            raise OpenAIError(404, f"No image {image_id} of yours.", code="not_found")
        return path

    @router.get("/models")
    @openai_errors
    async def models(request: Request) -> Any:
        await caller_off_loop(caller_of, request)
        return {"object": "list", "data": [_model(key) for key in image_models()]}

    @router.get("/models/{model:path}")
    @openai_errors
    async def one_model(model: str, request: Request) -> Any:
        """A model ``/models`` lists, or one of OpenAI's names (which mean the default model), else a 404."""
        await caller_off_loop(caller_of, request)
        if model not in image_models() and not OPENAI_MODEL.fullmatch(model):
            raise OpenAIError(404, f"The model '{model}' is not in MASUKA's catalog (GET /v1/models lists it).",
                              param="model", code="model_not_found")
        return _model(model)

    @router.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                      include_in_schema=False)
    @openai_errors
    async def unknown(path: str, request: Request) -> Any:
        """Any other ``/v1`` request, answered as OpenAI does once the caller may call: 404 (405 for another
        method of a route here)."""
        await caller_off_loop(caller_of, request)
        if path == "images/variations":
            raise OpenAIError(404, "Image variations are not offered here: send the picture with a prompt to "
                                   "/v1/images/edits instead.", code="not_found")
        allowed = sorted({method for route in router.routes if isinstance(route, APIRoute)
                          and route.matches(request.scope)[0] is Match.PARTIAL for method in route.methods})
        if allowed:
            raise OpenAIError(405, f"{request.method} is not allowed on /v1/{path}: use {', '.join(allowed)}.")
        raise OpenAIError(404, f"Invalid URL ({request.method} /v1/{path}).", code="not_found")

    return router


@dataclass(frozen=True)
class Delivered:
    """An image as it goes back: its bytes, format (``png``, ``jpeg``, ``webp``) and ``WIDTHxHEIGHT``."""

    data: bytes
    format: str
    size: str


def delivered(path: Path, delivery: Delivery) -> Delivered:
    """The saved image, converted when the request asked for another format or (a JPEG or WebP) for an
    ``output_compression``; a converted one carries the parameters as the saved file does (PNG text chunk, or EXIF
    UserComment in a JPEG or WebP)."""
    with Image.open(path) as picture:
        saved = (picture.format or "PNG").lower()
        size = f"{picture.width}x{picture.height}"
        wanted = delivery.output_format or saved
        compressed = wanted != "png" and "output_compression" in delivery.model_fields_set
        if wanted == saved and not compressed:
            return Delivered(path.read_bytes(), saved, size)
        converted = picture.convert("RGBA" if wanted != "jpeg" and "A" in picture.getbands() else "RGB")
    buffer = io.BytesIO()
    parameters = read_parameters(path)
    if parameters:
        save_image(converted, buffer, parameters, wanted, quality=delivery.output_compression)
    else:
        converted.save(buffer, wanted.upper(), quality=delivery.output_compression)
    return Delivered(buffer.getvalue(), wanted, size)


def file_query(delivery: Delivery) -> dict[str, Any]:
    """The query of an image's URL (``/v1/images/files/<id>``) that serves it as ``delivery`` asks."""
    query: dict[str, Any] = {"format": delivery.output_format} if delivery.output_format else {}
    if "output_compression" in delivery.model_fields_set:
        query["compression"] = delivery.output_compression
    return query


def stopped_error(outcome: Outcome) -> OpenAIError:
    """What an interrupted request answers: OpenAI's server error, not an answer short of images (the finished
    ones are in the History). ``x-should-retry: false`` keeps the SDK from making the images again."""
    made, asked = len(outcome.results), outcome.request.batch
    return OpenAIError(500, f"The request was stopped (POST /sdapi/v1/interrupt) after {made} of {asked} "
                            f"image{'s' * (asked != 1)}; those made are in your History.", kind="server_error",
                       code="cancelled", headers={"x-should-retry": "false"})


def form_text(form: FormData, name: str) -> str | None:
    """The text field ``name`` of an edit's form (None when absent); a file sent in its place gets OpenAI's 400
    naming it."""
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise OpenAIError(400, f"'{name}' must be a text field, not a file.", param=name)
    return value


def form_texts(form: FormData, names: Iterable[str]) -> dict[str, str]:
    """The text fields of ``names`` that the form has (:func:`form_text`)."""
    return {name: value for name in names if (value := form_text(form, name)) is not None}


def _events(event: str, pictures: list[Delivered], stopped: OpenAIError | None) -> Iterator[str]:
    """Server-sent events as OpenAI streams them: one ``<event>.completed`` per image, then ``error`` when the
    request was ``stopped`` short of them all."""
    for picture in pictures:
        payload = {"type": f"{event}.completed", "b64_json": base64.b64encode(picture.data).decode(),
                   "created_at": int(time.time()), "size": picture.size, "quality": "auto", "background": "opaque",
                   "output_format": picture.format,
                   "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                             "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}}}
        yield f"event: {event}.completed\ndata: {json.dumps(payload)}\n\n"
    if stopped:
        yield f"event: error\ndata: {json.dumps({'type': 'error', **stopped.body()})}\n\n"


def _openai_mask(uploads: Uploads, data: bytes) -> Path:
    """OpenAI masks are transparent where the picture should change: turned into white-means-repaint (the upload's
    own copy then used by nothing)."""
    path = uploads.decode(data, "mask")
    with Image.open(path) as mask:
        if not mask.has_transparency_data:  # alpha, or a palette or grey PNG's transparent entries (pngquant's)
            return path
        repaint = mask.convert("RGBA").getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)
    if repaint.getextrema()[1] == 0:
        raise OpenAIError(400, "The mask has no fully transparent pixel, so nothing would change: make the mask "
                               "transparent (alpha 0) where the image should change.", param="mask")
    return uploads.keep(repaint, "mask")
