"""fal.ai trainers: the dataset zip uploaded the way fal's own client does (a CDN token from fal's REST API,
then ``POST {cdn}/files/upload``), the job sent to the queue (``POST {queue}/{route}``), polled with logs, and
the ``diffusers_lora_file`` downloaded.

``MASUKA_FAL_BASE_URL`` moves the queue (as for video); ``MASUKA_FAL_STORAGE_URL`` (fal's REST API, default
``https://rest.fal.ai``) and ``MASUKA_FAL_CDN_URL`` (default ``https://v3.fal.media``) move the upload.
"""

from __future__ import annotations

from pathlib import Path

from masuka.config import env_url
from masuka.errors import ProviderError
from masuka.remote.http import KEY_REFUSED, ProviderUnavailable
from masuka.training.backends.base import RemoteTrainer, TrainRequest, TrainStatus
from masuka.video.providers.fal import STATES, FalQueue, queue_ref

STORAGE_URL = ("MASUKA_FAL_STORAGE_URL", "https://rest.fal.ai")
CDN_URL = ("MASUKA_FAL_CDN_URL", "https://v3.fal.media")


def _url(setting: tuple[str, str]) -> str:
    return env_url(*setting)


class FalTrainer(RemoteTrainer):
    service = FalQueue.service

    def upload(self, archive: Path) -> str:
        token = self.caller.send(self.client, "POST", f"{_url(STORAGE_URL)}/storage/auth/token",
                                 params={"storage_type": "fal-cdn-v3"}, json={}).json()
        headers = {"Authorization": f"{token['token_type']} {token['token']}", "Content-Type": "application/zip",
                   "X-Fal-File-Name": archive.name}
        answer = self.caller.send(self.bare, "POST", f"{_url(CDN_URL)}/files/upload", headers=headers,
                                  content=archive.read_bytes()).json()
        return answer["access_url"]

    def submit(self, request: TrainRequest) -> dict:
        route = request.entry["route"]
        fields = {request.entry.get("data_field", "images_data_url"): request.data_url, "steps": request.steps}
        if trigger_field := request.entry.get("trigger_field", "trigger_word"):  # null: captions carry it
            fields[trigger_field] = request.trigger
        body = {**request.entry.get("input", {}), **fields}
        answer = self.caller.send(self.client, "POST", f"/{route}", create=True, json=body).json()
        return queue_ref(route, answer["request_id"])

    def poll(self, ref: dict) -> TrainStatus:
        body = self.caller.send(self.client, "GET", ref["status_url"], params={"logs": 1}).json()
        logs = [str(line.get("message", line)) if isinstance(line, dict) else str(line)
                for line in body.get("logs") or []]
        state = STATES.get(body.get("status"), "running")
        if state == "queued":
            return TrainStatus(state, logs, note=f"queue position {body.get('queue_position', '?')}")
        if state != "completed":
            return TrainStatus(state, logs)
        if body.get("error"):
            return TrainStatus("failed", logs, error=str(body["error"]))
        try:
            result = self.caller.send(self.client, "GET", ref["response_url"]).json()
        except ProviderError as error:
            return self._unanswered(error, logs)
        weights = (result.get("diffusers_lora_file") or {}).get("url")
        if not weights:
            return TrainStatus("failed", logs, error=f"fal returned no LoRA file ({str(result)[:200]})")
        return TrainStatus("completed", logs, output=weights)

    @staticmethod
    def _unanswered(error: ProviderError, logs: list[str]) -> TrainStatus:
        """A completed job whose result cannot be had. As fal's client reads it, the result's error (a 4xx, or a
        5xx that outlasts the retries) is the job's; a 404 is a result fal no longer keeps; an unreachable or
        rate-limiting queue is waited for (:class:`ProviderUnavailable` goes on up), and so is a refused key (401,
        403: a key rotated since fal accepted the job), as a video job's is."""
        status = error.status
        if status in KEY_REFUSED:
            raise error
        if status == 404:
            raise ProviderError("fal no longer has the result of this training (it trained, but fal keeps results "
                                "only for a while): the LoRA cannot be downloaded any more.")
        if isinstance(error, ProviderUnavailable):
            if status is None or status < 500:
                raise error
            last = str(error).partition("(last: ")[2].removesuffix(").")
            return TrainStatus("failed", logs, error=f"its result kept answering {last}")
        return TrainStatus("failed", logs, error=str(error))

    def cancel(self, ref: dict) -> None:
        self.caller.send(self.client, "PUT", ref["cancel_url"])
