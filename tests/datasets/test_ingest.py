"""Adding files to a dataset: every accepted format and mode (an iPhone's HEIC too), every refusal with its reason,
zips, big batches."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masuka.datasets.adding import add_images
from masuka.datasets.library import dataset_dir, dataset_images
from masuka.store import LOCAL_USER
from tests.datasets import corpus
from tests.photos import SIDEWAYS_HEIC, difference, upright


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def reference(seed: int, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(corpus.picture(seed).resize(size), dtype=np.float64)


@pytest.fixture
def mixed(tmp_path) -> tuple[list[Path], set[str]]:
    """Good files in every format and mode, then bad ones; returns (files in order, names expected to be kept)."""
    src = tmp_path / "src"
    src.mkdir()
    good = [
        corpus.photo(src / "a.jpg", 1, quality=90), corpus.photo(src / "b.png", 2),
        corpus.photo(src / "c.webp", 3, quality=90), corpus.animated_gif(src / "d.gif", 4),
        corpus.photo(src / "e.bmp", 5), corpus.photo(src / "f.tif", 6), corpus.exif_rotated(src / "rotated.jpg", 7),
        corpus.cmyk(src / "cmyk.jpg", 8), corpus.palette_with_transparency(src / "palette.png", 9),
        corpus.grey16(src / "grey16.png"), corpus.rgba(src / "rgba.png", 10),
        Path(shutil.copyfile(SIDEWAYS_HEIC, src / "IMG_0007.HEIC")), corpus.photo(src / "g.avif", 15, quality=90),
    ]
    (src / "a.txt").write_text("a caption written by hand\n")
    (src / "orphan.txt").write_text("no image has this name")
    corpus.picture(14, (256, 256)).save(src / "icon.ico")
    bad = [
        corpus.corrupt_png(src / "corrupt.png", 11), corpus.truncated(src / "truncated.jpg", 12),
        corpus.not_an_image(src / "notes.jpg"), corpus.photo(src / "tiny.jpg", 13, size=(120, 90)),
        corpus.bomb_png(src / "bomb.png"), corpus.bomb_png(src / "huge.png", 10_000, 10_000),
        Path(shutil.copyfile(src / "a.jpg", src / "copy-of-a.jpg")),
        corpus.near_duplicate(src / "b.png", src / "near-b.jpg"), src / "icon.ico",
    ]
    files = good + [src / "a.txt", src / "orphan.txt"] + bad
    return files, {p.name for p in good}


def test_every_good_file_is_kept_and_every_bad_one_is_listed_with_its_reason(studio, make_dataset, mixed):
    files, expected = mixed
    dataset = make_dataset(size=512, min_side=256)
    report = add_images(studio, dataset["id"], LOCAL_USER, files)
    assert {a["file"] for a in report.added} == expected
    reasons = {r.file: r.reason for r in report.rejected}
    assert set(reasons) == {"corrupt.png", "truncated.jpg", "notes.jpg", "tiny.jpg", "bomb.png", "huge.png",
                            "copy-of-a.jpg", "near-b.jpg", "icon.ico", "orphan.txt"}
    assert "corrupt" in reasons["corrupt.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["notes.jpg"].startswith("not an image")
    assert reasons["tiny.jpg"].startswith("too small: 120x90")
    assert "too large in pixels" in reasons["bomb.png"] and "before decoding" in reasons["bomb.png"]
    assert reasons["huge.png"].startswith("too large in pixels: 10000x10000")
    assert reasons["copy-of-a.jpg"] == "duplicate of a.jpg (same file)"
    assert reasons["near-b.jpg"].startswith("near-duplicate of b.png")
    assert reasons["icon.ico"].startswith("unsupported format ICO")
    assert reasons["orphan.txt"] == "caption file with no image of the same name"
    assert report.to_dict()["added"] == len(expected)


def test_kept_images_are_upright_rgb_with_sensible_conversions(studio, make_dataset, mixed):
    files, _ = mixed
    dataset = make_dataset(size=512, min_side=256)
    add_images(studio, dataset["id"], LOCAL_USER, files)
    rows = {r["source_name"]: r for r in dataset_images(studio, dataset["id"])}
    for row in rows.values():
        with Image.open(row["file"]) as image:
            assert image.mode == "RGB" and max(image.size) <= 512
        assert (row["width"], row["height"]) == Image.open(row["file"]).size
        original = studio.config.absolute(row["original_path"])
        assert hashlib.sha256(original.read_bytes()).hexdigest() == row["sha256"]  # the original, untouched
    assert rows["a.jpg"]["caption"] == "a caption written by hand" and rows["a.jpg"]["caption_source"] == "file"
    rotated = rows["rotated.jpg"]
    assert (rotated["original_width"], rotated["original_height"]) == (480, 640)
    assert rotated["height"] > rotated["width"]
    with Image.open(rotated["file"]) as kept:  # what exports and remote training send: no camera EXIF
        assert not kept.getexif()
    size = (rows["cmyk.jpg"]["width"], rows["cmyk.jpg"]["height"])
    assert np.abs(pixels(rows["cmyk.jpg"]["file"]) - reference(8, size)).mean() < 12
    palette = pixels(rows["palette.png"]["file"])
    assert palette[:, : palette.shape[1] // 2 - 2].mean() > 250  # transparent half flattened onto white
    assert pixels(rows["rgba.png"]["file"])[:20, :20].mean() > 250
    grey = pixels(rows["grey16.png"]["file"])
    assert 100 < grey.mean() < 155 and grey.std() > 5  # 16-bit mid-grey scaled, not clipped to white
    heic = rows["IMG_0007.HEIC"]  # stored sideways; its header's turn shows it upright
    assert (heic["original_width"], heic["original_height"]) == (heic["width"], heic["height"]) == (288, 384)
    assert Path(heic["file"]).suffix == ".jpg" and Path(heic["original_path"]).suffix == ".heic"
    with Image.open(heic["file"]) as kept:
        assert difference(kept, upright()) < 8 < 60 < difference(kept.transpose(Image.Transpose.ROTATE_90), upright())
    avif = rows["g.avif"]
    assert Path(avif["file"]).suffix == ".jpg" and Path(avif["original_path"]).suffix == ".avif"
    assert np.abs(pixels(avif["file"]) - reference(15, (avif["width"], avif["height"]))).mean() < 12
    gif = pixels(rows["d.gif"]["file"])
    gif_size = (rows["d.gif"]["width"], rows["d.gif"]["height"])
    assert np.abs(gif - reference(4, gif_size)).mean() < 25  # the first frame, not the blue second one


def test_a_png_whose_text_pillow_will_not_read_is_kept_for_its_pixels(studio, make_dataset, tmp_path):
    """A tool's PNG with a text field past Pillow's 1 MB limit (a workflow, say) is no corrupt file."""
    import zlib

    corpus.photo(tmp_path / "plain.png", 80, size=(320, 256))
    data = (tmp_path / "plain.png").read_bytes()
    body = b"workflow\0\0" + zlib.compress(b"{}" * 1_000_000)
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    (tmp_path / "tool.png").write_bytes(data[:33] + chunk + data[33:])  # after the signature and IHDR
    dataset = make_dataset(min_side=256)
    report = add_images(studio, dataset["id"], LOCAL_USER, [tmp_path / "tool.png"])
    assert [a["file"] for a in report.added] == ["tool.png"], [(r.file, r.reason) for r in report.rejected]
    [row] = dataset_images(studio, dataset["id"])
    assert np.array_equal(pixels(row["file"]), pixels(tmp_path / "plain.png"))


def test_a_jpeg_above_the_pixel_limit_is_taken_where_it_is_read_at_a_reduced_scale(studio, make_dataset, tmp_path):
    """A 96 MP JPEG (a 108 MP phone's, a 100 MP camera's) is decoded at an eighth of its sides for a 1024 px
    dataset: within the 64 MP limit, which counts what is decoded. At 4096 px it would be decoded whole: refused,
    saying why."""
    picture = Image.new("L", (12000, 8000), 90)
    picture.paste(200, (6000, 0, 12000, 8000))  # a bright right half, to see the picture is the one given
    picture.save(tmp_path / "phone.jpg", quality=60)
    kept = make_dataset("reduced", size=1024)
    report = add_images(studio, kept["id"], LOCAL_USER, [tmp_path / "phone.jpg"])
    assert [a["file"] for a in report.added] == ["phone.jpg"], [(r.file, r.reason) for r in report.rejected]
    [row] = dataset_images(studio, kept["id"])
    assert (row["original_width"], row["original_height"]) == (12000, 8000)
    left, right = pixels(row["file"])[:, [10, -10]].mean(axis=0).mean(axis=-1)
    assert abs(left - 90) < 3 and abs(right - 200) < 3
    whole = make_dataset("whole", size=4096)
    [refused] = add_images(studio, whole["id"], LOCAL_USER, [tmp_path / "phone.jpg"]).rejected
    assert refused.reason.startswith("too large in pixels: 12000x8000 (96 MP, limit 64 MP (a JPEG counts at")


def test_zip_entries_cannot_escape_and_the_rest_is_kept(studio, make_dataset, tmp_path):
    work = tmp_path / "work" / "inner"
    work.mkdir(parents=True)
    good = corpus.photo(tmp_path / "good.jpg", 21, quality=90)
    absolute = f"/tmp/masuka-absolute-{uuid.uuid4().hex}.jpg"
    archive = corpus.unsafe_zip(work / "upload.zip", good)
    import zipfile

    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr(absolute, good.read_bytes())
    dataset = make_dataset()
    report = add_images(studio, dataset["id"], LOCAL_USER, [archive])
    reasons = {r.file: r.reason for r in report.rejected}
    assert [a["file"] for a in report.added] == ["upload.zip/photos/good.jpg"]
    assert "'..'" in reasons["upload.zip/../escape.jpg"] and "'..'" in reasons["upload.zip/photos/../../escape2.jpg"]
    assert reasons["upload.zip//tmp/absolute.jpg"].startswith("absolute path")
    assert reasons[f"upload.zip/{absolute}"].startswith("absolute path")
    assert reasons["upload.zip/photos/link.jpg"].startswith("symbolic link")
    assert not Path(absolute).exists() and not Path("/tmp/absolute.jpg").exists()
    assert not list(tmp_path.rglob("escape*.jpg"))
    row = dataset_images(studio, dataset["id"])[0]
    assert row["caption"] == "a good caption from the zip"
    folder = dataset_dir(studio, dataset["id"])
    assert sorted(p.name for p in folder.iterdir()) == ["originals", "processed"]  # staging cleaned up


def test_a_batch_of_100_with_3_bad_files_keeps_97(studio, make_dataset, tmp_path):
    src = tmp_path / "batch"
    src.mkdir()
    files = [corpus.photo(src / f"photo-{i:03d}.jpg", 1000 + i, size=(320, 272), quality=85) for i in range(97)]
    files.insert(10, corpus.truncated(src / "cut.jpg", 5))
    files.insert(50, corpus.not_an_image(src / "readme.png"))
    files.insert(90, corpus.photo(src / "thumb.jpg", 6, size=(64, 64)))
    dataset = make_dataset(size=256, min_side=200)
    seen = []
    report = add_images(studio, dataset["id"], LOCAL_USER, files, on_progress=lambda *a: seen.append(a))
    assert len(files) == 100 and len(report.added) == 97
    assert sorted(r.file for r in report.rejected) == ["cut.jpg", "readme.png", "thumb.jpg"]
    assert len(dataset_images(studio, dataset["id"])) == 97
    assert seen[-1][:2] == (100, 100) and len(seen) == 100


def test_a_photo_whose_short_side_would_be_stored_under_the_minimum_is_refused(studio, make_dataset, tmp_path):
    """The minimum short side holds for the picture as stored: a panorama whose short side passes it as taken, but
    falls under it once its longest side is brought to the target size, is refused, saying why, rather than kept
    as a strip. Under a target size of 1024 the floor is a quarter of it (4:1 at most), so a photo turned upright
    by its EXIF stays."""
    files = [corpus.photo(tmp_path / "wide.jpg", 90, size=(2048, 260)),
             corpus.exif_rotated(tmp_path / "rotated.jpg", 91, size=(300, 260)),  # upright: 260x300
             corpus.photo(tmp_path / "square.jpg", 92, size=(300, 300))]
    dataset = make_dataset(size=256, min_side=256, flip=True)
    report = add_images(studio, dataset["id"], LOCAL_USER, files)
    assert [a["file"] for a in report.added] == ["rotated.jpg", "square.jpg"]
    assert [r.reason for r in report.rejected] == [
        "too small once resized: 2048x260 would be stored at 256x32, under the 64 px least short side; crop it "
        "nearer to a square, or use a square crop, a larger target size or a lower minimum"]
    assert sorted((row["width"], row["height"]) for row in dataset_images(studio, dataset["id"])) == [
        (222, 256), (256, 256)]  # upright
    panorama = [corpus.photo(tmp_path / "panorama.jpg", 93, size=(3000, 700))]
    full = make_dataset("full", size=1024, min_side=256)
    assert [r.reason for r in add_images(studio, full["id"], LOCAL_USER, panorama).rejected] == [
        "too small once resized: 3000x700 would be stored at 1024x239, under the 256 px least short side; crop it "
        "nearer to a square, or use a square crop, a larger target size or a lower minimum"]
    squared = make_dataset("squared", size=256, min_side=256, crop="center")
    assert len(add_images(studio, squared["id"], LOCAL_USER, files).added) == 3  # a square crop keeps 256x256


def test_adding_the_same_photos_again_refuses_them_as_duplicates(studio, make_dataset, tmp_path):
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 40 + i) for i in range(2)]
    dataset = make_dataset()
    add_images(studio, dataset["id"], LOCAL_USER, files)
    again = add_images(studio, dataset["id"], LOCAL_USER, files)
    assert not again.added and [r.reason for r in again.rejected] == ["duplicate of p0.jpg (same file)",
                                                                      "duplicate of p1.jpg (same file)"]
    no_dedupe = make_dataset("keep-all", dedupe=False)
    assert len(add_images(studio, no_dedupe["id"], LOCAL_USER, files + files).added) == 4


def test_a_duplicates_caption_goes_to_the_image_it_repeats_when_that_has_none(studio, make_dataset, tmp_path):
    """Two copies of a photo, only the second with a caption file: the copy kept takes that caption (its flipped
    copy too), and both the refusal and a note say so. Where the kept image has a caption of its own, the
    refusal names the caption file not used; nothing is dropped unsaid."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b", "c"):
        corpus.photo(photos / f"{name}.jpg", 45)
    (photos / "b.txt").write_text("caption for b\n")
    (photos / "c.txt").write_text("caption for c\n")
    dataset = make_dataset(flip=True)
    report = add_images(studio, dataset["id"], LOCAL_USER, [photos], allow_folders=True)
    assert [a["file"] for a in report.added] == ["photos/a.jpg"]
    assert [(r.file, r.reason) for r in report.rejected] == [
        ("photos/b.jpg", "duplicate of photos/a.jpg (same file); its caption from photos/b.txt now captions "
                         "photos/a.jpg, which had none"),
        ("photos/c.jpg", "duplicate of photos/a.jpg (same file); its caption from photos/c.txt was not used "
                         "(photos/a.jpg has a caption of its own)")]
    assert report.notes == [{"file": "photos/a.jpg",
                             "note": "caption taken from photos/b.txt, whose image photos/b.jpg was refused as its "
                                     "duplicate"}]
    rows = studio.store.find("dataset_images", "dataset_id = ?", [dataset["id"]])
    assert [(row["caption"], row["caption_source"]) for row in rows] == [("caption for b", "file")] * 2
    (photos / "c.txt").write_text("caption for b\n")  # the same caption again: the plain refusal says it all
    again = add_images(studio, dataset["id"], LOCAL_USER, [photos / "c.jpg", photos / "c.txt"])
    assert [r.reason for r in again.rejected] == ["duplicate of photos/a.jpg (same file)"] and not again.notes


def test_two_adds_of_the_same_photos_at_once_keep_each_photo_once(studio, make_dataset, tmp_path):
    """Another tab (or the CLI) adds the same photos while this add runs: each photo is kept once, by whichever
    add records it first; the other refuses it as a duplicate."""
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 60 + i) for i in range(3)]
    dataset = make_dataset()
    others = []

    def meanwhile(done: int, _total: int, _name: str) -> None:
        if done == 1:  # this add has kept p0; the other adds all three before this one goes on
            others.append(add_images(studio, dataset["id"], LOCAL_USER, files))

    first = add_images(studio, dataset["id"], LOCAL_USER, files, on_progress=meanwhile)
    assert [row["file"] for row in others[0].added] == ["p1.jpg", "p2.jpg"]
    assert [r.reason for r in first.rejected] == ["duplicate of p1.jpg (same file)", "duplicate of p2.jpg (same file)"]
    assert sorted(row["source_name"] for row in dataset_images(studio, dataset["id"])) == ["p0.jpg", "p1.jpg",
                                                                                          "p2.jpg"]


def test_an_add_refuses_a_near_duplicate_another_add_kept_meanwhile(studio, make_dataset, tmp_path):
    """The other add keeps a re-encoded, smaller copy of a photo while this add runs: this add's photo is then a
    near-duplicate of it, not a second copy."""
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 70 + i) for i in range(2)]
    copy = tmp_path / "p1-small.jpg"
    corpus.picture(71).resize((400, 300)).save(copy, quality=70)
    dataset = make_dataset()
    others = []

    def meanwhile(done: int, _total: int, _name: str) -> None:
        if done == 1:
            others.append(add_images(studio, dataset["id"], LOCAL_USER, [copy]))

    first = add_images(studio, dataset["id"], LOCAL_USER, files, on_progress=meanwhile)
    assert [row["file"] for row in others[0].added] == ["p1-small.jpg"]
    assert [r.file for r in first.rejected] == ["p1.jpg"]
    assert first.rejected[0].reason.startswith("near-duplicate of p1-small.jpg")
    assert sorted(row["source_name"] for row in dataset_images(studio, dataset["id"])) == ["p0.jpg", "p1-small.jpg"]


def test_blurry_photos_are_refused_when_the_filter_is_on(studio, make_dataset, tmp_path):
    from PIL import ImageFilter

    sharp = corpus.photo(tmp_path / "sharp.jpg", 50)
    corpus.picture(51).filter(ImageFilter.GaussianBlur(12)).save(tmp_path / "blurry.jpg")
    dataset = make_dataset(blur_threshold=30)
    report = add_images(studio, dataset["id"], LOCAL_USER, [sharp, tmp_path / "blurry.jpg"])
    assert [a["file"] for a in report.added] == ["sharp.jpg"]
    assert report.rejected[0].reason.startswith("too blurry (sharpness")


@pytest.mark.parametrize("threshold", [-5, float("nan"), float("inf")])
def test_a_blur_threshold_that_is_no_number_of_0_or_more_is_refused(threshold):
    """NaN compared false with every sharpness (the filter silently off, and NaN in --json output); infinity
    refused every photo."""
    from masuka.datasets.preprocess import PrepOptions
    from masuka.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"^The blur threshold must be a number of 0 or more"):
        PrepOptions(blur_threshold=threshold)


def test_folders_are_for_the_command_line_only(studio, make_dataset, tmp_path):
    corpus.photo(tmp_path / "one.jpg", 60)
    dataset = make_dataset()
    refused = add_images(studio, dataset["id"], LOCAL_USER, [tmp_path])
    assert not refused.added and "command line" in refused.rejected[0].reason
    assert len(add_images(studio, dataset["id"], LOCAL_USER, [tmp_path], allow_folders=True).added) == 1


def photo_zip(tmp_path: Path, count: int) -> Path:
    import zipfile

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for index in range(count):
            handle.write(corpus.photo(tmp_path / f"z{index}.jpg", 70 + index, quality=90), f"z{index}.jpg")
    return archive


def test_a_zip_is_unpacked_under_tmp_which_clean_tmp_empties_after_a_kill(studio, make_dataset, tmp_path):
    dataset = make_dataset()
    folder = dataset_dir(studio, dataset["id"])
    seen = []

    def look(done, total, name):  # mid-import: where the unpacked copy lies
        seen.append(([p.name for p in studio.config.tmp_dir.glob("staging-*/*")],
                     sorted(p.name for p in folder.iterdir())))

    report = add_images(studio, dataset["id"], LOCAL_USER, [photo_zip(tmp_path, 2)], on_progress=look)
    assert len(report.added) == 2
    unpacked, in_dataset = seen[0]
    assert len(unpacked) == 2 and in_dataset == ["originals", "processed"]
    assert not list(studio.config.tmp_dir.glob("staging-*")), "removed when the import ends"


def test_a_full_disk_while_unzipping_is_one_disk_full_error_not_a_damaged_zip(studio, make_dataset, tmp_path,
                                                                             monkeypatch):
    import errno

    from masuka.datasets import sources
    from masuka.errors import DiskFull

    archive = photo_zip(tmp_path, 2)
    dataset = make_dataset()

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sources, "_copy_at_most", full)
    with pytest.raises(DiskFull, match="free some disk space"):
        add_images(studio, dataset["id"], LOCAL_USER, [archive])
    assert dataset_images(studio, dataset["id"]) == []
    assert not list(studio.config.tmp_dir.glob("staging-*"))


def test_a_full_disk_while_saving_stops_the_batch_with_one_error_and_no_unrecorded_file(studio, make_dataset,
                                                                                        tmp_path, monkeypatch):
    import errno
    import threading

    from masuka.datasets import ingest
    from masuka.errors import DiskFull

    files = [corpus.photo(tmp_path / f"p{i}.jpg", 80 + i, quality=90) for i in range(8)]
    dataset = make_dataset()
    copy, others_saved, lock, saved = ingest.shutil.copyfile, threading.Event(), threading.Lock(), []

    def first_finds_the_disk_full(source, target):  # the others are saved meanwhile, before the batch stops
        if Path(target).name.startswith("p0-"):
            others_saved.wait(timeout=30)
            raise OSError(errno.ENOSPC, "No space left on device")
        copy(source, target)
        with lock:
            saved.append(target)
            if len(saved) == 3:
                others_saved.set()

    monkeypatch.setattr(ingest.shutil, "copyfile", first_finds_the_disk_full)
    with pytest.raises(DiskFull, match="free some disk space"):
        add_images(studio, dataset["id"], LOCAL_USER, files, threads=4)
    folder = dataset_dir(studio, dataset["id"])
    assert dataset_images(studio, dataset["id"]) == []
    assert not list((folder / "originals").iterdir()) and not list((folder / "processed").iterdir()), \
        "no file the dataset does not record"


@pytest.mark.parametrize("after", [1, 4], ids=["while-adding", "after-the-last-file"])
def test_deleting_the_dataset_while_images_are_added_keeps_no_row_and_no_file(studio, make_dataset, tmp_path, after):
    """The dataset deleted from another tab (or the CLI) while an add runs: nothing more is recorded for it, no
    file it wrote stays, and the add says why (not a blank error)."""
    from masuka.datasets.library import delete_dataset
    from masuka.errors import NotFound

    files = [corpus.photo(tmp_path / f"p{i}.jpg", 170 + i) for i in range(4)]
    dataset = make_dataset("fox", flip=True)

    def user_deletes_the_dataset(done: int, _total: int, _name: str) -> None:
        if done == after:
            delete_dataset(studio, "fox", LOCAL_USER)

    with pytest.raises(NotFound, match="Dataset 'fox' was deleted while images were being added: none of them"):
        add_images(studio, dataset["id"], LOCAL_USER, files, on_progress=user_deletes_the_dataset, threads=2)
    assert studio.store.count("dataset_images") == 0 and studio.store.count("datasets") == 0
    assert not dataset_dir(studio, dataset["id"]).exists()


def test_a_zip_inside_a_zip_is_refused_as_such_not_as_an_unreadable_image(studio, make_dataset, tmp_path):
    """A nested zip was refused as "not an image (or a format MASUKA cannot read)"."""
    import zipfile

    good = corpus.photo(tmp_path / "good.jpg", 22, quality=90)
    with zipfile.ZipFile(tmp_path / "inner.zip", "w") as inner:
        inner.write(good, "good.jpg")
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as outer:
        outer.write(good, "photos/good.jpg")
        outer.write(tmp_path / "inner.zip", "more/INNER.ZIP")
    report = add_images(studio, make_dataset()["id"], LOCAL_USER, [tmp_path / "outer.zip"])
    assert [a["file"] for a in report.added] == ["outer.zip/photos/good.jpg"]
    assert [(r.file, r.reason) for r in report.rejected] == [
        ("outer.zip/more/INNER.ZIP", "a zip inside a zip is not opened: add it separately")]
