"""What both REST APIs share: running an image request for a caller, its progress, Stop, and the caps.

Generation goes through :func:`masuka.image.generate.generate_images` like the UI and CLI: the same GPU slots,
history rows and per-user files. Each user may have ``max_queued_per_user`` REST generations waiting or running.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import math
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from PIL import Image
from starlette.types import Message

from masuka.api.auth import Caller
from masuka.disk import still_used
from masuka.errors import MAX_MESSAGE_CHARS, Cancelled, InvalidInput, MasukaError, bounded
from masuka.image.copies import plain_bytes, png_mode, save_input, write_input
from masuka.image.defaults import load_defaults
from masuka.image.generate import ImageRequest, ImageResult, generate_images
from masuka.models.catalog import image_models
from masuka.studio import Studio

#: threads of the REST APIs' own pool: a generation holds one while it waits for the GPU and runs, never one of
#: the threads Gradio's events and the other routes share
GENERATION_THREADS = 64
#: the ``Retry-After`` (seconds) of a 429 for too many waiting generations when none of them tells how long it needs
RETRY_AFTER_S = 5
#: the most field errors a 422 lists (see :func:`invalid_fields`)
MAX_FIELD_ERRORS = 20
#: how often a generation's HTTP client is asked whether it is still there (see :meth:`ApiWork.watched`)
HANGUP_POLL_S = 0.25


class TooManyWaiting(MasukaError):
    """The caller already has as many REST generations waiting as one user may; ``retry_after``: the seconds until
    one of them may be done (a guess)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def invalid_fields(errors: Sequence[Any]) -> JSONResponse:
    """FastAPI's 422 for malformed fields (``detail``: the ``errors`` of pydantic's or FastAPI's validation, each
    with ``loc``, ``msg``, ``type``, ``input``...), each text in it bounded (:func:`bounded`) and an ``input`` longer
    than that as bounded JSON text: FastAPI's own echoes the whole input (50 KB for a 50 KB field). Only the first
    :data:`MAX_FIELD_ERRORS` errors are listed, then one entry saying how many more were left out (a list of
    100,000 bad items would answer 10 MB)."""
    detail = [{**_bounded_json(item), **({"input": _bounded_input(item["input"])} if "input" in item else {})}
              for item in jsonable_encoder(list(errors[:MAX_FIELD_ERRORS]))]
    if len(errors) > MAX_FIELD_ERRORS:
        left_out = len(errors) - MAX_FIELD_ERRORS
        detail.append({"loc": [], "msg": f"{left_out:,} more errors left out", "type": "too_many_errors"})
    return JSONResponse({"detail": detail}, status_code=422)


def _bounded_input(value: Any) -> Any:
    """A field's ``input`` as it came, or bounded JSON text when its JSON text is longer than a message may be."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return value if len(text) <= MAX_MESSAGE_CHARS else bounded(text)


def _bounded_json(value: Any) -> Any:
    """``value`` (JSON) with each text bounded."""
    if isinstance(value, str):
        return bounded(value)
    if isinstance(value, list):
        return [_bounded_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _bounded_json(item) for key, item in value.items()}
    return value


class OverLimit(Exception):
    """A request body read past the upload limit (see :meth:`ApiWork.route_class`)."""


@dataclass
class Progress:
    """One user's current REST generation, as A1111's ``/progress`` reports it."""

    job_count: int = 0
    job_no: int = 0
    step: int = 0
    steps: int = 0
    started: float = 0.0
    timestamp: str = "0"
    interrupted: bool = False
    last_image: Path | None = None

    @property
    def fraction(self) -> float:
        if not self.job_count or not self.steps:
            return 0.0
        return min(1.0, (self.job_no + self.step / self.steps) / self.job_count)

    @property
    def eta(self) -> float | None:
        """Seconds left, at the pace so far; None before its first step."""
        fraction = self.fraction
        if fraction <= 0:
            return None
        elapsed = time.time() - self.started
        return elapsed / fraction - elapsed


@dataclass
class Outcome:
    """The images a REST generation made (all of them, or those finished before an interrupt)."""

    results: list[ImageResult]
    interrupted: bool
    request: ImageRequest
    timestamp: str  # when the request came in (A1111's ``job_timestamp``)


@dataclass
class ApiWork:
    """Per-app state of the REST APIs: who runs what (each request's progress, in arrival order), their stop
    flags, their chosen model, and the threads generations run in."""

    studio: Studio
    progress: dict[str, list[Progress]] = field(default_factory=dict)
    stops: dict[str, list[threading.Event]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    interrupted: dict[str, bool] = field(default_factory=dict)  # whether the user's last request was interrupted
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: Any = None  # an anyio CapacityLimiter, made in the server's event loop

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` in :data:`GENERATION_THREADS` threads of the REST APIs' own: generations that
        wait for the GPU cannot take every thread of the server's shared pool and leave ``/progress``,
        ``/interrupt`` or the app's pages waiting."""
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(GENERATION_THREADS)
        return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs), limiter=self._threads)

    def route_class(self, too_large: Callable[[str], Response]) -> type[APIRoute]:
        """The route class of one API's routes: a request whose body is over the upload limit (``max_upload_mb``)
        gets ``too_large(message)``, that API's 413: by its declared ``Content-Length`` before any of it is read or
        who sent it is asked, else (a chunked body) as soon as what was read passes the limit. A malformed field
        gets FastAPI's 422 with its texts bounded (:func:`invalid_fields`)."""
        limit = self.studio.config.max_upload_mb
        cap = limit * 2**20

        def refused(size: str) -> Response:
            return too_large(f"The request is {size}; this server takes at most {limit} MB (MASUKA_MAX_UPLOAD_MB).")

        class Limited(APIRoute):
            def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
                handle = super().get_route_handler()

                async def checked(request: Request) -> Response:
                    declared = request.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cap:
                        return refused(f"{int(declared) / 2**20:,.1f} MB")
                    read, receive = 0, request.receive

                    async def counted() -> Message:
                        nonlocal read
                        message = await receive()
                        read += len(message.get("body", b""))
                        if read > cap:
                            raise OverLimit
                        return message

                    try:
                        return await handle(Request(request.scope, counted))
                    except Exception as error:  # OverLimit, or the framework's error about the body it could not finish
                        if read > cap:
                            return refused(f"over {limit} MB")
                        if isinstance(error, RequestValidationError):
                            return invalid_fields(error.errors())
                        raise

                return checked

        return Limited

    def current(self, user: str) -> Progress | None:
        """The user's request A1111's ``/progress`` reports: the one generating, else the first waiting; None
        when nothing is."""
        with self._lock:
            states = list(self.progress.get(user, []))
        return next((state for state in states if state.steps), states[0] if states else None)

    def model_for(self, user: str) -> str:
        """The model a request without one uses: the user's API choice, the saved default, else the first."""
        return self.models.get(user) or load_defaults(self.studio.config).model or next(iter(image_models()))

    async def watched(self, request: Request, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args, hangup)`` in the APIs' threads (:meth:`call`) while ``request``'s HTTP client is watched:
        once it hangs up, ``hangup`` (a :class:`threading.Event`, the stop flag :meth:`generate` takes) is set, so
        a generation still waiting for the GPU leaves the queue, a running one stops between steps as an interrupt
        stops it, and either frees its place among the user's ``max_queued_per_user``."""
        hangup = threading.Event()

        async def watch() -> None:
            while not await request.is_disconnected():
                await anyio.sleep(HANGUP_POLL_S)
            hangup.set()

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                try:
                    return await self.call(func, *args, hangup)
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the task group wraps what the work raised: raised as it was
            raise group.exceptions[0] from None

    def generate(self, caller: Caller, request: ImageRequest, stop: threading.Event | None = None) -> Outcome:
        """Run ``request`` for ``caller`` (waiting for the GPU like any job) until done or ``stop`` is set (by
        :meth:`interrupt`, or when its client hangs up: :meth:`watched`); an interrupt keeps what is done."""
        stop = stop if stop is not None else threading.Event()
        with self._lock:
            if len(self.stops.get(caller.user, [])) >= self.studio.config.max_queued_per_user:
                limit = self.studio.config.max_queued_per_user
                etas = [eta for state in self.progress.get(caller.user, []) if (eta := state.eta) is not None]
                raise TooManyWaiting(f"You already have {limit} request{'s' * (limit != 1)} waiting for the GPU, "
                                     "the most one user may queue. Try again when one has finished.",
                                     max(1, math.ceil(min(etas))) if etas else RETRY_AFTER_S)
            self.stops.setdefault(caller.user, []).append(stop)
            state = Progress(job_count=request.batch, started=time.time(), timestamp=time.strftime("%Y%m%d%H%M%S"))
            self.progress.setdefault(caller.user, []).append(state)
        results: list[ImageResult] = []

        def on_step(index: int, step: int, total: int) -> None:
            state.job_no, state.step, state.steps = index, step, total

        def on_image(result: ImageResult) -> None:
            results.append(result)
            state.last_image = result.path

        try:
            generate_images(self.studio, request, on_step=on_step, on_image=on_image, stop=stop)
        except Cancelled:
            return Outcome(results, True, request, state.timestamp)
        finally:
            with self._lock:
                self.stops[caller.user].remove(stop)
                self.progress[caller.user].remove(state)
                self.interrupted[caller.user] = state.interrupted
        return Outcome(results, False, request, state.timestamp)

    def interrupt(self, user: str) -> int:
        """Stop the user's running and waiting REST generations; returns how many were told."""
        with self._lock:
            flags = list(self.stops.get(user, []))
            for state in self.progress.get(user, []):
                state.interrupted = True
        for flag in flags:
            flag.set()
        return len(flags)

    def uploads(self, caller: Caller) -> Uploads:
        """The pictures one request of ``caller`` uploads, kept while it runs (see :class:`Uploads`)."""
        return Uploads(self.studio, caller.user)


@dataclass
class Uploads:
    """The pictures one REST request uploads, copied into the caller's ``inputs`` folder (:meth:`decode`,
    :meth:`keep`) for as long as the request is answered: used in a ``with`` (``async with`` on the event loop),
    which on the way out removes the copies no history row or queued job points at. So a request refused before
    its work ran (a bad size, too many waiting: any 4xx) keeps none, and one that ran keeps those its rows use."""

    studio: Studio
    owner: str
    paths: list[Path] = field(default_factory=list)

    def decode(self, data: str | bytes, kind: str) -> Path:
        """A base64 image (data URL or bare) or raw upload, checked and kept as its plain copy (a JPEG as its own
        bytes less its metadata, as the tab keeps an upload; a PNG of its pixels took seconds for a large photo)."""
        suffix, plain = plain_bytes(image_bytes(data, kind), kind)
        return self._kept(write_input(self.studio, self.owner, kind.replace(" ", "-"), suffix, plain))

    def keep(self, picture: Image.Image, kind: str) -> Path:
        """``picture`` (a mask made for the request) copied into the inputs folder for this request."""
        return self._kept(save_input(self.studio, self.owner, picture, kind.replace(" ", "-")))

    def _kept(self, path: Path) -> Path:
        self.paths.append(path)
        return path

    def drop_unused(self) -> None:
        """Remove the copies that no history row or queued job points at (History's deletion asks the same)."""
        for path in self.paths:
            if not still_used(self.studio.store, path):
                path.unlink(missing_ok=True)

    def __enter__(self) -> Uploads:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop_unused()

    async def __aenter__(self) -> Uploads:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await anyio.to_thread.run_sync(self.drop_unused)  # database reads: off the event loop


def image_bytes(data: str | bytes, kind: str) -> bytes:
    """The bytes of a base64 image (a data URL or bare base64); raw bytes as they are."""
    if isinstance(data, bytes):
        return data
    try:
        return base64.b64decode(data.partition(",")[2] if data.startswith("data:") else data)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"The {kind} is not valid base64.") from None


def file_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def png_base64(picture: Image.Image) -> str:
    """``picture`` as base64 PNG bytes, for an answer that carries a picture no file keeps."""
    buffer = io.BytesIO()
    png_mode(picture).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
