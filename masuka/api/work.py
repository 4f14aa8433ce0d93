"""What both REST APIs share: running an image request for a caller, its progress, Stop, and the caps.

Generation goes through :func:`masuka.image.generate.generate_images` like the UI and CLI: the same GPU slots,
history rows and per-user files. Each user may have ``max_queued_per_user`` REST generations waiting or running.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from masuka.api.auth import Caller
from masuka.errors import Cancelled, InvalidInput, MasukaError
from masuka.image.defaults import load_defaults
from masuka.image.generate import ImageRequest, ImageResult, generate_images
from masuka.image.tasks import MAX_INPUT_PIXELS, save_input
from masuka.models.catalog import image_models
from masuka.studio import Studio


class TooManyWaiting(MasukaError):
    """The caller already has as many REST generations waiting as one user may."""


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
    active: bool = False

    @property
    def fraction(self) -> float:
        if not self.active or not self.job_count or not self.steps:
            return 0.0
        return min(1.0, (self.job_no + self.step / self.steps) / self.job_count)


@dataclass
class Outcome:
    """The images a REST generation made (all of them, or those finished before an interrupt)."""

    results: list[ImageResult]
    interrupted: bool
    request: ImageRequest


@dataclass
class ApiWork:
    """Per-app state of the REST APIs: who runs what, their stop flags and their chosen model."""

    studio: Studio
    progress: dict[str, Progress] = field(default_factory=dict)
    stops: dict[str, list[threading.Event]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model_for(self, user: str) -> str:
        """The model a request without one uses: the user's API choice, the saved default, else the first."""
        return self.models.get(user) or load_defaults(self.studio.config).model or next(iter(image_models()))

    def generate(self, caller: Caller, request: ImageRequest) -> Outcome:
        """Run ``request`` for ``caller`` (waiting for the GPU like any job); an interrupt keeps what is done."""
        stop = threading.Event()
        with self._lock:
            if len(self.stops.get(caller.user, [])) >= self.studio.config.max_queued_per_user:
                limit = self.studio.config.max_queued_per_user
                raise TooManyWaiting(f"You already have {limit} request{'s' * (limit != 1)} waiting for the GPU, "
                                     "the most one user may queue. Try again when one has finished.")
            self.stops.setdefault(caller.user, []).append(stop)
            state = self.progress[caller.user] = Progress(job_count=request.batch, started=time.time(),
                                                          timestamp=time.strftime("%Y%m%d%H%M%S"), active=True)
        results: list[ImageResult] = []

        def on_step(index: int, step: int, total: int) -> None:
            state.job_no, state.step, state.steps = index, step, total

        def on_image(result: ImageResult) -> None:
            results.append(result)
            state.last_image = result.path

        try:
            generate_images(self.studio, request, on_step=on_step, on_image=on_image, stop=stop)
        except Cancelled:
            state.interrupted = True
            return Outcome(results, True, request)
        finally:
            state.active = False
            with self._lock:
                self.stops[caller.user].remove(stop)
        return Outcome(results, False, request)

    def interrupt(self, user: str) -> int:
        """Stop the user's running and waiting REST generations; returns how many were told."""
        with self._lock:
            flags = list(self.stops.get(user, []))
        for flag in flags:
            flag.set()
        return len(flags)

    def decode_upload(self, caller: Caller, data: str | bytes, kind: str) -> Path:
        """A base64 image (data URL or bare) or raw upload, checked and kept in the caller's inputs folder."""
        try:
            with Image.open(io.BytesIO(image_bytes(data, kind))) as picture:
                if picture.width * picture.height > MAX_INPUT_PIXELS:
                    raise InvalidInput(f"The {kind} is too large ({picture.width}x{picture.height}).")
                picture.load()
                return save_input(self.studio, caller.user, picture.copy(), kind.replace(" ", "-"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise InvalidInput(f"The {kind} is not a readable image ({type(error).__name__}).") from None


def image_bytes(data: str | bytes, kind: str) -> bytes:
    """The bytes of a base64 image (a data URL or bare base64); raw bytes as they are."""
    if isinstance(data, bytes):
        return data
    try:
        return base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"The {kind} is not valid base64.") from None


def file_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()
