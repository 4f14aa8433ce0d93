"""The Datasets tab through its Gradio API on the live app: create, add, edit, caption, export, delete."""

from __future__ import annotations

import json
import zipfile

import gradio as gr
import pytest

from tests.datasets import corpus


def test_dataset_flow_through_the_api(live_app, tmp_path, tiny_captioner):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    running = live_app()
    client = Client(running.url, verbose=False)
    picker, status = client.predict("my cats", "zorp", "photo of {trigger}, {caption}", 512, "none", False, 100, 0,
                                    True, api_name="/create_dataset")
    assert picker == "my cats" and "Created dataset **my cats**" in status
    with pytest.raises(AppError, match="already have a dataset named 'my cats'"):
        client.predict("my cats", "zorp", "", 512, "none", False, 100, 0, True, api_name="/create_dataset")

    photos = [corpus.photo(tmp_path / f"cat{i}.jpg", 130 + i, size=(400, 300)) for i in range(3)]
    (tmp_path / "cat0.txt").write_text("photo of zorp, asleep")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(corpus.photo(tmp_path / "zipped.jpg", 140, size=(400, 300)), "zipped.jpg")
        handle.writestr("../../evil.jpg", b"x")
    bad = corpus.truncated(tmp_path / "broken.jpg", 141)
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4 not a photo")
    uploads = [*photos, tmp_path / "cat0.txt", archive, bad, tmp_path / "notes.pdf"]
    report, summary = client.predict("my cats", [handle_file(str(p)) for p in uploads], api_name="/add_images")
    rows = {row[0]: row[1:] for row in report["data"]}
    assert summary == "Added **4**, refused **3**."
    assert [rows[n][0] for n in ("cat0.jpg", "cat1.jpg", "cat2.jpg", "more.zip/zipped.jpg")] == ["added"] * 4
    assert rows["broken.jpg"][0] == "refused" and "truncated" in rows["broken.jpg"][1]
    assert rows["more.zip/../../evil.jpg"][0] == "refused"
    assert rows["notes.pdf"][0] == "refused" and rows["notes.pdf"][1]

    studio = running.studio
    images = studio.store.find("dataset_images", order_by="id")
    assert images[0]["caption"] == "photo of zorp, asleep"
    table = {"headers": ["id", "file", "caption"],
             "data": [[images[1]["id"], "cat1.jpg", "photo of zorp, on a chair"]]}
    assert client.predict("my cats", table, api_name="/save_captions") == "Saved 1 caption(s)."
    message, _selected = client.predict(str(images[3]["id"]), api_name="/delete_image")  # a text box
    assert message == f"Deleted image #{images[3]['id']}."

    done = client.predict("my cats", str(tiny_captioner("florence2")), "short", "", False, 2,
                          api_name="/caption_dataset")
    assert done.startswith("Done: captioned 1 of 1 image(s), kept 2 existing caption(s)")
    download = client.predict("my cats", "imagefolder", api_name="/export_dataset")
    with zipfile.ZipFile(download) as handle:
        lines = [json.loads(line) for line in handle.read("metadata.jsonl").decode().splitlines()]
        assert len(handle.namelist()) == 4
    texts = sorted(line["text"] for line in lines)
    assert texts[:2] == ["photo of zorp, asleep", "photo of zorp, on a chair"]
    assert texts[2].startswith("photo of zorp, ") and len(texts[2]) > len("photo of zorp, ")

    picker, status = client.predict("my cats", api_name="/delete_dataset")
    assert status == "Deleted dataset **my cats**."
    assert studio.store.count("datasets") == 0 and studio.store.count("dataset_images") == 0


def test_users_only_see_their_own_datasets(live_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    running = live_app(auth="alice:pw1,bob:pw2")
    alice = Client(running.url, auth=("alice", "pw1"), verbose=False)
    bob = Client(running.url, auth=("bob", "pw2"), verbose=False)
    alice.predict("private", "zorp", "", 512, "none", False, 100, 0, True, api_name="/create_dataset")
    photo = corpus.photo(tmp_path / "p.jpg", 150)
    with pytest.raises(AppError, match="No dataset 'private'"):
        bob.predict("private", [handle_file(str(photo))], api_name="/add_images")
    with pytest.raises(AppError, match="No dataset 'private'"):
        bob.predict("private", "kohya", api_name="/export_dataset")
    report, _ = alice.predict("private", [handle_file(str(photo))], api_name="/add_images")
    assert report["data"][0][:2] == ["p.jpg", "added"]


def test_two_tabs_saving_captions_keep_each_other_s_edits(studio, make_dataset, tmp_path):
    """The Datasets tab open twice on one page (handlers called as the page calls them): tab B saves a caption,
    then tab A saves its own edit; A's page still shows B's image with its old caption, which is not put back.
    A's edit of B's image is refused, named, and its text handed back."""
    from masuka.datasets.adding import add_images
    from masuka.datasets.library import dataset_images
    from masuka.store import LOCAL_USER
    from masuka.ui import datasets

    dataset = make_dataset("cats")
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 160 + i) for i in range(2)])
    _stats, _gallery, table_a, loaded_a, _info, _selected = datasets.view(studio, "cats", 1, 24)
    _stats, _gallery, table_b, loaded_b, _info, _selected = datasets.view(studio, "cats", 1, 24)
    table_b[1][2] = "sks, typed in tab B"
    assert datasets.save_captions(studio, "cats", table_b, loaded_b) == "Saved 1 caption(s)."
    table_a[0][2] = "sks, typed in tab A"
    assert datasets.save_captions(studio, "cats", table_a, loaded_a) == "Saved 1 caption(s)."
    assert [row["caption"] for row in dataset_images(studio, dataset["id"])] == \
        ["sks, typed in tab A", "sks, typed in tab B"]
    table_a[1][2] = "sks, tab A's words"
    status = datasets.save_captions(studio, "cats", table_a, loaded_a)
    assert status.startswith(f"Saved 0 caption(s).\n- ⚠ #{table_a[1][0]} (p1.jpg) was changed or deleted meanwhile")
    assert status.endswith("“sks, tab A's words”")
    assert dataset_images(studio, dataset["id"])[1]["caption"] == "sks, typed in tab B"
    _stats, _gallery, _table, loaded_a, *_ = datasets.view(studio, "cats", 1, 24)  # Save redraws the page
    assert list(loaded_a.values()) == ["sks, typed in tab A", "sks, typed in tab B"]


def test_saving_captions_names_the_rows_it_ignored(studio, make_dataset, tmp_path):
    """Rows that name no image of the dataset are listed with why, and another user's image reads as any id the
    dataset lacks (its caption untouched)."""
    from masuka.datasets.adding import add_images
    from masuka.datasets.library import create_dataset, dataset_images
    from masuka.store import LOCAL_USER
    from masuka.ui import datasets

    mine = make_dataset("cats")
    add_images(studio, mine["id"], LOCAL_USER, [corpus.photo(tmp_path / "p0.jpg", 170)])
    theirs = create_dataset(studio, "dogs", "bob", "sks")
    add_images(studio, theirs["id"], "bob", [corpus.photo(tmp_path / "b0.jpg", 171)])
    own, other = dataset_images(studio, mine["id"])[0]["id"], dataset_images(studio, theirs["id"])[0]["id"]
    table = [[other, "b0.jpg", "stolen"], [-2, "x", "a"], [2.5, "x", "b"], [other + 100, "x", "c"],
             [own, "p0.jpg", "sks, mine"]]
    assert datasets.save_captions(studio, "cats", table).split("\n") == [
        "Saved 1 caption(s).",
        f"- ⚠ Ignored row 1: no image #{other} in this dataset.",
        "- ⚠ Ignored row 2: '-2' is not an image id.",
        "- ⚠ Ignored row 3: '2.5' is not an image id.",
        f"- ⚠ Ignored row 4: no image #{other + 100} in this dataset."]
    assert dataset_images(studio, theirs["id"])[0]["caption"] != "stolen"


def test_the_delete_confirmation_deletes_only_the_dataset_it_names(studio, make_dataset, tmp_path):
    """Delete asked for ``dsb``, then ``dsa`` picked: Yes deletes nothing (the confirmation hides as the pick
    changes; a late click is refused), and with ``dsb`` picked again deletes ``dsb`` by the id it asked about."""
    from masuka.datasets.adding import add_images
    from masuka.store import LOCAL_USER
    from masuka.ui import datasets
    from masuka.ui.app import build_app

    for name in ("dsa", "dsb"):
        add_images(studio, make_dataset(name)["id"], LOCAL_USER, [corpus.photo(tmp_path / f"{name}.jpg", 170)])
    shown, question, named = datasets.ask_delete(studio, "dsb", None)
    assert shown.visible and question.startswith("Delete **dsb** with its 1 image(s)")
    with pytest.raises(gr.Error, match="confirmation was for dataset 'dsb'.*nothing was deleted"):
        datasets.confirm_delete(studio, "dsa", named)
    assert sorted(row["name"] for row in studio.store.find("datasets")) == ["dsa", "dsb"]
    assert datasets.confirm_delete(studio, "dsb", named) == ("", "Deleted dataset **dsb**.")
    assert [row["name"] for row in studio.store.find("datasets")] == ["dsa"]
    assert datasets.confirm_delete(studio, "dsa") == ("", "Deleted dataset **dsa**."), "API callers name it"

    demo = build_app(studio)
    picker = next(block for block in demo.blocks.values() if getattr(block, "label", None) == "Dataset"
                  and isinstance(block, gr.Dropdown) and getattr(block, "info", "").startswith("Pick one of your"))
    confirm = next(fn for fn in demo.fns.values() if fn.api_name == "delete_dataset")
    assert [type(block) for block in confirm.inputs] == [gr.Dropdown, gr.State], "the API still takes the dataset"
    hides = [fn for fn in demo.fns.values() if any(t[0] == picker._id and t[1] == "change" for t in fn.targets)
             and len(fn.outputs) == 1 and isinstance(fn.outputs[0], gr.Group)]
    assert hides, "picking another dataset hides the confirmation"


def test_another_dataset_or_page_clears_the_selected_image_and_delete_takes_only_the_shown_one(
        studio, make_dataset, tmp_path):
    """Image #n of ``dsb`` selected, then ``dsd`` shown: the redraw empties the selection, and a Delete that still
    sends it with ``dsd`` is refused; the picker's counts are redrawn after a deletion."""
    from masuka.datasets.adding import add_images
    from masuka.datasets.library import dataset_images
    from masuka.store import LOCAL_USER
    from masuka.ui import datasets
    from masuka.ui.app import build_app

    dsb, dsd = make_dataset("dsb"), make_dataset("dsd")
    add_images(studio, dsb["id"], LOCAL_USER, [corpus.photo(tmp_path / f"b{i}.jpg", 180 + i) for i in range(2)])
    add_images(studio, dsd["id"], LOCAL_USER, [corpus.photo(tmp_path / "d.jpg", 190)])
    first, second = (row["id"] for row in dataset_images(studio, dsb["id"]))
    assert datasets.view(studio, "dsb", 1, 24, str(first))[-1] == str(first), "a redraw of its page keeps it"
    assert datasets.view(studio, "dsd", 1, 24, str(first))[-1] == ""
    assert datasets.view(studio, "dsb", 2, 1, str(first))[-1] == "", "another page"
    with pytest.raises(gr.Error, match=f"Image #{first} is not in dataset 'dsd' \\(it is in 'dsb'\\)"):
        datasets.remove_image(studio, str(first), "dsd")
    assert len(dataset_images(studio, dsb["id"])) == 2
    assert datasets.remove_image(studio, str(second), "dsb") == (f"Deleted image #{second}.", "")
    assert datasets.remove_image(studio, first) == (f"Deleted image #{first}.", ""), "API callers may omit it"

    demo = build_app(studio)
    remove = next(fn for fn in demo.fns.values() if fn.api_name == "delete_image")
    assert [block.label for block in remove.inputs] == ["Selected image id", "Dataset"]
    chain, follows = [], remove
    while follows is not None:  # the .then()s after the click
        follows = next((fn for fn in demo.fns.values() if fn.trigger_after == follows._id), None)
        chain.append(follows)
    assert any(fn and fn.name == "choices" for fn in chain), "the picker's image counts are redrawn"
