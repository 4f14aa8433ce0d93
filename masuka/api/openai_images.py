"""OpenAI's Images API (``/v1/images/generations``, ``/v1/images/edits``, ``/v1/models``) on MASUKA's models.

``model`` is a catalog id, a diffusers repo id or a local folder; OpenAI's own image model names
(``dall-e-3``, ``gpt-image-1``...) mean "my default model", so tools with a fixed model name work too.
``quality`` and ``style`` are accepted and have no effect. Errors are OpenAI error objects.

MASUKA's generation aids are extension fields OpenAI does not define (:class:`Aids`: ``optimize_prompt``,
``safety_check``, ``face_detail``, ``face_strength``), sent by the official SDK through ``extra_body``: in the
JSON body of a generation, as form fields of an edit.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from masuka.access import may_read
from masuka.api.auth import Caller, Refused
from masuka.api.work import ApiWork, Outcome, TooManyWaiting, file_base64
from masuka.errors import GPUBusy, InvalidInput, MasukaError, NotFound
from masuka.image.generate import MAX_BATCH, ImageRequest, used_prompt
from masuka.image.tasks import InitImage, save_input
from masuka.models.catalog import image_models

OPENAI_MODELS = ("dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2")
EDIT_STRENGTH = 0.8  # an edit without a mask: how far the whole picture may move


class Aids(BaseModel):
    """MASUKA's extension fields (sent with ``extra_body``): the generation aids. An edit's come from its form
    (``"true"``, ``"0.5"``...)."""

    model_config = ConfigDict(extra="ignore")

    optimize_prompt: bool = False
    safety_check: bool = False
    face_detail: bool = False
    face_strength: float = 0.4


class Generation(Aids):
    """The body of ``POST /v1/images/generations`` (unknown fields ignored)."""

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    response_format: str | None = None
    quality: str | None = None
    style: str | None = None


class OpenAIError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code


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
            return _error(OpenAIError(error.status, str(error), code=code))
        except ValidationError as error:
            first = error.errors()[0]
            return _error(OpenAIError(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}",
                                      param=str(first["loc"][0])))
        except InvalidInput as error:
            return _error(OpenAIError(400, str(error)))
        except NotFound as error:
            return _error(OpenAIError(404, str(error), code="not_found"))
        except TooManyWaiting as error:
            return _error(OpenAIError(429, str(error), kind="rate_limit_error", code="rate_limit_exceeded"))
        except GPUBusy as error:
            return _error(OpenAIError(503, str(error), kind="server_error"))
        except MasukaError as error:
            return _error(OpenAIError(500, str(error), kind="server_error"))

    return wrapper


def _error(error: OpenAIError) -> JSONResponse:
    return JSONResponse({"error": {"message": str(error), "type": error.kind, "param": error.param,
                                   "code": error.code}}, status_code=error.status)


def openai_router(work: ApiWork, caller_of: Callable[[Request], Caller]) -> APIRouter:
    """The ``/v1`` image routes for one app."""
    studio = work.studio
    router = APIRouter(prefix="/v1", tags=["OpenAI Images API"])

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
            parts = size.lower().split("x")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise OpenAIError(400, f"size must look like 1024x1024 (got {size!r}).", param="size")
            width, height = int(parts[0]), int(parts[1])
        chosen = work.model_for(caller.user) if not model or model in OPENAI_MODELS else model
        extra = {name: getattr(aids, name) for name in Aids.model_fields} if aids is not None else {}
        return ImageRequest(prompt=prompt, model=chosen, width=width, height=height, batch=count,
                            owner=caller.user, init=init, **extra)

    async def run(request: Request, caller: Caller, image_request: ImageRequest, response_format: str | None
                  ) -> dict:
        if response_format not in (None, "b64_json", "url"):
            raise OpenAIError(400, "response_format must be b64_json or url.", param="response_format")
        try:
            outcome: Outcome = await run_in_threadpool(work.generate, caller, image_request)
        except InvalidInput as error:
            param = "size" if any(word in str(error) for word in ("width", "height")) else None
            raise OpenAIError(400, str(error), param=param) from None
        data = [{"url": str(request.url_for("openai_image_file", image_id=r.id))} if response_format == "url"
                else {"b64_json": file_base64(r.path)} for r in outcome.results]
        return {"created": int(time.time()), "data": [dict(item, revised_prompt=used_prompt(result))  # optimized
                                                      for item, result in zip(data, outcome.results, strict=True)]}

    @router.post("/images/generations")
    @openai_errors
    async def generations(request: Request) -> Any:
        caller = caller_of(request)
        try:
            body = Generation.model_validate(await request.json())
        except ValueError as error:
            if isinstance(error, ValidationError):
                raise
            raise OpenAIError(400, "The body must be JSON.") from None
        return await run(request, caller, to_request(caller, body.prompt, body.model, body.n, body.size,
                                                     aids=body), body.response_format)

    @router.post("/images/edits")
    @openai_errors
    async def edits(request: Request) -> Any:
        caller = caller_of(request)
        form = await request.form()
        images = form.getlist("image") + form.getlist("image[]")
        if not images or not hasattr(images[0], "read"):
            raise OpenAIError(400, "Send the picture to edit as the multipart file 'image'.", param="image")
        prompt = str(form.get("prompt") or "")
        image = work.decode_upload(caller, await images[0].read(), "init image")
        mask_file = form.get("mask")
        mask = None
        if mask_file is not None and hasattr(mask_file, "read"):
            mask = _openai_mask(work, caller, await mask_file.read())
        init = InitImage(image, 1.0 if mask else EDIT_STRENGTH, mask, mask_blur=0)
        aids = Aids.model_validate({name: form[name] for name in Aids.model_fields if isinstance(form.get(name), str)})
        image_request = to_request(caller, prompt, form.get("model"), form.get("n") or 1, form.get("size"), init,
                                   aids)
        return await run(request, caller, image_request, form.get("response_format"))

    @router.get("/images/files/{image_id}", name="openai_image_file")
    @openai_errors
    async def image_file(image_id: int, request: Request) -> Any:
        caller = caller_of(request)
        row = studio.store.get("generations", image_id)
        path = studio.config.absolute(row["output_path"]) if row and row.get("output_path") else None
        if path is None or not path.is_file() or (row["owner"] != caller.user and not caller.admin) \
                or not may_read(studio, caller.user, path):
            raise OpenAIError(404, f"No image {image_id} of yours.", code="not_found")
        return FileResponse(path)

    @router.get("/models")
    @openai_errors
    async def models(request: Request) -> Any:
        caller_of(request)
        return {"object": "list", "data": [{"id": key, "object": "model", "created": 0, "owned_by": "masuka"}
                                           for key in image_models()]}

    return router


def _openai_mask(work: ApiWork, caller: Caller, data: bytes) -> Any:
    """OpenAI masks are transparent where the picture should change: turned into white-means-repaint."""
    path = work.decode_upload(caller, data, "mask")
    with Image.open(path) as mask:
        if "A" not in mask.getbands():
            return path
        repaint = mask.getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)
    return save_input(work.studio, caller.user, repaint, "mask")
