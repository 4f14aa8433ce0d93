"""Hostile input at the Datasets, Video, Train, Models, History and Settings endpoints (the image endpoints are
in test_hostile_inputs.py): a clear refusal, nothing written outside the data dir, no secret echoed."""

from __future__ import annotations

import zipfile

import pytest
from gradio_client import Client, handle_file

from tests.reliability.test_hostile_inputs import assert_clear_refusal, assert_still_serving, outside_files

NOT_UPLOADED = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
CHOICE = "must be one of: "

CASES = {
    "dataset name empty": ("/create_dataset", ("", "zorp"), "Name the dataset"),
    "dataset name with control characters": ("/create_dataset", ("bad\x00name", "zorp"), "Name the dataset"),
    "dataset name gigantic": ("/create_dataset", ("x" * 5000, "zorp"), "Name the dataset"),
    "dataset negative size": ("/create_dataset", ("neg", "t", "{trigger}", -5), "between 64 and 4096"),
    "dataset unknown crop": ("/create_dataset", ("crop", "t", "{trigger}", 512, "evil"), CHOICE),
    "add images to a missing dataset": ("/add_images", ("nope", ["{png}"]), "No dataset 'nope'"),
    "export in an invented format": ("/export_dataset", ("mine", "../../x"), CHOICE),
    "caption with a system folder as model": ("/caption_dataset", ("mine", "/etc"), "not a Florence-2 or BLIP-2"),
    "caption with a traversal model id": ("/caption_dataset", ("mine", "../../x"), "does not exist"),
    "delete a missing dataset": ("/delete_dataset", ("nope",), "No dataset"),
    "delete a missing image": ("/delete_image", (999999,), "No image"),
    "video unknown provider": ("/generate_video", ("a", "evil", "m", 4, "1280x720", None, "", []), CHOICE),
    "video local model traversal": ("/generate_video", ("a", "local", "/etc/../etc", 4, "832x480", None, "", []),
                                    "not a diffusers pipeline folder"),
    "video negative seconds": ("/generate_video", ("a", "openai", "sora-2", -5, "1280x720", None, "", []),
                               "Seconds must be"),
    "video huge seconds": ("/generate_video", ("a", "openai", "sora-2", 10**9, "1280x720", None, "", []),
                           "Seconds must be"),
    "video absurd size": ("/generate_video", ("a", "openai", "sora-2", 4, "99999x99999", None, "", []), "makes"),
    "video gigantic prompt": ("/generate_video", ("a" * 100_000, "openai", "sora-2", 4, "1280x720", None, "", []),
                              "too long"),
    "video first frame not uploaded": ("/generate_video", ("a", "openai", "sora-2", 4, "1280x720", NOT_UPLOADED,
                                                           "", []), "not an image|not allowed|Invalid"),
    "cancel a negative job": ("/cancel_video", (-1,), "Job must be between 1"),
    "cancel a missing job": ("/cancel_video", (999999,), "no video job"),
    "train a missing dataset": ("/start_training", ("nope", "flux-dev", None, 100, 1e-4, 16, 16, 1, 1, 512, "adamw",
                                                    "constant", 0, 0.0, 0, "", 0, 0, 3), "No dataset"),
    "stop a missing run": ("/stop_training", (999999, False), "does not exist"),
    "resume a negative run": ("/resume_training", (-3,), "does not exist"),
    "import a pickle as LoRA": ("/import_lora", ("{pickle}", "x"), "not a safetensors file"),
    "import a LoRA with a traversal name": ("/import_lora", ("{pickle}", "../../../x"), "not a safetensors file"),
    "download a traversal repo": ("/download_model", ("../../etc",), "neither a catalog model nor"),
    "history entry SQL injection": ("/history_entry", ("'; drop table generations; --",), "not a history entry"),
    "history delete a missing entry": ("/history_delete", ("g999999",), "does not exist"),
    "save an invented key": ("/save_key", ("nope", "v"), CHOICE),
    "test a traversal key name": ("/test_key", ("../x",), CHOICE),
}


@pytest.fixture(scope="module")
def prepared(hostile_app, tmp_path_factory):
    running, _model = hostile_app
    client = Client(running.url, verbose=False)
    client.predict("mine", "zorp", api_name="/create_dataset")
    folder = tmp_path_factory.mktemp("uploads")
    pickle = folder / "evil.safetensors"
    pickle.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    png = folder / "tiny.png"
    from PIL import Image

    Image.new("RGB", (300, 300), "teal").save(png)
    return client, {"pickle": str(pickle), "png": str(png)}


def _fill(value, files):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in files:
        return handle_file(files[value[1:-1]])
    if isinstance(value, list):
        return [_fill(item, files) for item in value]
    return value


@pytest.mark.parametrize("case", list(CASES))
def test_endpoint_refuses(case, hostile_app, prepared):
    running, _model = hostile_app
    client, files = prepared
    api, args, pattern = CASES[case]
    before = outside_files(running)
    with pytest.raises(Exception) as caught:
        client.predict(*[_fill(a, files) for a in args], api_name=api)
    assert_clear_refusal(caught.value, pattern)
    assert outside_files(running) == before
    assert running.studio.store.count("jobs", "kind = 'video'") == 0, "no video job for a refused request"


def test_zip_slip_absolute_and_symlink_entries_are_refused_and_nothing_escapes(hostile_app, prepared, tmp_path):
    running, model = hostile_app
    client, _files = prepared
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../../escape.txt", "x")
        zipped.writestr("/abs.txt", "y")
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = 0o120777 << 16
        zipped.writestr(link, "/etc/passwd")
        zipped.writestr("fake.jpg", b"\x80\x04\x95 not an image")
    before = outside_files(running)
    table, summary = client.predict("mine", [handle_file(str(archive))], api_name="/add_images")
    results = {row[0].split("/")[-1]: (row[1], row[2]) for row in table["data"]}
    assert all(result == "refused" for result, _reason in results.values()), results
    assert "out of the zip" in results["escape.txt"][1] and "link" in results["link.jpg"][1].lower()
    assert "not an image" in results["fake.jpg"][1]
    assert "Added **0**" in summary
    assert outside_files(running) == before
    assert not (running.studio.config.data_dir.parent / "escape.txt").exists()
    assert_still_serving(running, model)
