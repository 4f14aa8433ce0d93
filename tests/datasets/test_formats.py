"""Export to the kohya and imagefolder layouts, load with 🤗 datasets, and import both layouts back."""

from __future__ import annotations

import json
import tomllib
import zipfile

import pytest

from masuka.datasets.adding import add_images
from masuka.datasets.export import export_dataset
from masuka.datasets.library import dataset_images, set_caption
from masuka.errors import InvalidInput
from masuka.store import LOCAL_USER
from tests.datasets import corpus


@pytest.fixture
def captioned(studio, make_dataset, tmp_path):
    """Three captioned photos (one caption with non-ASCII text) in dataset 'source'."""
    dataset = make_dataset("source", trigger="zorp", size=256)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 80 + i) for i in range(3)])
    texts = ["photo of zorp, a mug", "photo of zorp, café table", "photo of zorp, \"quoted\" words"]
    for row, text in zip(dataset_images(studio, dataset["id"]), texts):
        set_caption(studio, row["id"], text, LOCAL_USER)
    return dataset, texts


def test_kohya_export_is_a_repeats_folder_with_txt_captions_and_imports_back(studio, make_dataset, captioned,
                                                                             tmp_path):
    dataset, texts = captioned
    out = export_dataset(studio, dataset["name"], LOCAL_USER, "kohya", tmp_path / "kohya")
    assert sorted(p.name for p in out.iterdir()) == ["10_zorp", "dataset.toml"]
    images = sorted(p for p in (out / "10_zorp").iterdir() if p.suffix != ".txt")
    assert len(images) == 3
    assert sorted(p.with_suffix(".txt").read_text(encoding="utf-8") for p in images) == sorted(texts)
    copy = make_dataset("copy", trigger="zorp", dedupe=False, min_side=100)
    report = add_images(studio, copy["id"], LOCAL_USER, [out], allow_folders=True)
    assert len(report.added) == 3 and not report.rejected
    assert sorted(r["caption"] for r in dataset_images(studio, copy["id"])) == sorted(texts)


def test_kohya_zip_holds_the_repeats_folder_and_an_sd_scripts_dataset_config(studio, captioned):
    """The config as sd-scripts' ``library/config_util.py`` reads it: ``.txt`` captions, the folder, repeats."""
    dataset, _texts = captioned
    archive = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", repeats=3)
    with zipfile.ZipFile(archive) as handle:
        names = handle.namelist()
        config = tomllib.loads(handle.read("dataset.toml").decode())
    assert sum(name.startswith("3_zorp/") for name in names) == 6
    assert config["general"]["caption_extension"] == ".txt"
    subset = config["datasets"][0]["subsets"][0]
    assert (subset["image_dir"], subset["num_repeats"], subset["class_tokens"]) == ("3_zorp", 3, "zorp")
    assert config["datasets"][0]["resolution"] == 256
    with pytest.raises(InvalidInput, match="Repeats"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", repeats=0)


def test_imagefolder_export_loads_with_datasets_and_imports_back_from_zip(studio, make_dataset, captioned,
                                                                            tmp_path):
    from datasets import load_dataset

    dataset, texts = captioned
    out = export_dataset(studio, dataset["id"], LOCAL_USER, "imagefolder", tmp_path / "hf")
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(line["text"] for line in lines) == sorted(texts)
    loaded = load_dataset("imagefolder", data_dir=str(out), split="train",
                          cache_dir=str(tmp_path / "hf-cache"))
    assert len(loaded) == 3 and sorted(loaded["text"]) == sorted(texts)
    assert loaded[0]["image"].size == (256, 192)
    archive = export_dataset(studio, dataset["id"], LOCAL_USER, "imagefolder")
    with zipfile.ZipFile(archive) as handle:
        assert "metadata.jsonl" in handle.namelist() and len(handle.namelist()) == 4
    copy = make_dataset("copy", trigger="zorp", dedupe=False, min_side=100)
    report = add_images(studio, copy["id"], LOCAL_USER, [archive])
    assert len(report.added) == 3 and not report.rejected
    assert sorted(r["caption"] for r in dataset_images(studio, copy["id"])) == sorted(texts)


def test_export_includes_flipped_copies_and_refuses_a_full_folder(studio, make_dataset, tmp_path):
    dataset = make_dataset(trigger="zorp", flip=True, size=256)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 90)])
    out = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "out")
    assert sorted(p.suffix for p in (out / "10_zorp").iterdir()) == [".jpg", ".jpg", ".txt", ".txt"]
    assert {p.read_text() for p in out.glob("10_zorp/*.txt")} == {"zorp"}  # no caption yet: the trigger word alone
    with pytest.raises(InvalidInput, match="not empty"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", out)
    with pytest.raises(InvalidInput, match="Unknown export format"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "csv", tmp_path / "x")


def test_a_bad_metadata_line_is_reported_and_the_rest_imported(studio, make_dataset, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    corpus.photo(folder / "one.jpg", 91)
    corpus.photo(folder / "two.jpg", 92)
    (folder / "metadata.jsonl").write_text('{"file_name": "one.jpg", "text": "first"}\nnot json\n'
                                           '{"file_name": "two.jpg", "text": "second"}\n')
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert len(report.added) == 2
    assert [r.to_dict() for r in report.rejected] == [
        {"file": "hf/metadata.jsonl", "reason": "line 2 is not a JSON object with file_name and text: skipped"}]
    assert [r["caption"] for r in dataset_images(studio, dataset["id"])] == ["first", "second"]


def test_caption_files_drop_a_byte_order_mark_and_one_not_in_utf8_is_reported(studio, make_dataset, tmp_path):
    folder = tmp_path / "set"
    (folder / "hf").mkdir(parents=True)
    for i, name in enumerate(["bom", "cp1252", "hf/one", "hf/two"]):
        corpus.photo(folder / f"{name}.jpg", 100 + i)
    (folder / "bom.txt").write_bytes("\ufeffzorp, a mug".encode())
    (folder / "cp1252.txt").write_bytes("zorp, café".encode("cp1252"))
    (folder / "hf" / "metadata.jsonl").write_bytes("\ufeff".encode() + b'{"file_name": "one.jpg", "text": "first"}\n'
                                                   + '{"file_name": "two.jpg", "text": "caf\u00e9"}\n'.encode("cp1252"))
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert len(report.added) == 4
    assert sorted((r.file, r.reason) for r in report.rejected) == [
        ("set/cp1252.txt", "caption file not in UTF-8: not read (save it as UTF-8, or type the caption in the "
                           "Datasets tab)"),
        ("set/hf/metadata.jsonl", "line 2 is not UTF-8 text: skipped (save the file as UTF-8)")]
    captions = {r["source_name"]: r["caption"] for r in dataset_images(studio, dataset["id"])}
    assert captions == {"set/bom.jpg": "zorp, a mug", "set/cp1252.jpg": "", "set/hf/one.jpg": "first",
                        "set/hf/two.jpg": ""}


def test_caption_files_are_read_as_captions_and_txt_wins_over_them(studio, make_dataset, tmp_path):
    folder = tmp_path / "kohya"
    folder.mkdir()
    corpus.photo(folder / "a.jpg", 110)
    corpus.photo(folder / "b.jpg", 111)
    (folder / "a.caption").write_text("zorp, from the caption file")
    (folder / "b.caption").write_text("zorp, not used")
    (folder / "b.txt").write_text("zorp, from the txt file")
    (folder / "c.caption").write_text("no image")
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert len(report.added) == 2
    assert sorted((r.file, r.reason) for r in report.rejected) == [
        ("kohya/b.caption", "b.txt is the caption used: this file was not read"),
        ("kohya/c.caption", "caption file with no image of the same name")]
    assert [r["caption"] for r in dataset_images(studio, dataset["id"])] == ["zorp, from the caption file",
                                                                             "zorp, from the txt file"]
