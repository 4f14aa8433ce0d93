"""Dataset exports as their consumers meet them: added back, kept only while current, written into `--out` folders,
one caption writer for exports and remote training."""

from __future__ import annotations

import os
import stat
import time
import zipfile

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from masuka.datasets.adding import add_images
from masuka.datasets.export import export_dataset
from masuka.datasets.library import dataset_images, delete_image, set_caption
from masuka.datasets.sources import CONFIG_SKIPPED
from masuka.errors import InvalidInput
from masuka.store import LOCAL_USER
from tests.datasets import corpus
from tests.datasets.test_cli import cli


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("fmt", ["kohya", "imagefolder"])
def test_a_flipped_export_added_back_keeps_the_originals_and_refuses_their_flips(studio, make_dataset, tmp_path,
                                                                                 fmt):
    """``X-flip.png`` sorts before ``X.png``; the original is kept all the same, and its flip refused as a mirror."""
    dataset = make_dataset("flipped", trigger="zorp", flip=True, size=256, min_side=100)
    added = add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.png", 200 + i,
                                                                        size=(256, 192)) for i in range(2)])
    assert len(added.added) == 2, added.to_dict()
    originals = {row["file_name"]: row["file"] for row in dataset_images(studio, dataset["id"])}
    archive = export_dataset(studio, dataset["id"], LOCAL_USER, fmt)
    copy = make_dataset(f"again-{fmt}", trigger="zorp", flip=True, size=256, min_side=100)
    report = add_images(studio, copy["id"], LOCAL_USER, [archive])
    kept = {row["source_name"].rsplit("/", 1)[-1]: row["file"] for row in dataset_images(studio, copy["id"])}
    assert sorted(kept) == sorted(originals)
    for name, file in kept.items():
        assert np.array_equal(pixels(file), pixels(originals[name])), name
    mirrors = [r for r in report.rejected if r.reason != CONFIG_SKIPPED]  # a kohya zip's dataset.toml is listed too
    assert sorted(r.file.rsplit("/", 1)[-1] for r in mirrors) == sorted(
        name.replace(".png", "-flip.png") for name in originals)
    assert all(r.reason.startswith("mirror of ") for r in mirrors)
    assert len(report.rejected) == len(mirrors) + (fmt == "kohya")


def test_an_add_stopped_part_way_drops_the_export_zips_of_what_it_changed(studio, make_dataset, tmp_path):
    """Stop after two of four files: the two kept change the dataset, so its zip goes (and updated_at moves)."""
    from masuka.errors import Cancelled

    dataset = make_dataset("stopped", trigger="zorp", size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 230)])
    archive = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya")
    before = studio.store.get("datasets", dataset["id"])["updated_at"]

    def stop(done, total, name):
        if done == 2:
            raise Cancelled("Stopped.")

    with pytest.raises(Cancelled):
        add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"q{i}.jpg", 231 + i) for i in range(4)],
                   on_progress=stop, threads=1)
    assert len(dataset_images(studio, dataset["id"])) == 3
    assert not archive.exists(), "a download of what the dataset no longer holds"
    assert studio.store.get("datasets", dataset["id"])["updated_at"] > before


def test_export_zips_go_when_the_dataset_changes_and_old_ones_are_cleaned(studio, make_dataset, tmp_path):
    from masuka.disk import clean_leftovers

    dataset = make_dataset("changing", trigger="zorp", size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 210 + i) for i in range(2)])
    first, second = dataset_images(studio, dataset["id"])
    changes = [lambda: set_caption(studio, first["id"], "zorp, a new caption", LOCAL_USER),
               lambda: add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "q.jpg", 220)]),
               lambda: delete_image(studio, second["id"], LOCAL_USER)]
    for change in changes:
        archive = export_dataset(studio, dataset["id"], LOCAL_USER, "imagefolder")
        assert archive.is_file()
        change()
        assert not archive.exists(), "a download of what the dataset no longer holds"
    archive = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya")
    assert clean_leftovers(studio) == (0, 0), "a new zip may be downloading"
    old = time.time() - 2 * 3600
    os.utime(archive, (old, old))
    removed, freed = clean_leftovers(studio)
    assert not archive.exists() and removed == 1 and freed > 0


@pytest.mark.parametrize("how", ["dot", "empty", "symlink"])
def test_cli_export_fills_an_existing_empty_folder_in_place(capsys, tmp_path, monkeypatch, how):
    data = ["--data-dir", str(tmp_path / "data")]
    cli(capsys, "dataset", "create", "mugs", "--trigger", "zorp", "--from", str(corpus.photo(tmp_path / "m.jpg", 2)),
        *data)
    folder = tmp_path / "here"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    before = folder.stat()
    out = {"dot": ".", "empty": str(folder), "symlink": str(tmp_path / "link")}[how]
    if how == "symlink":
        (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    monkeypatch.chdir(folder)
    code, printed, err = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", out, *data)
    assert code == 0, err
    after = folder.stat()
    assert (after.st_ino, stat.S_IMODE(after.st_mode)) == (before.st_ino, 0o755), "the folder itself is kept"
    assert sorted(p.name for p in folder.iterdir()) == ["10_zorp", "dataset.toml"], "no hidden folder left"
    assert sorted(p.suffix for p in (folder / "10_zorp").iterdir()) == [".jpg", ".txt"]
    assert sorted(p.name for p in os.scandir(".")) == ["10_zorp", "dataset.toml"], "a shell inside sees them"
    assert str(folder) in printed
    code, _, err = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", out, *data)
    assert code == 2 and "is not empty" in err


def test_an_out_folder_holding_only_a_stopped_export_s_hidden_folder_is_refused_by_name(studio, make_dataset,
                                                                                          tmp_path):
    """A killed ``--out`` export leaves its hidden ``.part`` folder (plain ``ls`` shows nothing): the refusal names
    it; any other entry is plain "not empty"."""
    dataset = make_dataset("killed", trigger="zorp", size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 240)])
    out = tmp_path / "out"
    (out / ".out.0123abcd.part" / "10_zorp").mkdir(parents=True)
    with pytest.raises(InvalidInput, match=r"out holds only \.out\.0123abcd\.part: what an export stopped part-way"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", out)
    (out / ".out.notmine.part").mkdir()
    with pytest.raises(InvalidInput, match="is not empty"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", out)


def test_the_download_box_is_cleared_on_another_dataset_and_after_a_delete(studio):
    from masuka.ui.app import build_app

    demo = build_app(studio)
    export = next(fn for fn in demo.fns.values() if fn.api_name == "export_dataset")
    [download], [picker] = export.outputs, export.inputs[:1]
    clears = [fn for fn in demo.fns.values() if (picker._id, "change") in [tuple(t) for t in fn.targets]
              and [block._id for block in fn.outputs] == [download._id]]
    assert len(clears) == 1 and clears[0].fn() is None
    delete = next(fn for fn in demo.fns.values() if fn.api_name == "delete_dataset")
    assert picker._id in [block._id for block in delete.outputs], "a delete empties the picker, which clears it"
    assert isinstance(download, gr.File)


def test_the_download_box_is_cleared_after_each_change_that_removes_the_zip(studio):
    """An add, a caption pass, a caption save and an image delete remove the dataset's export zips: the box's
    link to one would answer 403, so it is emptied after each (whether it succeeded: an add stopped part-way
    changes the dataset too)."""
    from masuka.ui.app import build_app

    demo = build_app(studio)
    export = next(fn for fn in demo.fns.values() if fn.api_name == "export_dataset")
    [download] = export.outputs
    for name in ("add_images", "caption_dataset", "save_captions", "delete_image"):
        change = next(fn for fn in demo.fns.values() if fn.api_name == name)
        clears = [fn for fn in demo.fns.values() if fn.trigger_after == change._id
                  and [block._id for block in fn.outputs] == [download._id]]
        assert len(clears) == 1 and clears[0].fn() is None, name
        assert not clears[0].trigger_only_on_success and clears[0].api_visibility == "private", name


def test_the_kohya_refusal_names_the_uncaptioned_and_marks_only_a_cut_list(studio, make_dataset, tmp_path):
    dataset = make_dataset("bare", trigger="", size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 230 + i) for i in range(4)])
    rows = dataset_images(studio, dataset["id"])
    with pytest.raises(InvalidInput) as refused:
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "all")
    named = ", ".join(row["file_name"] for row in rows[:3])
    assert f"4 image(s) without a caption ({named}…)" in str(refused.value)
    assert "trigger word" not in str(refused.value)
    for row in rows[:3]:
        set_caption(studio, row["id"], "a mug", LOCAL_USER)
    with pytest.raises(InvalidInput) as refused:
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "one")
    assert f"1 image(s) without a caption ({rows[3]['file_name']}): caption them" in str(refused.value)


def test_the_remote_training_zip_writes_captions_as_the_kohya_export_does(studio, make_dataset, tmp_path):
    from masuka.training.backends.base import dataset_zip
    from masuka.training.data import TrainingSet

    dataset = make_dataset("lines", trigger="", size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 240)])
    [row] = dataset_images(studio, dataset["id"])
    caption = "a mug\non a table,\n\n  in the sun"
    set_caption(studio, row["id"], caption, LOCAL_USER)
    exported = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "kohya")
    [written] = exported.glob("*/*.txt")
    archive = dataset_zip(TrainingSet(dataset["id"], "lines", "", [(row["file"], caption)]), tmp_path / "up.zip")
    with zipfile.ZipFile(archive) as handle:
        assert handle.read("0000.txt").decode() == written.read_text() == "a mug on a table, in the sun"
    assert dataset_images(studio, dataset["id"])[0]["caption"] == caption
