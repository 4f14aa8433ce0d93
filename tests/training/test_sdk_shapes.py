"""What MASUKA sends to fal and Replicate, compared with what their official SDKs (``fal-client``,
``replicate``) send for the same upload and training, both captured on a loopback stand-in."""

from __future__ import annotations

import io
import json

import fal_client
import replicate

from masuka.testing.training import KEY, FakeTrainer

from .conftest import add_dataset
from .test_remote import options, train, trainer  # noqa: F401  (the fixture is used by name)


def _shape(request) -> tuple:
    """Method, path, the headers that carry meaning, and the JSON keys of the body."""
    headers = {k: request.headers.get(k) for k in ("authorization", "content-type", "x-fal-file-name")
               if request.headers.get(k)}
    if headers.get("content-type", "").startswith("multipart/form-data"):
        headers["content-type"] = "multipart/form-data"
    body = json.loads(request.body) if request.body.startswith(b"{") else None
    return request.method, request.path, headers, sorted(body) if isinstance(body, dict) else None


def test_fal_upload_and_submit_match_fal_client(studio, trainer, monkeypatch):  # noqa: F811
    ours = trainer("fal")
    add_dataset(studio)
    train(studio, "fal")
    theirs = FakeTrainer("fal")
    try:
        for name in ("REST_URL", "CDN_URL"):
            monkeypatch.setattr(fal_client.client, name, theirs.base)
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", theirs.base + "/")
        client = fal_client.SyncClient(key=KEY)
        url = client.upload(ours.uploads[0], "application/zip", file_name="dataset.zip")
        arguments = {k: v for k, v in ours.payloads[0].items() if k != "route"}
        client.submit("fal-ai/flux-lora-fast-training", arguments={**arguments, "images_data_url": url})
    finally:
        theirs.close()
    sdk = [_shape(r) for r in theirs.requests]
    masuka = [_shape(r) for r in ours.requests[:3]]
    assert [s[:2] for s in masuka] == [s[:2] for s in sdk] == [
        ("POST", "/storage/auth/token"), ("POST", "/files/upload"), ("POST", "/fal-ai/flux-lora-fast-training")]
    assert theirs.requests[0].query == ours.requests[0].query == {"storage_type": ["fal-cdn-v3"]}
    assert masuka[1][2] == {**sdk[1][2], "x-fal-file-name": "dataset.zip"}
    assert masuka[2][2]["authorization"] == sdk[2][2]["authorization"] == f"Key {KEY}"
    assert masuka[2][3] == sdk[2][3] and theirs.uploads == ours.uploads


def test_replicate_file_and_training_match_the_replicate_client(studio, trainer):  # noqa: F811
    ours = trainer("replicate")
    add_dataset(studio)
    train(studio, "replicate")
    theirs = FakeTrainer("replicate")
    try:
        client = replicate.Client(api_token=KEY, base_url=theirs.base)
        url = client.files.create(io.BytesIO(b"PK\x05\x06" + bytes(18)), filename="dataset.zip",
                                  content_type="application/zip").urls["get"]
        sent = ours.payloads[0]
        client.trainings.create(version="ostris/flux-dev-lora-trainer:v42",
                                input={**sent["input"], "input_images": url}, destination=sent["destination"])
    finally:
        theirs.close()
    ours_upload, ours_create = [r for r in ours.requests if r.method == "POST"][:2]
    sdk_upload, sdk_create = [r for r in theirs.requests if r.method == "POST"]
    assert (ours_upload.path, _shape(ours_upload)[2]) == (sdk_upload.path, _shape(sdk_upload)[2])
    assert b'name="content"; filename="dataset.zip"' in ours_upload.body
    assert b'name="content"; filename="dataset.zip"' in sdk_upload.body
    assert _shape(ours_create) == _shape(sdk_create)
    assert json.loads(ours_create.body)["input"].keys() == json.loads(sdk_create.body)["input"].keys()
