"""Google Gemini API, Veo 3 / 3.1: ``models/{model}:predictLongRunning``, then poll the operation.

Field names follow google-genai 2.x (``instances[0].image / lastFrame / referenceImages / video``,
``parameters.aspectRatio / durationSeconds / resolution / negativePrompt``). Its Gemini API mode refuses
``generateAudio`` (Veo there always makes sound), so MASUKA offers no sound switch for these models. A clip is
extended by sending Veo's own earlier output as ``instances[0].video.uri``; the answer is the whole video.
"""

from __future__ import annotations

from pathlib import Path

from masuka.services import Service
from masuka.video.catalog import aspect_of, resolution_of
from masuka.video.providers.base import Clip, Provider, Status, image_base64


class GeminiVeo(Provider):
    service = Service("gemini", "Gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "MASUKA_GEMINI_BASE_URL",
                      "https://generativelanguage.googleapis.com", auth=("x-goog-api-key", "{key}"),
                      check_path="/v1beta/models?pageSize=1")

    def submit(self, clip: Clip) -> dict:
        instance: dict = {"prompt": clip.prompt}
        if clip.extend:  # continue Veo's own earlier clip: the answer is the whole, longer video
            instance["video"] = {"uri": clip.extend}
            parameters: dict = {"resolution": resolution_of(clip.size)}
            if clip.negative_prompt:
                parameters["negativePrompt"] = clip.negative_prompt
            return self._create(clip.model, instance, parameters)
        if clip.image is not None:
            instance["image"] = _inline(clip.image)
        if clip.last_frame is not None:
            instance["lastFrame"] = _inline(clip.last_frame)
        if clip.references:
            instance["referenceImages"] = [{"image": _inline(path), "referenceType": "ASSET"}
                                           for path in clip.references]
        parameters = {"aspectRatio": aspect_of(clip.size), "durationSeconds": clip.seconds,
                      "resolution": resolution_of(clip.size)}
        if clip.negative_prompt:
            parameters["negativePrompt"] = clip.negative_prompt
        return self._create(clip.model, instance, parameters)

    def _create(self, model: str, instance: dict, parameters: dict) -> dict:
        response = self.caller.send(self.client, "POST", f"/v1beta/models/{model}:predictLongRunning",
                                    create=True, json={"instances": [instance], "parameters": parameters})
        return {"id": response.json()["name"]}

    def poll(self, ref: dict) -> Status:
        body = self.caller.send(self.client, "GET", f"/v1beta/{ref['id']}").json()
        if not body.get("done"):
            return Status("running", progress=(body.get("metadata") or {}).get("progress"))
        if body.get("error"):
            return Status("failed", error=body["error"].get("message") or body["error"].get("status"))
        samples = (((body.get("response") or {}).get("generateVideoResponse") or {}).get("generatedSamples") or [])
        if not samples:
            filtered = ((body.get("response") or {}).get("generateVideoResponse") or {}).get(
                "raiMediaFilteredReasons")
            return Status("failed", error="; ".join(filtered or []) or "Veo returned no video.")
        return Status("completed", progress=1.0, output=samples[0]["video"]["uri"])


def _inline(path: Path) -> dict:
    mime, data = image_base64(path)
    return {"bytesBase64Encoded": data, "mimeType": mime}
