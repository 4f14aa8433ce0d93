"""Runway: ``/v1/image_to_video`` or ``/v1/text_to_video``, then ``/v1/tasks/{id}``; cancel with DELETE."""

from __future__ import annotations

from masuka.services import Service
from masuka.video.catalog import parse_size
from masuka.video.providers.base import Clip, Provider, Status, image_data_uri

API_VERSION = "2024-11-06"
STATES = {"PENDING": "queued", "THROTTLED": "queued", "RUNNING": "running", "SUCCEEDED": "completed",
          "FAILED": "failed", "CANCELLED": "cancelled"}


class RunwayTasks(Provider):
    service = Service("runway", "Runway", ("RUNWAYML_API_SECRET",), "MASUKA_RUNWAY_BASE_URL",
                      "https://api.dev.runwayml.com", headers={"X-Runway-Version": API_VERSION},
                      check_path="/v1/organization")

    def submit(self, clip: Clip) -> dict:
        width, height = parse_size(clip.size)
        body: dict = {"model": clip.model, "promptText": clip.prompt, "ratio": f"{width}:{height}",
                      "duration": clip.seconds}
        route = "/v1/text_to_video"
        if clip.image is not None:
            body["promptImage"] = image_data_uri(clip.image)
            route = "/v1/image_to_video"
        if clip.source_video is not None:  # Aleph: the output follows the source clip's length
            body = {"model": clip.model, "promptText": clip.prompt, "ratio": body["ratio"],
                    "videoUri": image_data_uri(clip.source_video)}
            route = "/v1/video_to_video"
        response = self.caller.send(self.client, "POST", route, create=True, json=body)
        return {"id": _unwrap(response.json())["id"]}

    def poll(self, ref: dict) -> Status:
        task = _unwrap(self.caller.send(self.client, "GET", f"/v1/tasks/{ref['id']}").json())
        status = task.get("status", "PENDING")
        raw = task.get("output")
        outputs = [url for url in ([raw] if isinstance(raw, str) else raw if isinstance(raw, list) else [])
                   if isinstance(url, str) and url]
        if status == "SUCCEEDED" and not outputs:  # nothing to download: polling on would never end
            return Status("failed", error=f"Runway returned no video (task {ref['id']} SUCCEEDED without an output)")
        return Status(state=STATES.get(status, "running"), progress=task.get("progress"),
                      output=outputs[0] if outputs else None,
                      error=task.get("failure") and f"{task['failure']} ({task.get('failureCode', 'failed')})",
                      note="waiting for a free slot on your Runway account" if status == "THROTTLED" else "")

    def cancel(self, ref: dict) -> bool:
        self.caller.send(self.client, "DELETE", f"/v1/tasks/{ref['id']}")
        return True


def _unwrap(body: dict) -> dict:
    """Proxies may wrap the task as ``{"code", "message", "data": {...}}``."""
    return body["data"] if isinstance(body.get("data"), dict) else body
