"""Loopback stand-ins for the remote LoRA trainers: fal (REST token, CDN upload, queue) and Replicate (files,
trainings), speaking each API's documented shapes on one :class:`~masuka.testing.http.FakeServer`.

Tests script them like the video stand-ins: how many polls a job takes, whether jobs finish (``release``),
jobs that fail at the service, faults per route (429 with ``Retry-After``, 5xx), downloads cut short. They
count create requests, remember what was uploaded and sent, and serve a small real Flux LoRA.
"""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta

from masuka.keys import service
from masuka.testing.http import Reply, Request, StandIn

KEY = "r8_test-secret-key-5678"
CDN_TOKEN = "cdn-token-0001"


def tiny_flux_lora() -> bytes:
    """A few-kilobyte LoRA with Flux transformer key names, as a trainer would return it."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {f"transformer.single_transformer_blocks.0.attn.to_{name}.lora_{part}.weight":
               rng.standard_normal(shape).astype(np.float16)
               for name in ("q", "k") for part, shape in (("A", (4, 32)), ("B", (32, 4)))}
    return save(tensors, metadata={"format": "pt"})


class FakeTrainer(StandIn):
    """A loopback server for ``kind`` (``fal`` or ``replicate``)."""

    polls_to_finish = 3

    def __init__(self, kind: str, lora: bytes | None = None):
        super().__init__(kind)
        self.lora = lora or tiny_flux_lora()
        self.cut_downloads = 0
        self.uploads: list[bytes] = []
        self.payloads: list[dict] = []

    # -- dispatch -------------------------------------------------------------------------------------
    def _serve(self, request: Request) -> Reply:
        route = self._route(request)
        with self._lock:
            if fault := self.take_fault(route):
                return Reply(fault.status, fault.body or {"detail": f"injected {fault.status}"}, dict(fault.headers))
            if route == "download":
                return self._download(request.path.rsplit("/", 1)[1])
            if not self._authorised(route, request.headers):
                return Reply(401, {"detail": "Invalid API key"})
            return getattr(self, f"_{self.kind}")(route, request)

    def _route(self, request: Request) -> str:
        path, method = request.path, request.method
        if path in ("/files/upload", "/v1/files"):
            return "upload"
        if path.startswith("/files/"):
            return "download"
        if path.startswith("/storage/"):
            return "token"
        if path.endswith("/cancel"):
            return "cancel"
        if method == "POST":
            return "create"
        if path.startswith("/v1/models/"):
            return "model"
        return "result" if self.kind == "fal" and not path.endswith("/status") else "poll"

    def _authorised(self, route: str, headers: dict) -> bool:
        if route == "upload" and self.kind == "fal":
            return headers.get("authorization") == f"Bearer {CDN_TOKEN}"
        return all(headers.get(k.lower()) == v for k, v in service(self.kind).auth_headers(KEY).items())

    def _new_job(self, payload: dict) -> str:
        self.creates += 1
        self.payloads.append(payload)
        job_id = f"job{next(self._ids)}"
        self.jobs[job_id] = {"polls": 0, "cancelled": False}
        return job_id

    def _advance(self, job_id: str) -> str:
        job = self.jobs[job_id]
        job["polls"] += 1
        if job["cancelled"]:
            return "cancelled"
        if job["polls"] >= self.polls_to_finish and self.release.is_set():
            return "failed" if self.fail_jobs else "completed"
        return "queued" if job["polls"] == 1 else "running"

    def _download(self, name: str) -> Reply:
        body = self.lora if name.endswith(".safetensors") else _tar(self.lora)
        if self.cut_downloads:
            self.cut_downloads -= 1
            return Reply(200, body, {"Content-Type": "application/octet-stream"}, cut=True)
        return Reply(200, body, {"Content-Type": "application/octet-stream"})

    # -- fal: REST token, CDN upload, queue --------------------------------------------------------------
    def _fal(self, route: str, request: Request) -> Reply:
        if route == "token":
            expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            return Reply(200, {"token": CDN_TOKEN, "token_type": "Bearer", "base_url": self.base,
                               "expires_at": expires})
        if route == "upload":
            self.uploads.append(request.body)
            return Reply(200, {"access_url": f"{self.other_origin}/files/dataset-{len(self.uploads)}.zip"})
        if route == "create":
            job_id = self._new_job({**request.json(), "route": request.path.lstrip("/")})
            requests = f"{self.base}/{'/'.join(request.path.lstrip('/').split('/')[:2])}/requests/{job_id}"
            return Reply(200, {"request_id": job_id, "status": "IN_QUEUE", "queue_position": 0,
                               "status_url": f"{requests}/status", "response_url": requests,
                               "cancel_url": f"{requests}/cancel"})
        job_id = request.path.split("/requests/")[1].split("/")[0]
        if job_id not in self.jobs:
            return Reply(404, {"detail": "Request not found"})
        if route == "cancel":
            self.cancels += 1
            self.jobs[job_id]["cancelled"] = True
            return Reply(202, {"status": "CANCELLATION_REQUESTED"})
        if route == "result":
            if self.jobs[job_id].get("final") == "failed":
                return Reply(422, {"detail": [{"loc": ["body", "images_data_url"], "msg": "too few images",
                                               "type": "value_error"}]})
            return Reply(200, {"diffusers_lora_file": {"url": f"{self.other_origin}/files/{job_id}.safetensors",
                                                       "content_type": "application/octet-stream",
                                                       "file_name": "pytorch_lora_weights.safetensors"},
                               "config_file": {"url": f"{self.other_origin}/files/{job_id}.json"}})
        state = self._advance(job_id)
        logs = [{"message": f"step {n}/{self.payloads[-1]['steps']}", "level": "INFO"}
                for n in range(1, self.jobs[job_id]["polls"])]
        if state in ("queued", "running"):
            return Reply(202, {"status": "IN_QUEUE" if state == "queued" else "IN_PROGRESS", "queue_position": 1,
                               "logs": logs})
        self.jobs[job_id]["final"] = state
        return Reply(200, {"status": "COMPLETED", "logs": logs})

    # -- Replicate: files, models, trainings -------------------------------------------------------------
    def _replicate(self, route: str, request: Request) -> Reply:
        if route == "upload":
            self.uploads.append(request.body)
            return Reply(201, {"id": "file1", "name": "dataset.zip", "content_type": "application/zip",
                               "size": len(request.body), "etag": "e1", "checksums": {}, "metadata": {},
                               "created_at": "2026-12-04T00:00:00Z", "expires_at": "2026-12-05T00:00:00Z",
                               "urls": {"get": f"{self.other_origin}/files/dataset.zip"}})
        if route == "model":  # the trainer (for its latest version), or the destination checked before the upload
            owner, name = request.path.split("/")[3:5]
            return Reply(200, {"owner": owner, "name": name, "latest_version": {"id": "v42"}})
        if route == "create":
            job_id = self._new_job({**request.json(), "path": request.path})
            return Reply(201, {"id": job_id, "status": "starting", "model": "ostris/flux-dev-lora-trainer",
                               "version": request.path.split("/versions/")[1].split("/")[0], "input": {}, "urls": {
                "get": f"{self.base}/v1/trainings/{job_id}", "cancel": f"{self.base}/v1/trainings/{job_id}/cancel"}})
        job_id = request.path.split("/")[3]
        if job_id not in self.jobs:
            return Reply(404, {"detail": "Not found."})
        if route == "cancel":
            self.cancels += 1
            self.jobs[job_id]["cancelled"] = True
            return Reply(200, {"id": job_id, "status": "canceled"})
        state = self._advance(job_id)
        body = {"id": job_id, "logs": "\n".join(self._replicate_logs(job_id)),
                "status": {"queued": "starting", "running": "processing", "completed": "succeeded",
                           "failed": "failed", "cancelled": "canceled"}[state]}
        if state == "failed":
            body["error"] = "CUDA out of memory on the trainer"
        if state == "completed":
            body["output"] = {"version": "you/model:abc", "weights": f"{self.other_origin}/files/{job_id}.tar"}
        return Reply(200, body)

    def _replicate_logs(self, job_id: str) -> list[str]:
        """What ostris/flux-dev-lora-trainer (ai-toolkit) logs: a loading bar, then the training's tqdm bar."""
        steps = self.payloads[-1]["input"]["steps"]
        lines = ["Loading checkpoint shards: 100%|##########| 2/2 [00:01<00:00,  1.52it/s]"]
        for n in range(1, self.jobs[job_id]["polls"]):
            lines.append(f"flux_train_replicate:  {100 * n // steps}%|#         | {n}/{steps} "
                         f"[00:{n:02d}<00:{steps - n:02d},  1.00it/s, lr: 4.0e-04 loss: 3.5e-01]")
        return lines


def _tar(lora: bytes) -> bytes:
    """Replicate's weights: a tar holding the LoRA (and a config)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("output/flux_train_replicate/lora.safetensors", lora), ("output/config.yaml", b"a: 1")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
