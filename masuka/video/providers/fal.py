"""fal.ai queue: ``POST {queue}/{model}``, then the returned ``status_url`` and ``response_url``."""

from __future__ import annotations

from masuka.errors import ProviderError
from masuka.remote.http import KEY_REFUSED, ProviderUnavailable
from masuka.services import Service
from masuka.video.catalog import aspect_of, resolution_of, route
from masuka.video.providers.base import Clip, Provider, Status, image_data_uri

STATES = {"IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "completed"}


def queue_ref(model: str, request_id: str) -> dict:
    """The routes of an accepted queue request. Status and result routes keep only ``owner/alias`` of the model
    path; they are built on our base URL so a proxy in MASUKA_FAL_BASE_URL is used for them too."""
    requests = f"/{'/'.join(model.split('/')[:2])}/requests/{request_id}"
    return {"id": request_id, "status_url": f"{requests}/status", "response_url": requests,
            "cancel_url": f"{requests}/cancel"}


class FalQueue(Provider):
    # the key check asks for the status of a request id that cannot exist: 401/403 for a bad key, 404 for a good one
    service = Service("fal", "fal", ("FAL_KEY",), "MASUKA_FAL_BASE_URL", "https://queue.fal.run",
                      auth=("Authorization", "Key {key}"),
                      check_path="/fal-ai/fast-sdxl/requests/00000000-0000-0000-0000-000000000000/status",
                      check_ok=frozenset({400, 404, 422}))

    def submit(self, clip: Clip) -> dict:
        """The route's input: the fields its catalog entry lists (``fields``, or ``image_fields`` for the
        image-to-video route), so a new fal route is a catalog entry; without a list, every field below."""
        image = clip.image is not None
        model = route(clip.entry, clip.model, image)
        candidates: dict = {"aspect_ratio": aspect_of(clip.size), "resolution": resolution_of(clip.size)}
        if clip.entry.get("duration_format"):
            candidates["duration"] = clip.entry["duration_format"].format(clip.seconds)
        if clip.negative_prompt:
            candidates["negative_prompt"] = clip.negative_prompt
        if clip.audio is not None:
            candidates["generate_audio"] = clip.audio
        fields = clip.entry.get("image_fields" if image else "fields", candidates)
        body = {"prompt": clip.prompt, **{name: value for name, value in candidates.items() if name in fields}}
        if clip.image is not None:
            body["image_url"] = image_data_uri(clip.image)
        answer = self.caller.send(self.client, "POST", f"/{model}", create=True, json=body).json()
        return queue_ref(model, answer["request_id"])

    def poll(self, ref: dict) -> Status:
        body = self.caller.send(self.client, "GET", ref["status_url"]).json()
        state = STATES.get(body.get("status"), "running")
        if state == "queued":
            return Status(state, note=f"queue position {body.get('queue_position', '?')}")
        if state != "completed":
            return Status(state)
        if body.get("error"):
            return Status("failed", error=str(body["error"]))
        try:
            result = self.caller.send(self.client, "GET", ref["response_url"]).json()
        except ProviderError as error:
            return _result_error(error)
        video = result.get("video") or {}
        if not video.get("url"):
            return Status("failed", error=f"fal returned no video ({str(result)[:200]})")
        return Status("completed", progress=1.0, output=video["url"])

    def cancel(self, ref: dict) -> bool:
        self.caller.send(self.client, "PUT", ref["cancel_url"])
        return True


def _result_error(error: ProviderError) -> Status:
    """A completed request whose result is an error: as fal's client reads it, the job failed (the content checker
    flagged it, 422 with fal's ``detail``); it was accepted and made, so it is reported as the made job's failure
    in fal's own words. A refused key or an unreachable queue is not the job's (the caller waits for those)."""
    if isinstance(error, ProviderUnavailable) or error.status in KEY_REFUSED:
        raise error
    said = str(error).partition(f"(HTTP {error.status}): ")[2] or str(error)
    return Status("failed", error=f"{said} (HTTP {error.status})")
