"""History actions on real generations made with a tiny pipeline: reuse, missing files, delete, export."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput, NotFound
from masuka.history.actions import delete_entries, export_zip, reuse_parameters
from masuka.history.browse import browse, entry
from masuka.image.generate import ImageRequest, generate_images, parse_lora


def make(studio, model, **kw):
    values = dict(prompt="a lighthouse at dusk", model=str(model), steps=2, width=64, height=64, seed=5,
                  negative_prompt="fog", guidance=4.0)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))


def test_reuse_parameters_remakes_the_same_image(studio, tiny_model):
    first = make(studio, tiny_model("flux"), seed=77)[0]
    kind, fields = reuse_parameters(studio, "local", False, f"g{first.id}")
    assert kind == "image"
    assert (fields["prompt"], fields["negative"], fields["seed"], fields["steps"]) == ("a lighthouse at dusk",
                                                                                    "fog", 77, 2)
    again = generate_images(studio, ImageRequest(
        prompt=fields["prompt"], model=fields["model"], negative_prompt=fields["negative"], steps=fields["steps"],
        guidance=fields["guidance"], width=fields["width"], height=fields["height"], seed=fields["seed"],
        loras=[parse_lora(x) for x in fields["loras"]]))[0]
    assert np.array_equal(np.asarray(Image.open(first.path)), np.asarray(Image.open(again.path)))


def test_missing_and_corrupted_files_are_shown_as_such(studio, tiny_model):
    missing, corrupted, fine = make(studio, tiny_model("flux"), batch=3)
    missing.path.unlink()
    corrupted.path.write_bytes(corrupted.path.read_bytes()[:60])
    status = {e["id"]: e["file_status"] for e in browse(studio, "local", False).entries}
    assert status == {missing.id: "missing", corrupted.id: "corrupted", fine.id: "ok"}
    assert entry(studio, "local", False, f"g{missing.id}")["file"] is None


def test_delete_removes_rows_and_files_and_refuses_running_jobs(studio, tiny_model):
    result = make(studio, tiny_model("flux"))[0]
    job = studio.store.insert("jobs", {"kind": "train", "status": "running", "title": "a run"})
    with pytest.raises(InvalidInput, match="still running"):
        delete_entries(studio, "local", False, [f"j{job}", f"g{result.id}"])
    assert result.path.is_file()
    assert "1 file" in delete_entries(studio, "local", False, [f"g{result.id}"])
    assert not result.path.exists() and studio.store.get("generations", result.id) is None
    studio.store.update("jobs", job, status="completed")
    studio.store.add_metric(job, step=1, loss=0.5)
    delete_entries(studio, "local", False, [f"j{job}"])
    assert studio.store.count("jobs") == 0 and studio.store.count("job_metrics") == 0


def test_export_zip_holds_files_and_metadata(studio, tiny_model):
    results = make(studio, tiny_model("flux"), batch=2)
    job = studio.store.insert("jobs", {"kind": "caption", "status": "completed", "title": "captions"})
    keys = [f"g{r.id}" for r in results] + [f"j{job}"]
    with zipfile.ZipFile(export_zip(studio, "local", False, keys)) as archive:
        records = [json.loads(line) for line in archive.read("metadata.jsonl").decode().splitlines()]
        names = set(archive.namelist())
    assert [r["key"] for r in records] == keys
    assert records[0]["seed"] == 5 and records[0]["prompt"] == "a lighthouse at dusk"
    assert {r["file_name"] for r in records[:2]} <= names and records[2]["file_name"] is None


def test_actions_on_another_users_entry_are_refused(studio, tiny_model):
    result = make(studio, tiny_model("flux"), owner="alice")[0]
    for action in (reuse_parameters, lambda *a: delete_entries(*a[:3], [a[3]]),
                   lambda *a: export_zip(*a[:3], [a[3]])):
        with pytest.raises(NotFound):
            action(studio, "bob", False, f"g{result.id}")
    assert result.path.is_file()
    assert "alice" in result.path.parts
