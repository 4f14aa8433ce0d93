"""One "add images" request as a whole: its limits hold across all its zips, and a kill part-way leaves no file
that looks kept but that no row records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from masuka.config import Config
from masuka.datasets.adding import add_images
from masuka.datasets.library import create_dataset, dataset_dir, dataset_images
from masuka.datasets.sources import ZipLimits, collect
from masuka.disk import clean_leftovers
from masuka.errors import InvalidInput
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from tests.datasets import corpus
from tests.photos import SIDEWAYS_HEIC


def photo_zip(path: Path, seeds: range) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for seed in seeds:
            archive.write(corpus.photo(path.with_name(f"{path.stem}-{seed}.jpg"), seed, quality=90), f"{seed}.jpg")
    return path


def padded_zip(path: Path, entries: int, each: int) -> Path:
    """A zip of ``entries`` files of ``each`` zero bytes: tiny packed, big unpacked."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(entries):
            archive.writestr(f"{number}.png", b"\0" * each)
    return path


@pytest.fixture
def limited(tmp_path, monkeypatch):
    """``limited(files)``: a studio started with MASUKA_MAX_FILES=files, and a dataset in it."""
    opened = []

    def make(files: int) -> tuple[Studio, dict]:
        monkeypatch.setenv("MASUKA_MAX_FILES", str(files))
        opened.append(Studio.open(Config.from_env(data_dir=tmp_path / "limited", auth="")))
        return opened[-1], create_dataset(opened[-1], "limited", LOCAL_USER, "sks")

    yield make
    for studio in opened:
        studio.close()


def test_the_file_limit_holds_for_the_whole_request_not_per_zip(limited, tmp_path):
    """Each zip within MASUKA_MAX_FILES, together past it: the zip that would go past is refused unwritten, naming
    the limit and its variable; the files before it are added."""
    studio, dataset = limited(5)
    first = photo_zip(tmp_path / "first.zip", range(10, 14))
    second = photo_zip(tmp_path / "second.zip", range(20, 23))
    loose = corpus.photo(tmp_path / "loose.jpg", 30, quality=90)
    report = add_images(studio, dataset["id"], LOCAL_USER, [first, second, loose])
    assert sorted(a["file"] for a in report.added) == ["first.zip/10.jpg", "first.zip/11.jpg", "first.zip/12.jpg",
                                                        "first.zip/13.jpg", "loose.jpg"]
    assert [(r.file, r.reason) for r in report.rejected] == [(
        "second.zip", "the zip holds 3 files, with the 5 other files of this request 8, more than 5, the most one "
                      "request may add (MASUKA_MAX_FILES): add it in another request; nothing of it was unpacked")]


def test_the_unpacked_size_limit_holds_for_the_whole_request_and_nothing_past_it_is_written(tmp_path):
    """Four zips of 1.5 MB each under a 2 MB limit used to unpack 6 MB into tmp/; now the second is refused before
    a byte of it is written."""
    zips = [padded_zip(tmp_path / f"z{index}.zip", 3, 2**19) for index in range(4)]
    staging = tmp_path / "staging"
    collected = collect(zips, staging, limits=ZipLimits(files=100, unpacked_bytes=2 * 2**20))
    assert sum(p.stat().st_size for p in staging.iterdir()) == 3 * 2**19
    assert {p.name.split("-")[0] for p in staging.iterdir()} == {"0"}, "only the first zip was unpacked"
    assert [(r.file, r.reason) for r in collected.refused if r.file.endswith(".zip")] == [
        (f"z{index}.zip", "the zip unpacks to 2 MB, with the zips before it in this request to 3 MB, more than 2 MB, "
                          "the most one request may unpack (MASUKA_MAX_UNZIPPED_MB): add it in another request; "
                          "nothing of it was unpacked") for index in (1, 2, 3)]


def test_a_phone_export_s_videos_and_sidecars_are_listed_as_skipped_not_unpacked_nor_counted(tmp_path):
    """An iCloud or Google Takeout zip: photos, each Live Photo's video, edit files and metadata files. The 3 MB of
    video is under no limit: only the photos are unpacked."""
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(SIDEWAYS_HEIC, "IMG_0001.HEIC")
        handle.writestr("IMG_0001.MOV", b"\0" * 3 * 2**20)
        handle.writestr("IMG_0001.AAE", b"<plist/>")
        handle.write(corpus.photo(tmp_path / "beach.jpg", 40, quality=90), "Takeout/IMG_0002.jpg")
        handle.writestr("Takeout/IMG_0002.jpg.supplemental-metadata.json", b"{}")
        handle.writestr("__MACOSX/._IMG_0001.HEIC", b"\0")
    staging = tmp_path / "staging"
    collected = collect([archive], staging, limits=ZipLimits(files=3, unpacked_bytes=2**20))
    assert [c.name for c in collected.candidates] == ["export.zip/IMG_0001.HEIC", "export.zip/Takeout/IMG_0002.jpg"]
    assert sorted(p.suffix for p in staging.iterdir()) == [".heic", ".jpg"], "nothing else was written"
    assert sorted((r.file, r.reason) for r in collected.refused) == [
        ("export.zip/IMG_0001.AAE", "an iPhone photo-edit file, not a photo: skipped"),
        ("export.zip/IMG_0001.MOV", "a video (a Live Photo's, say), not a photo: skipped"),
        ("export.zip/Takeout/IMG_0002.jpg.supplemental-metadata.json",
         "a photo's metadata file (Google Takeout writes one beside each photo), not a photo: skipped"),
        ("export.zip/__MACOSX/._IMG_0001.HEIC", "system file (not a photo): skipped")]


def test_one_zip_alone_past_a_limit_is_told_to_be_split_and_names_the_variable(tmp_path):
    staging = tmp_path / "staging"
    collected = collect([padded_zip(tmp_path / "big.zip", 4, 2**20)], staging,
                        limits=ZipLimits(files=100, unpacked_bytes=3 * 2**20))
    assert [r.reason for r in collected.refused] == [
        "the zip unpacks to 4 MB, more than 3 MB, the most one request may unpack (MASUKA_MAX_UNZIPPED_MB): split it; "
        "nothing was unpacked"]
    collected = collect([padded_zip(tmp_path / "many.zip", 4, 1)], staging, limits=ZipLimits(files=3))
    assert [r.reason for r in collected.refused] == [
        "the zip holds 4 files, more than 3, the most one request may add (MASUKA_MAX_FILES): split it; nothing was "
        "unpacked"]
    assert not staging.exists()


def test_too_many_files_at_once_names_the_variable(limited, tmp_path):
    studio, dataset = limited(2)
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 40 + i) for i in range(3)]
    with pytest.raises(InvalidInput, match=r"3 files at once is more than 2, the most one request may add "
                                           r"\(MASUKA_MAX_FILES\): add them in parts"):
        add_images(studio, dataset["id"], LOCAL_USER, files)


KILLED_ADD = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from masuka.config import Config
    from masuka.datasets import adding
    from masuka.studio import Studio

    data, dataset, how, *files = sys.argv[1:]
    studio = Studio.open(Config.from_env(data_dir=Path(data), auth=""))
    folder = studio.config.datasets_dir / dataset

    def killed():  # once every image's files are written (3 each: original, processed, flipped copy)
        deadline = time.monotonic() + 120
        while sum(path.is_file() for path in folder.rglob("*")) < 3 * len(files) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)

    def killed_before_the_move(source, target):  # the row of the first image is committed, its files not moved
        killed()

    def killed_after_the_first(done, total, name):  # the first image recorded and moved, the others written
        killed()

    if how == "before-the-move":
        adding.os.replace = killed_before_the_move
    adding.add_images(studio, int(dataset), "local", files, threads=len(files),
                      on_progress=killed_after_the_first if how == "after-the-first" else None)
""")


def kill_an_add(studio: Studio, dataset: dict, files: list[Path], how: str) -> None:
    process = subprocess.run([sys.executable, "-c", KILLED_ADD, str(studio.config.data_dir), str(dataset["id"]), how,
                              *map(str, files)], capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr


def kept_files(studio: Studio, dataset: dict) -> set[Path]:
    """The files in the dataset's image folders under kept names (pending folders aside)."""
    folder = dataset_dir(studio, dataset["id"])
    return {path for area in ("originals", "processed") for path in (folder / area).iterdir() if path.is_file()}


def recorded(studio: Studio, dataset: dict) -> set[Path]:
    return {studio.config.absolute(row[key]) for row in dataset_images(studio, dataset["id"], augmented=True)
            for key in ("original_path", "processed_path")}


def age(folder: Path, seconds: float = 2 * 3600) -> None:
    old = os.stat(folder).st_mtime - seconds
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (old, old))


@pytest.mark.parametrize("how", ["after-the-first", "before-the-move"])
def test_a_killed_add_leaves_no_unrecorded_file_under_a_kept_name_and_clean_up_settles_the_rest(
        studio, make_dataset, tmp_path, how):
    """A SIGKILL while images are added: every file under originals/ and processed/ is one a row names; what the
    add had written and not recorded is in its pending folders, which Remove leftovers empties once they are an hour
    old (a file whose row was committed just before the kill is moved to its place, not lost)."""
    dataset = make_dataset(flip=True)
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 50 + i) for i in range(3)]
    kill_an_add(studio, dataset, files, how)
    assert kept_files(studio, dataset) <= recorded(studio, dataset), "a file that no row names"
    folder = dataset_dir(studio, dataset["id"])
    pending = [path for area in ("originals", "processed") for path in (folder / area).iterdir() if path.is_dir()]
    assert pending and any(path.iterdir() for path in pending), "the add wrote files it did not record"
    assert clean_leftovers(studio) == (0, 0), "an hour may not have passed: it may be an add still running"
    for path in pending:
        age(path)
    removed, freed = clean_leftovers(studio)
    assert removed == len(pending) and freed > 0
    rows = dataset_images(studio, dataset["id"], augmented=True)
    assert len(rows) == 2, "the first image and its flipped copy"
    assert kept_files(studio, dataset) == recorded(studio, dataset), "every row's files are in place, nothing else"
    assert all(path.is_dir() for path in (folder / "originals", folder / "processed"))
    assert not [path for area in ("originals", "processed") for path in (folder / area).iterdir() if path.is_dir()]
    again = Studio.open(Config.from_env(data_dir=studio.config.data_dir, auth=""))
    try:  # an add after the clean-up works as ever
        report = add_images(again, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "q.jpg", 60)])
        assert len(report.added) == 1
    finally:
        again.close()


def test_an_add_moves_each_file_in_place_as_it_is_recorded_and_leaves_no_pending_folder(studio, make_dataset,
                                                                                        tmp_path):
    dataset = make_dataset(flip=True)
    seen = []

    def look(done, total, name):  # mid-add: the recorded image's files are in place already
        seen.append(all(path.is_file() for path in recorded(studio, dataset)))

    report = add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 90 + i)
                                                            for i in range(3)], on_progress=look)
    assert len(report.added) == 3 and seen == [True, True, True]
    assert kept_files(studio, dataset) == recorded(studio, dataset) and len(recorded(studio, dataset)) == 9
    folder = dataset_dir(studio, dataset["id"])
    assert not [path for area in ("originals", "processed") for path in (folder / area).iterdir() if path.is_dir()]
