"""Loopback stand-ins for the remote video APIs, speaking each provider's documented shapes.

Used by the test suite and by ``python -m masuka bench load``, so load and fault figures need no paid API.

One :class:`FakeProvider` per API runs a :class:`~masuka.testing.http.FakeServer`; its routes for each provider
are the ``_<provider>`` methods, and it checks the auth headers the provider's service declares. What else differs
between the APIs is a row of :data:`APIS` (a new provider whose create request names its model in a JSON body
needs none: it adds its ``_<id>`` method only). Tests script
it: how many polls a job takes, whether jobs finish (``release``), faults injected per route (429 with retry
hints, 500s), failed jobs, expiring output URLs, truncated downloads; Veo refuses to extend a video it did not
make or at another size than 720p. It counts create requests and records
what it was sent (``requests``).
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from masuka.keys import service
from masuka.testing.http import Reply, Request, StandIn
from masuka.video.catalog import provider_entry

KEY = "sk-test-secret-key-1234"


def _model_in_body(_path: str, body: bytes) -> str:
    return str(_form_or_json(body).get("model", ""))


@dataclass(frozen=True)
class Api:
    """How one provider's API differs where :class:`FakeProvider`'s generic code looks."""

    #: the answer to a create request for a model that is gone (or not for this key); ``{model}`` is filled in
    gone: tuple[int, dict] = (404, {"error": {"message": "The model `{model}` does not exist."}})
    #: the model a create request asks for, from its path and body
    model: Callable[[str, bytes], str] = _model_in_body
    #: the provider whose ``_<id>`` route method serves it, when it speaks another's API (CometAPI: OpenAI's)
    routes: str = ""


_OPENAI = Api(gone=(404, {"error": {"message": "The model `{model}` does not exist or you do not have access to it.",
                                    "type": "invalid_request_error", "param": None, "code": "model_not_found"}}))
#: provider id -> its :class:`Api`; a provider not here gets the defaults
APIS = {
    "openai": _OPENAI,
    "comet": Api(gone=_OPENAI.gone, routes="openai"),
    "gemini": Api(gone=(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "models/{model} is not found "
                                        "for API version v1beta, or is not supported for predictLongRunning."}}),
                  model=lambda path, _body: path.split("/models/")[1].split(":")[0]),
    "runway": Api(gone=(400, {"error": "Model {model} is not supported: it was retired."})),
    "fal": Api(gone=(404, {"detail": "Application '{model}' not found"}), model=lambda path, _body: path.lstrip("/")),
}


class FakeProvider(StandIn):
    """A loopback server for ``kind`` (a provider id: openai, comet, gemini, runway, fal)."""

    def __init__(self, kind: str, video: bytes):
        super().__init__(kind)
        self.api = APIS.get(kind, Api())
        self.video = video
        self.polls = 0
        self.expire_urls = False
        self.broken_downloads = 0
        self.hang_create_s = 0.0
        self.gone_models: set[str] = set()  # create requests for these get the API's "model gone" answer
        self.finishing: int | None = None  # only the first N jobs may finish (a chain held mid-way)
        self.polled = threading.Event()

    # -- dispatch -------------------------------------------------------------------------------------
    def _serve(self, request: Request) -> Reply:
        status, headers, body = self.handle(request.method, request.path, request.headers, request.body)
        cut = headers.pop("x-truncate", None) is not None
        headers.setdefault("content-type", "application/json")
        return Reply(status, body, headers, cut=cut)

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        route = self._route(method, path)
        if route == "create" and self.hang_create_s:  # received, but the answer comes too late
            time.sleep(self.hang_create_s)
        with self._lock:
            if fault := self.take_fault(route):
                return fault.status, fault.headers, json.dumps(fault.body or {"error": {
                    "message": f"injected {fault.status}"}}).encode()
            if route != "download" and not self._authorised(headers):
                return 401, {}, json.dumps({"error": {"message": "Incorrect API key provided"}}).encode()
            if route == "create" and (model := self.api.model(path, body)) in self.gone_models:
                status, answer = self.api.gone
                return status, {}, json.dumps(answer).replace("{model}", model).encode()
            return getattr(self, f"_{self.api.routes or self.kind}")(route, method, path, body)

    def _route(self, method: str, path: str) -> str:
        if "/files/" in path or path.endswith("/content") or ":download" in path:
            return "download"
        if method == "POST" and not path.endswith("/cancel"):
            return "create"
        if method in ("DELETE", "PUT"):
            return "cancel"
        return "poll"

    def _authorised(self, headers: dict) -> bool:
        """Every header the provider's service declares (its key, and Runway's version) came as declared."""
        return all(headers.get(name.lower()) == value for name, value in service(self.kind).auth_headers(KEY).items())

    def _new_job(self, payload: dict) -> str:
        self.creates += 1
        job_id = f"job{next(self._ids)}"
        self.jobs[job_id] = {"polls": 0, "payload": payload, "cancelled": False, "token": 0}
        return job_id

    def _advance(self, job_id: str) -> tuple[str, float]:
        """(state, progress) after one more poll: queued, running, then completed/failed once released."""
        job = self.jobs[job_id]
        self.polls += 1
        self.polled.set()
        job["polls"] += 1
        job["token"] += 1
        if job["cancelled"]:
            return "cancelled", 0.0
        held = self.finishing is not None and list(self.jobs).index(job_id) >= self.finishing
        if job["polls"] >= self.polls_to_finish and self.release.is_set() and not held:
            return ("failed", 0.0) if self.fail_jobs else ("completed", 1.0)
        return ("queued", 0.0) if job["polls"] == 1 else ("running", 0.5)

    def _download(self, job_id: str) -> tuple[int, dict, bytes]:
        """The MP4; an expiring URL fails once (until polled again), broken downloads come cut short: first with
        an honest length, then with a length the body does not reach."""
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {}, b'{"error": "not found"}'
        if self.expire_urls and not job.get("renewed"):
            job["renewed"] = True
            return 403, {}, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        headers = {"content-type": "video/mp4"}
        if self.broken_downloads:
            self.broken_downloads -= 1
            if self.broken_downloads % 2:
                headers["x-truncate"] = "1"
            return 200, headers, self.video[: len(self.video) // 2] if "x-truncate" not in headers else self.video
        return 200, headers, self.video

    # -- OpenAI Videos API (and CometAPI) ---------------------------------------------------------------
    def _openai(self, route: str, method: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
        if route == "create":
            payload = _form_or_json(body)
            if not _frame_fits(payload):
                return 400, {}, _json({"error": {"message": "Inpaint image must match the requested width and height",
                                                 "type": "invalid_request_error", "param": None, "code": None}})
            job_id = self._new_job(payload)
            return 200, {}, _json({"id": f"video_{job_id}", "object": "video", "status": "queued", "progress": 0,
                                   "model": payload.get("model"), "seconds": payload.get("seconds")})
        if path == "/v1/models":  # the models the key may use (what a key check asks)
            return 200, {}, _json({"object": "list", "data": [
                {"id": model, "object": "model", "created": 1759000000, "owned_by": "system"}
                for model in provider_entry(self.kind)["models"]]})
        job_id = path.split("/")[3].removeprefix("video_")
        if job_id not in self.jobs:
            return 404, {}, _json({"error": {"message": "Video not found", "type": "invalid_request_error"}})
        if route == "cancel":
            self.cancels += 1
            self.jobs[job_id]["cancelled"] = True
            return 200, {}, _json({"id": f"video_{job_id}", "deleted": True})
        if route == "download":
            return self._download(job_id)
        state, progress = self._advance(job_id)
        status = {"queued": "queued", "running": "in_progress"}.get(state, state)
        error = {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."}
        return 200, {"openai-poll-after-ms": "20"}, _json({
            "id": f"video_{job_id}", "object": "video", "status": status, "progress": int(progress * 100),
            "error": error if state == "failed" else None})

    # -- Gemini API (Veo) ------------------------------------------------------------------------------
    def _gemini(self, route: str, method: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
        if route == "create":
            model = re.match(r"/v1beta/models/([^:]+):predictLongRunning", path).group(1)
            payload = json.loads(body)
            extended = (payload["instances"][0].get("video") or {}).get("uri")
            if extended is not None and not self._veo_output(extended, payload["parameters"]):
                return 400, {}, _json({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                       "Only 720p videos generated by Veo can be extended."}})
            job_id = self._new_job(payload)
            return 200, {}, _json({"name": f"models/{model}/operations/{job_id}"})
        if route == "download":
            match = re.search(r"/files/(\w+):download", path)
            if match:  # the API answers with a redirect to storage on another host
                return 302, {"location": f"{self.other_origin}/files/{match.group(1)}.mp4"}, b""
            return self._download(path.split("/files/")[1].split(".")[0])
        job_id = path.rsplit("/", 1)[1]
        state, _progress = self._advance(job_id)
        name = path.removeprefix("/v1beta/")
        if state in ("queued", "running"):
            return 200, {}, _json({"name": name, "done": False})
        if state == "failed":
            return 200, {}, _json({"name": name, "done": True, "error": {
                "code": 3, "message": "The prompt was blocked by safety filters.", "status": "INVALID_ARGUMENT"}})
        uri = f"{self.base}/v1beta/files/{job_id}:download?alt=media"
        return 200, {}, _json({"name": name, "done": True, "response": {"@type": "type.googleapis.com/google.ai."
                               "generativelanguage.v1beta.PredictLongRunningResponse", "generateVideoResponse": {
                                   "generatedSamples": [{"video": {"uri": uri}}]}}})

    def _veo_output(self, uri: str, parameters: dict) -> bool:
        """Whether ``uri`` is a finished clip of this server and the extension asks for 720p."""
        match = re.search(r"/files/(\w+):download", uri)
        return bool(match and match.group(1) in self.jobs and parameters.get("resolution") == "720p")

    # -- Runway ----------------------------------------------------------------------------------------
    def _runway(self, route: str, method: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
        if route == "create":
            payload = json.loads(body)
            if path == "/v1/image_to_video" and not str(payload.get("promptImage", "")).startswith("data:image/"):
                return 400, {}, _json({"error": "promptImage must be an HTTPS URL or a data URI"})
            return 200, {}, _json({"id": self._new_job({**payload, "route": path})})
        if route == "download":
            return self._download(path.split("/files/")[1].split(".")[0])
        job_id = path.rsplit("/", 1)[1]
        if job_id not in self.jobs:
            return 404, {}, _json({"error": "Task not found"})
        if route == "cancel":
            self.cancels += 1
            self.jobs[job_id]["cancelled"] = True
            return 204, {}, b""
        state, progress = self._advance(job_id)
        task = {"id": job_id, "createdAt": "2026-11-21T00:00:00.000Z"}
        if state == "queued":
            task["status"] = "THROTTLED" if self.jobs[job_id]["polls"] == 1 else "PENDING"
        elif state == "running":
            task.update(status="RUNNING", progress=progress)
        elif state == "failed":
            task.update(status="FAILED", failure="The content was flagged.", failureCode="SAFETY.INPUT.TEXT")
        elif state == "cancelled":
            task["status"] = "CANCELLED"
        else:
            task.update(status="SUCCEEDED",
                        output=[f"{self.other_origin}/files/{job_id}.mp4?token={self.jobs[job_id]['token']}"])
        return 200, {}, _json(task)

    # -- fal.ai queue ----------------------------------------------------------------------------------
    def _fal(self, route: str, method: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
        if route == "create":
            job_id = self._new_job({**json.loads(body), "model": path.lstrip("/")})
            app = "/".join(path.lstrip("/").split("/")[:2])
            base = f"{self.base}/{app}/requests/{job_id}"
            return 200, {}, _json({"request_id": job_id, "status_url": f"{base}/status", "response_url": base,
                                   "cancel_url": f"{base}/cancel", "status": "IN_QUEUE", "queue_position": 0})
        if route == "download":
            return self._download(path.split("/files/")[1].split(".")[0])
        match = re.match(r"/[^/]+/[^/]+/requests/(\w+)(/status|/cancel)?$", path)
        if not match or match.group(1) not in self.jobs:
            return 404, {}, _json({"detail": "Request not found"})
        job_id, tail = match.group(1), match.group(2)
        if route == "cancel":
            self.cancels += 1
            self.jobs[job_id]["cancelled"] = True
            return 202, {}, _json({"status": "CANCELLATION_REQUESTED"})
        if tail == "/status":
            state, _progress = self._advance(job_id)
            if state == "queued":
                return 202, {}, _json({"status": "IN_QUEUE", "queue_position": 2})
            if state == "running":
                return 202, {}, _json({"status": "IN_PROGRESS", "logs": []})
            self.jobs[job_id]["final"] = state
            return 200, {}, _json({"status": "COMPLETED", "logs": []})
        if self.jobs[job_id].get("final") == "failed":
            return 422, {}, _json({"detail": [{"loc": ["body", "prompt"], "msg": "flagged by the content checker",
                                               "type": "content_policy_violation"}]})
        token = self.jobs[job_id]["token"]
        return 200, {}, _json({"video": {"url": f"{self.other_origin}/files/{job_id}.mp4?token={token}",
                                         "content_type": "video/mp4", "file_name": "output.mp4"}, "seed": 1})


def make_mp4(path: Path, frames: int = 8, size: int = 64, color: int = 0) -> Path:
    """A real H.264 MP4 written with the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg
    import numpy as np

    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=8, macro_block_size=16)
    writer.send(None)
    for index in range(frames):
        frame = np.full((size, size, 3), (color + index * 20) % 255, dtype=np.uint8)
        frame[:, : size // 2, 0] = 255 - index * 10
        writer.send(frame)
    writer.close()
    return path


def _json(value: dict) -> bytes:
    return json.dumps(value).encode()


def _frame_fits(payload: dict) -> bool:
    """Whether a Sora request's first frame (``input_reference``) has the video's size, as the API demands."""
    frame = payload.get("input_reference")
    if not isinstance(frame, bytes) or not str(payload.get("model", "")).startswith("sora"):
        return True
    with Image.open(io.BytesIO(frame)) as picture:
        return "x".join(map(str, picture.size)) == payload.get("size")


def _form_or_json(body: bytes) -> dict:
    if body.startswith(b"{"):
        return json.loads(body)
    fields = {}
    for name, value in re.findall(rb'name="([^"]+)"(?:; filename="[^"]*")?\r\n(?:Content-Type: [^\r]+\r\n)?\r\n'
                                  rb"(.*?)\r\n--", body, re.S):
        fields[name.decode()] = value.decode() if name != b"input_reference" else value
    return fields

