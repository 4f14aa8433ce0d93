"""An "add images" cut off between an image's row and the moves of its files (Ctrl-C, an error), or raced there by
a deletion in another tab: a recorded image keeps its files, a deleted one leaves none, a deleted dataset is told
as such; Remove leftovers never trips over the pending folder of an add that ends meanwhile."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from masuka import disk
from masuka.datasets import adding
from masuka.datasets.adding import add_images
from masuka.datasets.library import dataset_dir, dataset_images, delete_dataset, delete_image
from masuka.datasets.pending import PENDING
from masuka.errors import NotFound
from masuka.store import LOCAL_USER
from tests.datasets import corpus

REPLACE = os.replace


def files_on_disk(studio, dataset: dict) -> set[Path]:
    folder = dataset_dir(studio, dataset["id"])
    return {path for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def recorded(studio, dataset: dict) -> set[Path]:
    return {studio.config.absolute(row[key]) for row in dataset_images(studio, dataset["id"], augmented=True)
            for key in ("original_path", "processed_path")}


def pending_folders(studio, dataset: dict) -> list[Path]:
    return list(dataset_dir(studio, dataset["id"]).rglob(f"{PENDING}*"))


def at_the_first_move(monkeypatch, act) -> None:
    """Run ``act`` when the add moves its first recorded file into place (right after the row committed)."""
    calls = []

    def replace(source, destination):
        calls.append(source)
        if len(calls) == 1:
            act()
        return REPLACE(source, destination)

    monkeypatch.setattr(adding.os, "replace", replace)


@pytest.mark.parametrize("flip", [False, True])
def test_ctrl_c_between_a_row_and_its_moves_keeps_the_recorded_files(studio, make_dataset, tmp_path, monkeypatch,
                                                                     flip):
    dataset = make_dataset(flip=flip)
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 10 + i) for i in range(3)]

    def ctrl_c():
        raise KeyboardInterrupt

    at_the_first_move(monkeypatch, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        add_images(studio, dataset["id"], LOCAL_USER, files, threads=1)
    monkeypatch.undo()
    rows = dataset_images(studio, dataset["id"], augmented=True)
    assert len(rows) == (2 if flip else 1), "the first image (and its flipped copy) was recorded"
    assert all(path.is_file() for path in recorded(studio, dataset)), "a recorded image lost its files"
    assert files_on_disk(studio, dataset) == recorded(studio, dataset), "a file no row names"
    assert not pending_folders(studio, dataset)


def test_a_dataset_deleted_between_a_row_and_its_moves_is_told_deleted(studio, make_dataset, tmp_path,
                                                                        monkeypatch):
    dataset = make_dataset()
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 10 + i) for i in range(2)]
    at_the_first_move(monkeypatch, lambda: delete_dataset(studio, dataset["id"], LOCAL_USER))
    with pytest.raises(NotFound, match="was deleted while images were being added"):
        add_images(studio, dataset["id"], LOCAL_USER, files, threads=1)
    assert not dataset_dir(studio, dataset["id"]).exists()


def test_an_image_deleted_between_its_row_and_its_moves_leaves_no_file(studio, make_dataset, tmp_path,
                                                                        monkeypatch):
    dataset = make_dataset(flip=True)
    files = [corpus.photo(tmp_path / f"p{i}.jpg", 10 + i) for i in range(2)]

    def delete_the_first():
        delete_image(studio, dataset_images(studio, dataset["id"])[0]["id"], LOCAL_USER)

    at_the_first_move(monkeypatch, delete_the_first)
    report = add_images(studio, dataset["id"], LOCAL_USER, files, threads=1)
    assert len(report.added) == 2
    assert len(dataset_images(studio, dataset["id"], augmented=True)) == 2, "the second image and its copy"
    assert files_on_disk(studio, dataset) == recorded(studio, dataset), "a file no row names"
    assert not pending_folders(studio, dataset)


def test_the_pending_folders_are_made_after_the_zips_are_unpacked(studio, make_dataset, tmp_path, monkeypatch):
    """A slow unpack never makes them look like a killed add's to Remove leftovers."""
    dataset = make_dataset()
    seen = []
    collect = adding.collect

    def looking(*args, **kwargs):
        seen.append(pending_folders(studio, dataset))
        return collect(*args, **kwargs)

    monkeypatch.setattr(adding, "collect", looking)
    report = add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 10)])
    assert len(report.added) == 1 and seen == [[]]


def test_remove_leftovers_passes_over_a_pending_folder_whose_add_ends_meanwhile(studio, make_dataset, monkeypatch):
    dataset = make_dataset()
    folder = dataset_dir(studio, dataset["id"]) / "originals" / f"{PENDING}deadbeef"
    folder.mkdir(parents=True)
    newest = disk._newest

    def ended_meanwhile(path: Path) -> float:  # globbed, then the add ends and removes its folder
        shutil.rmtree(path)
        return newest(path)

    monkeypatch.setattr(disk, "_newest", ended_meanwhile)
    assert disk.clean_leftovers(studio) == (0, 0)
