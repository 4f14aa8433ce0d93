"""A view size keeps the photo's shape; a transparent photo is flattened onto white; a dataset made again under a
taken name names the real remedy; the CLI and the tab tell of a character being made and of a view gone from
History; an empty trigger word is refused before any model is fetched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masuka.characters.faces import photo_face
from masuka.characters.library import BEING_MADE, find_character, new_character
from masuka.characters.making import add_photos, create_character, reject_view
from masuka.cli import main
from masuka.datasets.caption_template import DEFAULT_TEMPLATE
from masuka.datasets.library import create_dataset, dataset_images, delete_dataset, find_dataset
from masuka.errors import InvalidInput
from masuka.history.actions import delete_entries
from masuka.ui import characters

from .test_making import request


def tall_portrait(folder: Path, portrait: Path) -> Path:
    """A phone-shaped portrait (256x512) cut from the bundled photo around the face."""
    path = folder / "tall.png"
    Image.open(portrait).convert("RGB").crop((100, 0, 356, 512)).save(path)
    return path


def test_a_view_size_is_the_longer_side_and_a_portrait_is_not_stretched(studio, tiny_model, tiny_clip, portrait,
                                                                        tmp_path):
    tall = tall_portrait(tmp_path, portrait)
    assert photo_face(tall).faces == 1
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, tall, views=1, size=128))
    [view] = find_character(studio, report.character, "local")["state"]["views"]
    generation = studio.store.get("generations", view["generation"])
    assert generation["params"]["task"] == "img2img", "the view starts from the photo"
    assert (generation["width"], generation["height"]) == (64, 128), "the photo's shape, its longer side at 128"
    assert Image.open(studio.config.absolute(view["file"])).size == (64, 128)


def test_transparent_pixels_are_white_and_a_fully_transparent_photo_shows_no_face(tmp_path, portrait):
    pixels = np.asarray(Image.open(portrait).convert("RGBA")).copy()
    cut = pixels.copy()
    cut[400:, :, :] = (0, 0, 0, 0)  # the bottom cut out: transparent, hiding black (as most editors save it)
    Image.fromarray(cut, "RGBA").save(tmp_path / "cut.png")
    face = photo_face(tmp_path / "cut.png")
    assert face.faces == 1 and face.photo.mode == "RGB"
    assert face.photo.getpixel((10, 500)) == (255, 255, 255), "flattened onto white, as the Datasets tab does"
    assert face.photo.getpixel((10, 10)) == tuple(pixels[10, 10, :3]), "opaque pixels as they were"

    ghost = pixels.copy()
    ghost[..., 3] = 0  # every pixel transparent: the face is there in the hidden colours only
    Image.fromarray(ghost, "RGBA").save(tmp_path / "ghost.png")
    with pytest.raises(InvalidInput, match="No face was found in ghost.png"):
        photo_face(tmp_path / "ghost.png")
    # a photo over 4096 pixels long is read another way (brought down as it is read): flattened too
    wide = np.zeros((1000, 4200, 4), np.uint8)  # transparent, hiding black
    wide[:512, 1600:2112] = pixels
    Image.fromarray(wide, "RGBA").save(tmp_path / "wide.png")
    face = photo_face(tmp_path / "wide.png")
    assert face.faces == 1 and face.photo.size == (4096, 975) and face.photo.getpixel((10, 10)) == (255, 255, 255)


def test_a_dataset_made_again_under_a_taken_name_names_the_command_that_frees_it(studio, tiny_model, tiny_clip,
                                                                                 portrait):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1, owner="alice"))
    delete_dataset(studio, "anna", "alice")
    create_dataset(studio, "anna", "alice", "zorp", DEFAULT_TEMPLATE, {})  # another dataset takes the name
    with pytest.raises(InvalidInput) as refused:
        add_photos(studio, "anna", "alice", [portrait])
    message = str(refused.value)
    assert "rename" not in message
    command = "python -m masuka dataset delete anna --yes --user alice"
    assert f"delete that dataset in the Datasets tab (or `{command}`)" in message
    assert main([*command.split()[3:], "--data-dir", str(studio.config.data_dir)]) == 0, "the remedy works"
    character, refused_photos = add_photos(studio, "anna", "alice", [portrait])
    dataset = find_dataset(studio, character["dataset_id"], "alice")
    assert refused_photos == [] and dataset["trigger"] == "ohwx" and len(dataset_images(studio, dataset["id"])) == 2


def test_the_cli_says_a_character_is_being_made(capsys, studio):
    new_character(studio, "anna", "local", "ohwx", {})  # views and dataset to come
    data = ["--data-dir", str(studio.config.data_dir)]
    assert main(["character", "list", *data, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["characters"]
    assert row["being_made"] is True and row["name"] == "anna"
    assert main(["character", "list", *data]) == 0
    assert BEING_MADE in capsys.readouterr().out
    assert main(["character", "show", "anna", *data]) == 0
    out = capsys.readouterr().out
    assert f"anna (id {row['character']}, trigger 'ohwx'): {BEING_MADE}, runs [], LoRA -" in out
    assert "rejected" not in out
    assert BEING_MADE == "being made: its views and dataset come when it is done", "the tab's words"


def test_a_view_deleted_in_history_shows_its_dataset_copy_or_is_left_out(live_app, tiny_model, tiny_clip, portrait):
    from gradio_client import Client

    running = live_app()
    studio = running.studio
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2))
    reject_view(studio, "anna", "local", 2)  # view 2 leaves the dataset: no copy of it is kept
    views = find_character(studio, report.character, "local")["state"]["views"]
    delete_entries(studio, "local", False, [f"g{view['generation']}" for view in views])
    assert not any(studio.config.absolute(view["file"]).exists() for view in views)
    _status, _faces, pictures, _grid = characters.show(studio, "anna", None)
    [copy] = dataset_images(studio, find_dataset(studio, "anna", "local")["id"])
    assert [(Path(path), caption.split(" ")[0]) for path, caption in pictures] == [(copy["file"], "1.")]
    # through the API, the details come whole (a missing file would fail them all)
    status, faces, gallery, grid = Client(running.url, verbose=False).predict("anna", api_name="/character_details")
    assert "1 kept view" in status and len(faces) == 1 and grid is None
    assert [item["caption"].split(" ")[0] for item in gallery] == ["1."]
    assert Image.open(gallery[0]["image"]).size == Image.open(copy["file"]).size


def test_an_empty_trigger_is_refused_before_the_identity_model_is_fetched(studio, tiny_model, portrait, tmp_path):
    (tmp_path / "no-model").mkdir()  # an identity model that cannot be loaded (offline, no CLIP either)
    before = studio.store.count("generations")
    with pytest.raises(InvalidInput, match="Give the character a trigger word"):
        create_character(studio, request(tiny_model("sdxl"), tmp_path / "no-model", portrait, trigger="  "))
    assert studio.store.count("generations") == before
