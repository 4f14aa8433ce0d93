"""Export to the kohya and imagefolder layouts, load with 🤗 datasets, and import both layouts back."""

from __future__ import annotations

import errno
import io
import json
import os
import threading
import tomllib
import zipfile
from pathlib import Path

import pytest
from PIL import ImageOps

from masuka.datasets import formats
from masuka.datasets.adding import add_images
from masuka.datasets.export import export_dataset
from masuka.datasets.formats import kohya_config
from masuka.datasets.library import dataset_dir, dataset_images, set_caption
from masuka.datasets.sources import CONFIG_SKIPPED
from masuka.errors import DiskFull, InvalidInput
from masuka.store import LOCAL_USER
from tests.datasets import corpus


@pytest.fixture
def captioned(studio, make_dataset, tmp_path):
    """Three captioned photos (one caption with non-ASCII text) in dataset 'source'."""
    dataset = make_dataset("source", trigger="zorp", size=256, min_side=100)
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
    assert len(report.added) == 3
    assert [(r.file, r.reason) for r in report.rejected] == [("kohya/dataset.toml", CONFIG_SKIPPED)], \
        "every file handed over is added or listed"
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
    assert config["datasets"][0]["enable_bucket"] is True  # images keep their aspect ratio
    with pytest.raises(InvalidInput, match="Repeats"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", repeats=0)


def test_the_dataset_toml_of_a_kohya_zip_added_back_is_listed_not_skipped_silently(studio, make_dataset, captioned):
    """Its images and captions are added; the sd-scripts config, which MASUKA does not read, is listed saying so."""
    dataset, texts = captioned
    archive = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya")
    copy = make_dataset("copy", trigger="zorp", dedupe=False, min_side=100)
    report = add_images(studio, copy["id"], LOCAL_USER, [archive])
    assert len(report.added) == 3
    assert [(r.file, r.reason) for r in report.rejected] == [(f"{archive.name}/dataset.toml", CONFIG_SKIPPED)]
    assert "not a photo" in CONFIG_SKIPPED and "does not read it" in CONFIG_SKIPPED
    assert sorted(r["caption"] for r in dataset_images(studio, copy["id"])) == sorted(texts)


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
    dataset = make_dataset(trigger="zorp", flip=True, size=256, min_side=100)
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


@pytest.mark.parametrize("resolution", [64, 200, 256, 512, 1024, 1536, 2000, 4096])
def test_kohya_config_buckets_every_aspect_without_upscaling_at_any_size(resolution):
    """sd-scripts without buckets needs every image resolution × resolution (MASUKA keeps the aspect ratio and
    never upscales), and refuses a resolution outside [min_bucket_reso, max_bucket_reso] (default 256-1024)."""
    dataset = tomllib.loads(kohya_config("10_zorp", "zorp", 10, resolution))["datasets"][0]
    assert dataset["enable_bucket"] is True and dataset["bucket_no_upscale"] is True
    low, high = dataset["min_bucket_reso"], dataset["max_bucket_reso"]
    assert low <= resolution <= high and low % 64 == 0 and high % 64 == 0
    assert (low, high) == (min(256, resolution // 64 * 64), max(1024, high))


def test_kohya_captions_are_one_line_and_an_uncaptioned_image_refuses_the_export(studio, make_dataset, tmp_path):
    """sd-scripts reads a caption's first line only and stops at an empty caption file; training refuses an
    uncaptioned image too, so the kohya export does (an imagefolder keeps the empty text, as 🤗 datasets does)."""
    dataset = make_dataset("bare", trigger="", size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 130 + i) for i in range(2)])
    first, second = dataset_images(studio, dataset["id"])
    set_caption(studio, first["id"], "a mug\non a table,\n\n  in the sun", LOCAL_USER)
    with pytest.raises(InvalidInput, match=rf"1 image\(s\) without a caption \({second['file_name']}\)"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    hf = export_dataset(studio, dataset["id"], LOCAL_USER, "imagefolder", tmp_path / "hf")
    assert len((hf / "metadata.jsonl").read_text().splitlines()) == 2
    set_caption(studio, second["id"], "a plate", LOCAL_USER)
    out = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "kohya")
    assert sorted(p.read_text() for p in out.glob("10_images/*.txt")) == ["a mug on a table, in the sun", "a plate"]


def test_exports_made_at_once_each_hand_back_a_whole_zip(studio, captioned, monkeypatch):
    dataset, texts = captioned
    barrier, copy = threading.Barrier(2, timeout=30), formats.shutil.copyfile
    waited: set[int] = set()

    def copy_together(source, target):  # both exports are half-written at the same time
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        return copy(source, target)

    monkeypatch.setattr(formats.shutil, "copyfile", copy_together)
    results: list = [None, None]

    def export(slot: int) -> None:
        try:
            results[slot] = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya")
        except Exception as error:  # noqa: BLE001 - the test reports it below
            results[slot] = error

    threads = [threading.Thread(target=export, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(not isinstance(result, Exception) for result in results), results
    with zipfile.ZipFile(results[0]) as archive:
        assert archive.testzip() is None and len(archive.namelist()) == 7  # 3 images, 3 captions, the config
    assert os.listdir(dataset_dir(studio, dataset["id"]) / "exports") == [results[0].name]


def test_a_failed_export_leaves_nothing_and_can_be_retried(studio, captioned, tmp_path, monkeypatch):
    dataset, _texts = captioned
    lost = dataset_images(studio, dataset["id"])[1]["file"]
    kept = lost.read_bytes()
    lost.unlink()
    place = tmp_path / "place"
    place.mkdir()
    out = place / "new" / "kohya"
    with pytest.raises(InvalidInput, match=rf"Could not export dataset 'source' \(No such file or directory: {lost}"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", out)
    assert os.listdir(place) == []  # neither the folder nor the one made above it
    with pytest.raises(InvalidInput, match="Could not export"):
        export_dataset(studio, dataset["id"], LOCAL_USER, "imagefolder")
    assert os.listdir(dataset_dir(studio, dataset["id"]) / "exports") == []
    lost.write_bytes(kept)
    (place / "empty").mkdir()
    with monkeypatch.context() as patched:
        patched.setattr(formats.shutil, "copyfile", lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        with pytest.raises(DiskFull):
            export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", place / "empty")
    assert os.listdir(place) == ["empty"] and os.listdir(place / "empty") == []
    assert export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", out) == out
    assert len(list(out.glob("10_zorp/*.txt"))) == 3


def test_links_inside_a_folder_are_refused_not_followed(studio, make_dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not a caption of yours")
    corpus.photo(outside / "elsewhere.jpg", 140)
    folder = tmp_path / "set"
    folder.mkdir()
    corpus.photo(folder / "a.jpg", 141)
    (folder / "a.txt").symlink_to(outside / "secret.txt")
    (folder / "b.jpg").symlink_to(outside / "elsewhere.jpg")
    (folder / "more").symlink_to(outside, target_is_directory=True)
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert [a["file"] for a in report.added] == ["set/a.jpg"]
    assert sorted((r.file, r.reason) for r in report.rejected) == [
        (f"set/{name}", "symbolic link: refused, not followed") for name in ("a.txt", "b.jpg", "more")]
    assert [r["caption"] for r in dataset_images(studio, dataset["id"])] == [""]


def test_captions_reach_every_image_they_name_and_only_those(studio, make_dataset, tmp_path):
    """A .txt captions each image of its name (as sd-scripts reads it); metadata names one file by its path,
    in a metadata.jsonl or a metadata.csv (🤗 imagefolder reads both)."""
    folder = tmp_path / "set"
    for sub in ("kohya", "jsonl", "csv"):
        (folder / sub).mkdir(parents=True)
    for seed, name in enumerate(["kohya/a.png", "kohya/a.jpg", "jsonl/b.png", "jsonl/b.jpg", "csv/c.jpg",
                                 "csv/d.jpg"]):
        corpus.photo(folder / name, 150 + seed)
    (folder / "kohya" / "a.txt").write_text("zorp, both of them")
    (folder / "jsonl" / "metadata.jsonl").write_text('{"file_name": "./b.png", "text": "zorp, the png"}\n')
    (folder / "csv" / "metadata.csv").write_text('file_name,text\nc.jpg,"zorp, c"\nd.jpg,"zorp, d\non two lines"\n',
                                                  encoding="utf-8-sig")
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert len(report.added) == 6 and not report.rejected
    captions = {r["source_name"]: r["caption"] for r in dataset_images(studio, dataset["id"])}
    assert captions == {"set/kohya/a.png": "zorp, both of them", "set/kohya/a.jpg": "zorp, both of them",
                        "set/jsonl/b.png": "zorp, the png", "set/jsonl/b.jpg": "", "set/csv/c.jpg": "zorp, c",
                        "set/csv/d.jpg": "zorp, d\non two lines"}


def test_a_bad_metadata_csv_is_reported(studio, make_dataset, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    corpus.photo(folder / "one.jpg", 160)
    (folder / "metadata.csv").write_text("name,text\none.jpg,first\n")
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert len(report.added) == 1
    assert [r.to_dict() for r in report.rejected] == [{"file": "hf/metadata.csv",
                                                       "reason": "no file_name column: skipped"}]


def test_a_flipped_dataset_exported_and_added_back_is_not_doubled(studio, make_dataset, tmp_path):
    """The export holds each image and its mirror; the dataset mirrors again, so a mirror of a kept image is
    refused as a duplicate, whether it comes from an export or on its own."""
    dataset = make_dataset("flipped", trigger="zorp", flip=True, size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 170)])
    out = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "kohya")
    copy = make_dataset("again", trigger="zorp", flip=True, size=256, min_side=100)
    report = add_images(studio, copy["id"], LOCAL_USER, [out], allow_folders=True)
    assert len(report.added) == 1 and len(dataset_images(studio, copy["id"], augmented=True)) == 2
    [refusal], kept = [r for r in report.rejected if r.reason != CONFIG_SKIPPED], report.added[0]["file"]
    assert refusal.reason.startswith(f"mirror of {kept}") and "-flip.jpg" in refusal.file + kept
    ImageOps.mirror(corpus.picture(171)).save(tmp_path / "mirrored.jpg")
    plain = make_dataset("plain")
    report = add_images(studio, plain["id"], LOCAL_USER, [corpus.photo(tmp_path / "q.jpg", 171),
                                                          tmp_path / "mirrored.jpg"])
    assert [r.reason.split(" (")[0] for r in report.rejected] == ["mirror of q.jpg"]


def test_a_metadata_bomb_is_refused_unread_and_many_bad_lines_are_summed_up(studio, make_dataset, tmp_path):
    bomb = tmp_path / "bomb.zip"  # 8 KB that unpacks to an 8 MiB metadata.jsonl of 4 million bad lines
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.jsonl", b"x\n" * 4 * 2**20)
    near_limit = tmp_path / "near" / "metadata.jsonl"  # under the size limit: read, its lines summed up
    near_limit.parent.mkdir()
    near_limit.write_bytes(b"x\n" * (formats.MAX_METADATA_BYTES // 2))
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [bomb, near_limit.parent], allow_folders=True)
    rows = [r.to_dict() for r in report.rejected]
    assert rows[0] == {"file": "bomb.zip/metadata.jsonl",
                       "reason": "metadata file too big (8,192 KB, limit 2,048 KB): not read"}
    lines = rows[1:]
    assert len(lines) == formats.MAX_LINE_PROBLEMS + 1 and {r["file"] for r in lines} == {"near/metadata.jsonl"}
    assert lines[0]["reason"] == "line 1 is not a JSON object with file_name and text: skipped"
    more = formats.MAX_METADATA_BYTES // 2 - formats.MAX_LINE_PROBLEMS
    assert lines[-1]["reason"] == f"…and {more:,} more lines skipped"
    assert report.to_dict()["rejected"] == rows


def test_a_caption_file_over_the_limit_is_refused_unread(studio, make_dataset, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    corpus.photo(folder / "big.jpg", 170)
    corpus.photo(folder / "fine.jpg", 171)
    (folder / "big.txt").write_text("zorp " * (formats.MAX_CAPTION_FILE_BYTES // 5 + 1))
    (folder / "fine.txt").write_text("zorp, fine\r\non two lines\n")
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    assert len(report.added) == 2
    assert [r.to_dict() for r in report.rejected] == [{"file": "set/big.txt", "reason": (
        "caption file too big (64 KB, limit 64 KB): not read (type the caption in the Datasets tab)")}]
    captions = {r["source_name"]: r["caption"] for r in dataset_images(studio, dataset["id"])}
    assert captions == {"set/big.jpg": "", "set/fine.jpg": "zorp, fine\non two lines"}


def test_caption_and_metadata_files_too_big_to_read_are_refused_unwritten_from_a_zip(studio, make_dataset,
                                                                                      tmp_path):
    """Their declared size is checked before unpacking: nothing of them reaches staging; the rest is added."""
    from masuka.datasets.sources import collect

    source = tmp_path / "set.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.jsonl", b"x\n" * (3 * 2**19))  # 3 MB, which deflates to a few KB
        archive.write(corpus.photo(tmp_path / "a.jpg", 170), "a.jpg")
        archive.writestr("a.txt", "zorp " * (formats.MAX_CAPTION_FILE_BYTES // 5 + 1))
        archive.write(corpus.photo(tmp_path / "b.jpg", 171), "b.jpg")
        archive.writestr("b.txt", "zorp, fine")
    refusals = [{"file": "set.zip/metadata.jsonl", "reason": "metadata file too big (3,072 KB, limit 2,048 KB): "
                                                             "not read"},
                {"file": "set.zip/a.txt", "reason": "caption file too big (64 KB, limit 64 KB): not read (type "
                                                    "the caption in the Datasets tab)"}]
    staging = tmp_path / "staging"
    collected = collect([source], staging)
    assert [r.to_dict() for r in collected.refused] == refusals
    assert sorted(p.suffix for p in staging.iterdir()) == [".jpg", ".jpg", ".txt"], "the small caption only"
    assert {c.name: c.caption for c in collected.candidates} == {"set.zip/a.jpg": None, "set.zip/b.jpg": "zorp, fine"}
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [source])
    assert len(report.added) == 2 and [r.to_dict() for r in report.rejected] == refusals


def test_a_zip_lying_about_an_entrys_size_writes_no_more_than_it_declares(tmp_path):
    """A metadata.jsonl declaring 1 KB and holding 3 MB (or declaring more than the zip holds) is a damaged
    entry: refused, nothing of it left in staging, the other entries unpacked, the add not stopped."""
    from masuka.datasets.sources import _copy_at_most, collect

    def lying(name: str, holds: int, declares: int) -> Path:
        plain = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(plain, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("metadata.jsonl", b"x\n" * (holds // 2))
            archive.write(corpus.photo(tmp_path / "a.jpg", 170), "a.jpg")
        data = bytearray(plain.read_bytes())
        directory = data.index(b"PK\x01\x02")  # the central directory's first entry: metadata.jsonl's sizes
        data[directory + 20:directory + 28] = declares.to_bytes(4, "little") * 2  # stored and unpacked
        plain.write_bytes(bytes(data))
        return plain

    for source, reason in ((lying("small", 3 * 2**20, 2**10), "damaged zip entry (Bad CRC-32 for file "
                                                                "'metadata.jsonl')"),
                           (lying("cut", 2**10, 2**20), "damaged zip entry (cut short)")):
        staging = tmp_path / f"staging-{source.stem}"
        collected = collect([source], staging)
        assert [(r.file, r.reason) for r in collected.refused] == [(f"{source.name}/metadata.jsonl", reason)]
        assert [p.suffix for p in staging.iterdir()] == [".jpg"]
        assert [c.name for c in collected.candidates] == [f"{source.name}/a.jpg"]
    written = io.BytesIO()  # a reader giving more than the entry declares (zipfile stops there itself)
    with pytest.raises(zipfile.BadZipFile, match="holds more than the zip declares"):
        _copy_at_most(io.BytesIO(b"x" * 10), written, 4)
    assert written.getvalue() == b"xxxx"


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2])
def test_a_zip_entry_with_damaged_compressed_data_is_refused_and_the_rest_added(studio, make_dataset, tmp_path,
                                                                                method):
    """Compressed data that does not decompress (zlib's, lzma's or bz2's error) refuses that entry only."""
    source = tmp_path / "set.zip"
    with zipfile.ZipFile(source, "w", method) as archive:
        archive.write(corpus.photo(tmp_path / "a.jpg", 172), "a.jpg")
        archive.write(corpus.photo(tmp_path / "b.jpg", 173), "b.jpg")
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("a.jpg")
    extra = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + len(info.filename) + extra  # the local header's end
    start += 9 if method == zipfile.ZIP_LZMA else 0  # lzma's version and properties come first
    data[start:start + 4] = b"\xff" * 4  # not a deflate block, an lzma stream or a bz2 header
    source.write_bytes(bytes(data))
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [source])
    assert [r.file for r in report.rejected] == ["set.zip/a.jpg"]
    assert report.rejected[0].reason.startswith("damaged zip entry (")
    assert len(report.added) == 1


def test_an_add_lists_a_bounded_number_of_refusals_and_counts_the_rest(studio, make_dataset, tmp_path):
    from masuka.datasets.sources import MAX_LISTED_REFUSALS

    folder = tmp_path / "orphans"
    folder.mkdir()
    for number in range(MAX_LISTED_REFUSALS + 30):
        (folder / f"{number}.txt").write_text("a caption with no image")
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [folder], allow_folders=True)
    rows = report.to_dict()["rejected"]
    assert len(report.rejected) == MAX_LISTED_REFUSALS + 30 and len(rows) == MAX_LISTED_REFUSALS + 1
    assert rows[0]["reason"] == "caption file with no image of the same name"
    assert rows[-1] == {"file": "…and 30 more", "reason": "refused too (not listed)"}


def test_a_zip_entry_in_a_method_python_cannot_unpack_is_named_so_not_damaged(studio, make_dataset, tmp_path):
    """Deflate64 (what Windows' Explorer writes for large files) is not damage: the message says what to do."""

    def deflate64(entry: bytearray, at: int) -> None:
        entry[at + 10:at + 12] = (9).to_bytes(2, "little")  # the compression method

    report = add_images(studio, make_dataset()["id"], LOCAL_USER,
                        [_zip_with_a_patched_first_entry(tmp_path, deflate64)])
    assert [(r.file, r.reason) for r in report.rejected] == [
        ("set.zip/a.jpg", "zip entry compressed in a way Python cannot unpack (deflate64): zip the files again with "
                          "the usual deflate compression")]
    assert len(report.added) == 1


def test_a_zip_entry_zipfile_refuses_to_unpack_is_not_called_damaged(studio, make_dataset, tmp_path):
    """zipfile's NotImplementedError (here: PKWARE's "compressed patched data", flag bit 5) is no damage."""

    def patched_data(entry: bytearray, at: int) -> None:
        entry[at + 8] |= 0x20  # the general purpose flags

    report = add_images(studio, make_dataset()["id"], LOCAL_USER,
                        [_zip_with_a_patched_first_entry(tmp_path, patched_data)])
    assert [(r.file, r.reason) for r in report.rejected] == [
        ("set.zip/a.jpg", "zip entry Python cannot unpack (compressed patched data (flag bit 5))")]
    assert len(report.added) == 1


def _zip_with_a_patched_first_entry(tmp_path, patch) -> Path:
    """A zip of two photos, a.jpg and b.jpg, whose central directory entry of a.jpg (the first) ``patch(data,
    offset)`` changes in place."""
    source = tmp_path / "set.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(corpus.photo(tmp_path / "a.jpg", 174), "a.jpg")
        archive.write(corpus.photo(tmp_path / "b.jpg", 175), "b.jpg")
    data = bytearray(source.read_bytes())
    patch(data, data.index(b"PK\x01\x02"))
    source.write_bytes(bytes(data))
    return source
