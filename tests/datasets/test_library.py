"""Datasets as a person manages them: options, crops, flips, captions, statistics, deletion, ownership."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masuka.datasets.adding import add_images
from masuka.datasets.library import (
    CaptionEdits,
    create_dataset,
    dataset_dir,
    dataset_images,
    delete_dataset,
    delete_image,
    find_dataset,
    list_datasets,
    save_captions,
    save_edits,
    set_caption,
    update_dataset,
)
from masuka.datasets.stats import dataset_statistics
from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER
from masuka.training.data import dataset_choices, dataset_for_training
from tests.datasets import corpus


def test_center_crop_makes_squares_and_none_keeps_the_aspect(studio, make_dataset, tmp_path):
    wide = corpus.photo(tmp_path / "wide.jpg", 1, size=(900, 500))
    square = make_dataset("square", size=256, crop="center")
    keep = make_dataset("keep", size=256, crop="none", min_side=100)
    add_images(studio, square["id"], LOCAL_USER, [wide])
    add_images(studio, keep["id"], LOCAL_USER, [wide])
    assert Image.open(dataset_images(studio, square["id"])[0]["file"]).size == (256, 256)
    assert Image.open(dataset_images(studio, keep["id"])[0]["file"]).size == (256, 142)


def test_small_images_are_never_upscaled(studio, make_dataset, tmp_path):
    dataset = make_dataset(size=1024, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "small.jpg", 2, size=(400, 300))])
    assert Image.open(dataset_images(studio, dataset["id"])[0]["file"]).size == (400, 300)
    assert any("smaller than the 1024 px target" in w for w in dataset_statistics(studio, dataset)["warnings"])


def test_face_crop_centres_on_the_face_and_falls_back_to_the_center(studio, make_dataset, tmp_path):
    face = corpus.face_photo(tmp_path / "face.jpg", size=(900, 600), center=(690, 300))
    plain = corpus.photo(tmp_path / "plain.jpg", 3, size=(900, 600))
    dataset = make_dataset(size=300, crop="face")
    report = add_images(studio, dataset["id"], LOCAL_USER, [face, plain])
    assert report.notes == [{"file": "plain.jpg", "note": "no face found: cropped at the center"}]
    rows = {r["source_name"]: r for r in dataset_images(studio, dataset["id"])}
    source = Image.open(face).convert("RGB")
    got = np.asarray(Image.open(rows["face.jpg"]["file"]), dtype=float)
    around_face = np.asarray(source.crop((300, 0, 900, 600)).resize((300, 300)), dtype=float)
    centred = np.asarray(source.crop((150, 0, 750, 600)).resize((300, 300)), dtype=float)
    assert np.abs(got - around_face).mean() < 3 < np.abs(got - centred).mean()
    plain_got = np.asarray(Image.open(rows["plain.jpg"]["file"]), dtype=float)
    plain_centre = np.asarray(Image.open(plain).convert("RGB").crop((150, 0, 750, 600)).resize((300, 300)), float)
    assert np.abs(plain_got - plain_centre).mean() < 3


def test_flip_adds_mirrored_copies_that_follow_their_image(studio, make_dataset, tmp_path):
    dataset = make_dataset(size=256, flip=True, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 10 + i) for i in range(2)])
    parents = dataset_images(studio, dataset["id"])
    everything = dataset_images(studio, dataset["id"], augmented=True)
    assert len(parents) == 2 and len(everything) == 4
    first, copy = parents[0], next(r for r in everything if r["augment_of"] == parents[0]["id"])
    mirrored = np.asarray(Image.open(copy["file"]), float)[:, ::-1]
    original = np.asarray(Image.open(first["file"]), float)
    assert np.abs(mirrored - original).mean() < 2 < np.abs(mirrored[:, ::-1] - original).mean()
    set_caption(studio, first["id"], "a red chair", LOCAL_USER)
    assert studio.store.get("dataset_images", copy["id"])["caption"] == "a red chair"
    delete_image(studio, first["id"], LOCAL_USER)
    assert len(dataset_images(studio, dataset["id"], augmented=True)) == 2
    assert not first["file"].exists() and not copy["file"].exists()
    assert dataset_statistics(studio, dataset)["flipped_copies"] == 1


def test_statistics_warn_about_what_to_fix(studio, make_dataset, tmp_path):
    dataset = make_dataset(trigger="zorp")
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 20 + i) for i in range(3)])
    rows = dataset_images(studio, dataset["id"])
    set_caption(studio, rows[0]["id"], "photo of zorp, on a table", LOCAL_USER)
    set_caption(studio, rows[1]["id"], "a cup on a table", LOCAL_USER)
    stats = dataset_statistics(studio, dataset)
    assert (stats["images"], stats["captioned"], stats["trigger_coverage"]) == (3, 2, 0.5)
    assert stats["caption_words"] == {"min": 5, "median": 5.5, "max": 6}
    warnings = " | ".join(stats["warnings"])
    assert "fewer than 10 images (3)" in warnings
    assert "captions missing on 1 image(s)" in warnings
    assert "'zorp' is missing from 1 caption(s): training and export put it in front" in warnings


def test_names_are_unique_per_owner_and_datasets_are_private(studio, tmp_path):
    create_dataset(studio, "cat", "alice", "sks")
    with pytest.raises(InvalidInput, match="already have a dataset named 'cat'"):
        create_dataset(studio, "cat", "alice", "sks")
    bob = create_dataset(studio, "cat", "bob", "sks")
    assert find_dataset(studio, "cat", "bob")["id"] == bob["id"]
    with pytest.raises(NotFound):
        find_dataset(studio, bob["id"], "alice")
    assert find_dataset(studio, bob["id"], "alice", admin=True)["owner"] == "bob"
    assert [d["name"] for d in list_datasets(studio, "alice")] == ["cat"]
    with pytest.raises(NotFound):
        add_images(studio, "cat", "carol", [corpus.photo(tmp_path / "x.jpg", 1)])


def test_a_name_typed_with_a_combining_accent_is_the_composed_name(studio):
    created = create_dataset(studio, "Cafe\u0301", "alice", "sks")  # "e" + U+0301, as some keyboards type "é"
    assert created["name"] == "Caf\u00e9"
    assert find_dataset(studio, "Caf\u00e9", "alice")["id"] == find_dataset(studio, "Cafe\u0301", "alice")["id"]
    with pytest.raises(InvalidInput, match="already have a dataset named"):
        create_dataset(studio, "Caf\u00e9", "alice", "sks")


@pytest.mark.parametrize("name, options, message", [
    ("", {}, "Name the dataset"),
    ("../etc", {}, "Name the dataset"),
    ("123", {}, "not only digits"),
    ("ok", {"crop": "diagonal"}, "Crop must be one of"),
    ("ok", {"size": 10}, "Target size"),
    ("ok", {"blur_threshold": -1}, "blur threshold"),
])
def test_bad_dataset_settings_are_refused(studio, name, options, message):
    with pytest.raises(InvalidInput, match=message):
        create_dataset(studio, name, LOCAL_USER, "sks", None, options)
    assert studio.store.count("datasets") == 0


@pytest.mark.parametrize("trigger, message", [
    ("zorp/cat", r"names the exported image folder \(10_<trigger>\), so it may not contain .* \(found /\)"),
    ("zorp\\cat", r"\(found \\\)"),
    ("what? *", r"\(found \* \?\)"),
    ("zorp\tcat", "one line of at most 64 characters"),
    ("{zorp}", "without braces"),
])
def test_triggers_that_cannot_name_the_export_folder_are_refused(studio, trigger, message):
    with pytest.raises(InvalidInput, match=message):
        create_dataset(studio, "t", LOCAL_USER, trigger)


@pytest.mark.parametrize("template, message", [
    ("photo of {trigger}", "must contain {caption}"),
    ("{caption} by {artist}", "only use {trigger} and {caption}"),
    ("{caption", "malformed"),
])
def test_bad_templates_are_refused(studio, template, message):
    with pytest.raises(InvalidInput, match=message):
        create_dataset(studio, "t", LOCAL_USER, "sks", template)


def test_delete_removes_rows_and_files(studio, make_dataset, tmp_path):
    dataset = make_dataset()
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 30)])
    folder = dataset_dir(studio, dataset["id"])
    assert any(folder.rglob("*.jpg"))
    delete_dataset(studio, dataset["name"], LOCAL_USER)
    assert not folder.exists()
    assert studio.store.count("datasets") == 0 and studio.store.count("dataset_images") == 0


def test_delete_is_refused_while_a_run_uses_the_dataset(studio, make_dataset):
    from masuka import jobs

    dataset = make_dataset("fox")
    run = jobs.create(studio.store, "train", LOCAL_USER, title="fox on flux", state={"dataset_id": dataset["id"]})
    jobs.create(studio.store, "train", LOCAL_USER, status="completed", state={"dataset_id": dataset["id"] + 1})
    with pytest.raises(InvalidInput, match=f"The train job #{run} \\(fox on flux\\) is queued on dataset 'fox'"):
        delete_dataset(studio, "fox", LOCAL_USER)
    jobs.update(studio.store, run, status="running")
    with pytest.raises(InvalidInput, match="is running on dataset 'fox'"):
        delete_dataset(studio, "fox", LOCAL_USER)
    assert studio.store.count("datasets") == 1
    jobs.finish(studio.store, run, "cancelled")
    delete_dataset(studio, "fox", LOCAL_USER)
    assert studio.store.count("datasets") == 0


def test_training_reads_processed_files_and_final_captions(studio, make_dataset, tmp_path):
    dataset = make_dataset(trigger="zorp", flip=True)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 40 + i) for i in range(2)])
    first = dataset_images(studio, dataset["id"])[0]
    set_caption(studio, first["id"], "photo of zorp, a mug", LOCAL_USER)
    items = dataset_for_training(studio, dataset["name"], LOCAL_USER).items
    assert len(items) == 4 and all(path.is_absolute() and path.is_file() for path, _ in items)
    assert sorted(caption for _, caption in items) == ["photo of zorp, a mug"] * 2 + ["zorp"] * 2
    assert find_dataset(studio, dataset["name"], LOCAL_USER)["trigger"] == "zorp"
    empty = make_dataset("empty")
    with pytest.raises(InvalidInput, match="no images"):
        dataset_for_training(studio, empty["id"], LOCAL_USER)


def test_training_and_export_put_the_trigger_word_in_front_of_captions_that_lack_it(studio, make_dataset, tmp_path):
    from masuka.datasets.export import export_dataset

    dataset = make_dataset(trigger="zorp")
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 50 + i) for i in range(5)])
    typed = ["a mug on a table", "ZORP on a table", "a zorpy mug", "photo of zorp, a cup", ""]
    for row, text in zip(dataset_images(studio, dataset["id"]), typed):
        set_caption(studio, row["id"], text, LOCAL_USER)
    final = ["zorp, a mug on a table", "ZORP on a table", "zorp, a zorpy mug", "photo of zorp, a cup", "zorp"]
    assert [caption for _, caption in dataset_for_training(studio, dataset["id"], LOCAL_USER).items] == final
    folder = export_dataset(studio, dataset["id"], LOCAL_USER, "kohya", tmp_path / "out") / "10_zorp"
    assert sorted(p.read_text(encoding="utf-8") for p in folder.glob("*.txt")) == sorted(final)
    assert [r["caption"] for r in dataset_images(studio, dataset["id"])] == typed  # stored as typed


def test_saving_captions_checks_only_the_changed_ones_and_names_the_image(studio, make_dataset, tmp_path):
    dataset = make_dataset()
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 60 + i) for i in range(2)])
    first, second = dataset_images(studio, dataset["id"])
    studio.store.update("dataset_images", first["id"], caption="sks cat,\u200bon a sofa")  # imported so
    table = {first["id"]: "sks cat,\u200bon a sofa", second["id"]: "sks, a new caption"}
    assert save_captions(studio, dataset["id"], table, LOCAL_USER) == 1
    assert dataset_images(studio, dataset["id"])[1]["caption"] == "sks, a new caption"
    table[first["id"]] = "sks cat,\u200bon a red sofa"
    with pytest.raises(InvalidInput, match=rf"The caption of image #{first['id']} \(p0.jpg\) contains an invisible"):
        save_captions(studio, dataset["id"], table, LOCAL_USER)


def test_saving_a_page_of_captions_never_puts_back_a_caption_changed_since_it_was_loaded(studio, make_dataset,
                                                                                        tmp_path):
    """Two tabs show the same page: B saves a caption, then A saves its own edit of another image. A's old text
    for B's image is not written back; an edit of a caption changed meanwhile is refused and handed back."""
    dataset = make_dataset()
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 90 + i) for i in range(3)])
    first, second, third = (row["id"] for row in dataset_images(studio, dataset["id"]))
    set_caption(studio, third, "sks, a cup", LOCAL_USER)
    loaded = {first: "", second: "", third: "sks, a cup"}  # the page as both tabs drew it
    assert save_edits(studio, dataset["id"], {**loaded, second: "sks, typed in tab B"}, LOCAL_USER,
                      loaded=loaded) == CaptionEdits(saved=[second])
    set_caption(studio, third, "sks, a caption pass wrote this", LOCAL_USER, source="florence2")
    page_a = {first: "sks, typed in tab A", second: "", third: "sks, a mug"}
    assert save_edits(studio, dataset["id"], page_a, LOCAL_USER, loaded=loaded) == \
        CaptionEdits(saved=[first], conflicts={third: "sks, a mug"})
    assert [row["caption"] for row in dataset_images(studio, dataset["id"])] == \
        ["sks, typed in tab A", "sks, typed in tab B", "sks, a caption pass wrote this"]
    delete_image(studio, first, LOCAL_USER)
    assert save_edits(studio, dataset["id"], {first: "sks, gone"}, LOCAL_USER, loaded=loaded) == \
        CaptionEdits(conflicts={first: "sks, gone"})


def test_a_dataset_deleted_meanwhile_is_not_updated(studio, make_dataset):
    dataset = make_dataset("fox")
    delete_dataset(studio, "fox", LOCAL_USER)
    with pytest.raises(NotFound, match="Dataset 'fox' was deleted meanwhile"):
        update_dataset(studio, dataset, template="{caption}")
    with pytest.raises(NotFound, match="Dataset 'fox' was deleted while images were being added"):
        update_dataset(studio, dataset, meanwhile="while images were being added", template="{caption}")


def test_the_train_tab_offers_exactly_the_datasets_the_user_can_train_on(studio, tmp_path):
    photos = [corpus.photo(tmp_path / f"p{i}.jpg", 65 + i) for i in range(2)]
    for owner, name in [("alice", "mine"), (LOCAL_USER, "shared"), ("bob", "bobs")]:
        create_dataset(studio, name, owner, "sks", options={"flip": True})
        add_images(studio, name, owner, photos)
    for owner in ("alice", "bob", LOCAL_USER):
        choices = dataset_choices(studio, owner)
        assert choices == [(f"{d['name']} (2 images)", d["name"]) for d in list_datasets(studio, owner)]
        assert len(choices) == 1 and dataset_for_training(studio, choices[0][1], owner).items


def test_a_flipped_copys_id_is_no_image_of_its_own_to_delete(studio, make_dataset, tmp_path):
    """Deleting by a flipped copy's id used to remove the mirror alone; it is refused as the CLI refuses it, and
    both files stay."""
    dataset = make_dataset("mirrored", size=256, flip=True, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / "p.jpg", 15)])
    first = dataset_images(studio, dataset["id"])[0]
    copy = next(r for r in dataset_images(studio, dataset["id"], augmented=True) if r["augment_of"] == first["id"])
    for shown in (None, "mirrored"):
        with pytest.raises(NotFound, match=f"^Dataset 'mirrored' has no image #{copy['id']}.$"):
            delete_image(studio, copy["id"], LOCAL_USER, dataset=shown)
    assert len(dataset_images(studio, dataset["id"], augmented=True)) == 2
    assert first["file"].exists() and copy["file"].exists()
    delete_image(studio, first["id"], LOCAL_USER)
    assert dataset_images(studio, dataset["id"], augmented=True) == [] and not copy["file"].exists()
