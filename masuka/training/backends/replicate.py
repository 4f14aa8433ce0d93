"""Replicate trainings: your destination model checked (``GET /v1/models/{owner}/{name}``), the dataset zip uploaded
to ``/v1/files``, the trainer's latest version looked up, the training created
(``/v1/models/{owner}/{name}/versions/{version}/trainings``) with that destination, polled with its logs,
cancelled with ``/v1/trainings/{id}/cancel``; the weights tar is unpacked.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from masuka.errors import InvalidInput, ProviderError
from masuka.services import Service
from masuka.training.backends.base import RemoteTrainer, TrainRequest, TrainStatus

STATES = {"starting": "queued", "processing": "running", "succeeded": "completed", "failed": "failed",
          "canceled": "cancelled"}


class ReplicateTrainer(RemoteTrainer):
    service = Service("replicate", "Replicate", ("REPLICATE_API_TOKEN",), "MASUKA_REPLICATE_BASE_URL",
                      "https://api.replicate.com", check_path="/v1/account")
    takes = ("rank", "lr", "resolution")
    needs_destination = True

    def prepare(self, destination: str) -> None:
        """The destination must be a model of yours that exists: Replicate refuses the training otherwise."""
        try:
            self.caller.send(self.client, "GET", f"/v1/models/{destination}")
        except ProviderError as error:
            if error.status != 404:
                raise
            raise InvalidInput(f"Replicate has no model {destination!r} to receive the LoRA: create it on Replicate "
                               "(owner/name, yours) and give it as the destination.") from None

    def upload(self, archive: Path) -> str:
        files = {"content": (archive.name, archive.read_bytes(), "application/zip")}
        return self.caller.send(self.client, "POST", "/v1/files", files=files).json()["urls"]["get"]

    def submit(self, request: TrainRequest) -> dict:
        if "/" not in request.destination:
            raise InvalidInput("Replicate needs a destination model of yours (owner/name) that receives the "
                               "trained LoRA: create it on Replicate and give it as the destination.")
        model = request.entry["model"]
        version = self.caller.send(self.client, "GET", f"/v1/models/{model}").json()["latest_version"]["id"]
        inputs = {**request.entry.get("input", {}), "input_images": request.data_url,
                  "trigger_word": request.trigger, "steps": request.steps, "lora_rank": request.rank}
        if request.lr is not None:
            inputs["learning_rate"] = request.lr
        if request.resolution is not None:
            inputs["resolution"] = str(request.resolution)
        answer = self.caller.send(self.client, "POST", f"/v1/models/{model}/versions/{version}/trainings",
                                  create=True, json={"input": inputs, "destination": request.destination}).json()
        return {"id": answer["id"], "version": version}

    def poll(self, ref: dict) -> TrainStatus:
        body = self.caller.send(self.client, "GET", f"/v1/trainings/{ref['id']}").json()
        logs = (body.get("logs") or "").splitlines()
        state = STATES.get(body.get("status"), "running")
        if state == "failed":
            return TrainStatus(state, logs, error=str(body.get("error") or "the training failed"))
        if state != "completed":
            return TrainStatus(state, logs)
        weights = (body.get("output") or {}).get("weights")
        if not weights:
            return TrainStatus("failed", logs, error=f"Replicate returned no weights ({str(body)[:200]})")
        return TrainStatus(state, logs, output=weights)

    def cancel(self, ref: dict) -> None:
        self.caller.send(self.client, "POST", f"/v1/trainings/{ref['id']}/cancel")

    def lora_file(self, downloaded: Path, folder: Path) -> Path:
        """The ``.safetensors`` inside the weights tar (extracted safely: no links, no paths outside)."""
        try:
            with tarfile.open(downloaded) as archive:
                member = next((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".safetensors")),
                              None)
                if member is None:
                    raise ProviderError("Replicate's weights hold no .safetensors file.")
                member.name = Path(member.name).name
                archive.extract(member, folder, filter="data")
        except tarfile.TarError as error:
            raise ProviderError(f"Replicate's weights are not a readable tar: {error}") from None
        return folder / member.name
