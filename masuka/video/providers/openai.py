"""OpenAI Videos API (Sora 2): ``POST /v1/videos``, ``GET /v1/videos/{id}``, ``GET .../content``."""

from __future__ import annotations

from pathlib import Path

from masuka.image.copies import fitted_copy
from masuka.services import Service
from masuka.video.catalog import parse_size
from masuka.video.providers.base import Clip, Provider, Status, image_mime

STATES = {"queued": "queued", "in_progress": "running", "completed": "completed", "failed": "failed",
          "cancelled": "cancelled"}


class OpenAIVideos(Provider):
    """The ``/v1/videos`` shape; :mod:`comet` reuses it at another base URL."""

    service = Service("openai", "OpenAI", ("OPENAI_API_KEY",), "MASUKA_OPENAI_BASE_URL", "https://api.openai.com",
                      check_path="/v1/models")
    frame_at_size = True

    def wire_size(self, clip: Clip) -> str:
        return (clip.entry.get("wire_sizes") or {}).get(clip.size, clip.size)

    def submit(self, clip: Clip) -> dict:
        """Always multipart/form-data, with or without a first frame, as the official SDK sends it."""
        fields = {"model": clip.model, "prompt": clip.prompt, "seconds": str(clip.seconds),
                  "size": self.wire_size(clip)}
        parts: dict = {name: (None, value) for name, value in fields.items()}
        if clip.image is not None:
            suffix, frame = fitted_copy(clip.image, parse_size(clip.size))
            name = clip.image.with_suffix(suffix).name
            parts["input_reference"] = (name, frame, image_mime(Path(name)))
        response = self.caller.send(self.client, "POST", "/v1/videos", create=True, files=parts)
        return {"id": response.json()["id"]}

    def poll(self, ref: dict) -> Status:
        response = self.caller.send(self.client, "GET", f"/v1/videos/{ref['id']}")
        body = response.json()
        error = body.get("error") or {}
        after = response.headers.get("openai-poll-after-ms")
        progress = body.get("progress")
        return Status(state=STATES.get(body.get("status"), "running"),
                      progress=None if progress is None else float(progress) / 100,
                      output=f"/v1/videos/{ref['id']}/content" if body.get("status") == "completed" else None,
                      error=(error.get("message") or error.get("code")) if error else None,
                      poll_after=float(after) / 1000 if after else None)

    def cancel(self, ref: dict) -> bool:
        """The API has no cancel: deleting the video is the closest (it stops it being kept)."""
        self.caller.send(self.client, "DELETE", f"/v1/videos/{ref['id']}")
        return True

