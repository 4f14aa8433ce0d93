"""A character from one photo on tiny models: faces, views, the identity filter, the dataset, the runs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from masuka.characters import making
from masuka.characters.faces import crop_box, open_photo, photo_face
from masuka.characters.identity import load_embedder, scores
from masuka.characters.library import (
    DELETED_THERE,
    character_dir,
    dataset_words,
    delete_character,
    deleted_note,
    find_character,
    list_characters,
    new_character,
    summary,
)
from masuka.characters.making import (
    FLAGGED,
    CharacterRequest,
    add_photos,
    chosen_captioner,
    create_character,
    ensure_dataset,
    regenerate_view,
    reject_view,
    view_prompts,
)
from masuka.characters.prompts import pick_prompts
from masuka.characters.training import finish_character, train_character
from masuka.characters.views import ViewRequest, view_size
from masuka.config import Config
from masuka.datasets.adding import add_images
from masuka.datasets.caption_template import has_trigger
from masuka.datasets.library import create_dataset, dataset_images, delete_dataset, delete_image, find_dataset
from masuka.errors import InvalidInput, ModelUnavailable, NotFound
from masuka.image.aid_settings import AidSettings, save_aid_settings
from masuka.studio import Studio
from tests.datasets.tiny_captioners import save_tiny_florence2
from tests.image.tiny_aids import save_tiny_classifier
from tests.photos import SIDEWAYS_HEIC, difference, upright

from .conftest import save_tiny_vit


def request(model, clip, photo, **kw) -> CharacterRequest:
    values = dict(name="anna", photos=[photo], trigger="ohwx", model=str(model), views=3, steps=2, size=64,
                  strength=0.5, threshold=-1.0, identity_model=str(clip), captioner="")
    values.update(kw)
    return CharacterRequest(**values)


def test_the_biggest_face_of_the_bundled_portrait_is_cropped_with_a_margin(portrait):
    face = photo_face(portrait)
    left, top, width, height = face.box
    assert face.faces == 1 and 150 < left + width / 2 < 310 and 60 < top + height / 2 < 200, "the face is up top"
    assert face.crop.width == face.crop.height > width, "a square with room around the face"
    assert face.crop.width < 512, "a crop, not the whole photo"


def test_a_phone_photo_stored_sideways_is_turned_upright_first(tmp_path, portrait):
    sideways = Image.open(portrait).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: turn 90 degrees clockwise to view
    sideways.save(tmp_path / "phone.jpg", exif=exif)
    sideways.save(tmp_path / "sideways.png")  # the same pixels without the orientation tag
    with pytest.raises(InvalidInput, match="No face was found in sideways.png"):
        photo_face(tmp_path / "sideways.png")
    face = photo_face(tmp_path / "phone.jpg")
    assert face.box[1] < 200 and face.photo.size == (512, 512)


def test_an_iphone_heic_photo_makes_a_character_from_its_upright_face(studio, tiny_model, tiny_clip):
    face = photo_face(SIDEWAYS_HEIC)  # stored sideways, as a phone held upright stores it
    assert face.faces == 1 and face.photo.size == (288, 384) and face.box[1] < 150, "upright: the face up top"
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, SIDEWAYS_HEIC, views=1))
    [photo] = find_character(studio, report.character, "local")["state"]["photos"]
    with Image.open(studio.config.absolute(photo["photo"])) as kept:
        assert kept.format == "PNG" and difference(kept, upright()) < 8


def test_a_photo_without_a_face_is_refused_unless_face_checks_are_off(no_face):
    with pytest.raises(InvalidInput, match="No face was found in bands.png"):
        photo_face(no_face)
    assert photo_face(no_face, skip_faces=True).crop.size == (320, 256)


def two_faces(folder, portrait, background="black"):
    """A photo of two people: the portrait's head, and a smaller copy of it on the right (``two.png``; another
    ``background`` makes another photo, ``two-<background>.png``)."""
    head = Image.open(portrait).convert("RGB").crop((100, 0, 400, 300))
    pair = Image.new("RGB", (560, 300), background)
    pair.paste(head, (0, 0))
    pair.paste(head.resize((240, 240)), (320, 30))
    path = folder / ("two.png" if background == "black" else f"two-{background}.png")
    pair.save(path)
    return path


def test_several_faces_need_a_choice(tmp_path, portrait):
    two_faces(tmp_path, portrait)
    with pytest.raises(InvalidInput, match="shows 2 faces: choose which one"):
        photo_face(tmp_path / "two.png")
    assert photo_face(tmp_path / "two.png", pick=1).box[0] < 300 < photo_face(tmp_path / "two.png", pick=2).box[0]
    with pytest.raises(InvalidInput, match="no face 3"):
        photo_face(tmp_path / "two.png", pick=3)


def test_crop_box_stays_inside_the_picture():
    assert crop_box((100, 80), (70, 50, 40, 40)) == (20, 0, 100, 80)


def test_prompt_set_covers_every_angle_and_is_seeded():
    prompts = pick_prompts(24, seed=3)
    assert len(prompts) == 24 and prompts == pick_prompts(24, seed=3) != pick_prompts(24, seed=4)
    for angle in ("front view", "three-quarter view", "profile view", "view from behind"):
        assert sum(p.startswith(angle) for p in prompts) == 6
    assert {p.split(", ")[1] for p in prompts} == {"close-up portrait", "half-body shot", "full-body shot"}


@pytest.mark.parametrize("encoder", ["onnx-face", "clip", "vit"])
def test_identity_threshold_keeps_a_near_copy_and_rejects_an_unrelated_image(studio, tiny_clip, tiny_facenet,
                                                                             tmp_path, portrait, encoder):
    model = {"onnx-face": tiny_facenet, "clip": tiny_clip, "vit": save_tiny_vit(tmp_path / "vit")}[encoder]
    photo = Image.open(portrait).convert("RGB")
    near_copy = photo.resize((300, 300)).resize((512, 512))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    embedder, note = load_embedder(studio, "local", str(model))
    same, unrelated = scores(embedder, [photo], [near_copy, noise])
    assert note is None and type(embedder).__name__ == ("FaceNet" if encoder == "onnx-face" else "ImageEmbedder")
    assert embedder.threshold == (0.363 if encoder == "onnx-face" else 0.7)
    assert same > 0.95 and unrelated < 0.9


def test_views_keep_the_photo_shape_at_the_model_size(tmp_path):
    Image.new("RGB", (600, 800)).save(tmp_path / "tall.png")
    assert view_size(tmp_path / "tall.png", "sdxl", ViewRequest("sdxl")) == (768, 1024)
    assert view_size(tmp_path / "tall.png", "sdxl", ViewRequest("sdxl", size=256)) == (192, 256), "not stretched"
    # a size whose shorter side would fall below 64 grows the view, keeping the shape
    assert view_size(tmp_path / "tall.png", "sdxl", ViewRequest("sdxl", size=64)) == (64, 80)
    Image.new("RGB", (3000, 300)).save(tmp_path / "thin.png")
    assert view_size(tmp_path / "thin.png", "sdxl", ViewRequest("sdxl", size=256)) == (640, 64)
    Image.new("RGB", (100, 4000)).save(tmp_path / "thinner.png")  # 64 wide is 2560 tall: no size fits
    with pytest.raises(InvalidInput, match=r"The photo is 100x4000: a view of its shape cannot have both sides"):
        view_size(tmp_path / "thinner.png", "sdxl", ViewRequest("sdxl"))


def test_character_create_makes_views_into_a_dataset_with_the_trigger_in_every_caption(studio, tiny_model,
                                                                                        tiny_clip, portrait):
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait))
    assert (report.dataset, report.images, report.rejected) == ("anna", 3, [])
    dataset = find_dataset(studio, "anna", "local")
    images = dataset_images(studio, dataset["id"])
    assert len(images) == 3 and all(Image.open(row["file"]).size == (64, 64) for row in images)
    assert all(has_trigger(row["caption"], "ohwx") for row in images)
    character = find_character(studio, report.character, "local")
    views = character["state"]["views"]
    assert [v["prompt"] for v in views] == pick_prompts(3, 0)
    assert all(v["prompt"] in row["caption"] for v, row in zip(views, images))
    assert studio.config.absolute(character["state"]["photos"][0]["face"]).is_file()
    generation = studio.store.get("generations", views[0]["generation"])
    assert generation["params"]["task"] == "img2img", "views start from the photo"

    rejected = reject_view(studio, "anna", "local", 2)
    assert len(dataset_images(studio, dataset["id"])) == 2 and rejected["state"]["views"][1]["reason"] == \
        "rejected by you"
    again = regenerate_view(studio, "anna", "local", 2)
    assert again["state"]["views"][1]["seed"] == 3 and again["state"]["views"][1]["kept"]
    assert len(dataset_images(studio, dataset["id"])) == 3

    with_photo, refused = add_photos(studio, "anna", "local", [portrait])
    assert len(with_photo["state"]["photos"]) == 2 and refused == []
    assert dataset_images(studio, dataset["id"])[-1]["caption"] == "photo of ohwx, a real photo"


def test_the_identity_model_never_evicts_the_view_model(studio, tiny_model, tiny_facenet, portrait):
    create_character(studio, request(tiny_model("sdxl"), tiny_facenet, portrait, views=2))
    assert studio.models.loads == 1, "the view model was loaded once for all the views and stays"
    assert studio.aids.key[:2] == ("identity", str(tiny_facenet))


def test_captions_come_from_a_captioner_when_one_is_named(studio, tiny_model, tiny_clip, portrait, tmp_path):
    florence = save_tiny_florence2(tmp_path / "florence")
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2, captioner=str(florence)))
    images = dataset_images(studio, find_dataset(studio, "anna", "local")["id"])
    assert len(images) == 2 and all(row["caption_source"] == str(florence.resolve()) for row in images)
    assert all(row["caption"].startswith("photo of ohwx, ") for row in images)


def test_auto_captioner_is_florence_once_it_is_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert chosen_captioner("auto") == "" and chosen_captioner("blip2") == "blip2"
    repo = tmp_path / "models--florence-community--Florence-2-base"
    for folder in ("snapshots/abc", "refs", "blobs"):
        (repo / folder).mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    for name, blob in (("config.json", "config"), ("model.safetensors", "weights")):  # a complete download
        (repo / "blobs" / blob).write_text("{}")
        (repo / "snapshots" / "abc" / name).symlink_to(repo / "blobs" / blob)
    assert chosen_captioner("auto") == "florence-community/Florence-2-base"


def test_a_wrong_or_missing_captioner_is_refused_before_any_view(studio, tiny_model, tiny_clip, portrait, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # nothing downloaded, and the Hub is offline
    with pytest.raises(ModelUnavailable, match="florence-community/Florence-2-base is not downloaded .* Hub .* "
                                               "cannot be reached"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, captioner="florence2"))
    with pytest.raises(InvalidInput, match="The folder .*nowhere does not exist"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, captioner=str(tmp_path / "nowhere")))
    with pytest.raises(InvalidInput, match="is not a Florence-2 or BLIP-2 model folder"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, captioner=str(tiny_clip)))
    assert studio.store.count("generations") == studio.store.count("characters") == 0, "no view was made"
    assert studio.store.count("datasets") == studio.store.count("jobs", "kind = 'caption'") == 0


def test_a_view_model_path_tells_a_user_nothing_of_the_server_s_folders(tmp_path, tiny_clip, portrait):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:1,admin:2"))
    try:
        (tmp_path / "a-folder").mkdir()
        for model in (tmp_path / "a-folder", tmp_path / "no-folder", studio.config.data_dir / "tmp"):
            for outfit in (None, portrait):  # the outfit check asks whether the model is an edit model
                with pytest.raises(InvalidInput, match=re.escape(f"Model '{model}': no model folder of yours")):
                    create_character(studio, request(model, tiny_clip, portrait, owner="alice", outfit=outfit))
        assert studio.store.count("generations") == studio.store.count("characters") == 0
    finally:
        studio.close()


def test_the_character_s_dataset_is_made_before_its_views(studio, tiny_model, tiny_clip, portrait, tmp_path):
    """A dataset given its name while the views are made (Datasets tab) is refused, not the character at the end;
    edits of the character wait until it is done, and its details say it is being made."""
    other = tmp_path / "other.png"
    Image.open(portrait).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    seen: list = []

    def meanwhile(done, total, text):
        with pytest.raises(InvalidInput, match="You already have a dataset named 'anna'"):
            create_dataset(studio, "anna", "local")
        with pytest.raises(InvalidInput, match="'anna' is being made into this dataset"):
            delete_dataset(studio, "anna", "local")  # the app's Datasets tab while its Characters tab makes it
        for action, edit in (("add photos", lambda: add_photos(studio, "anna", "local", [other])),
                             ("reject views", lambda: reject_view(studio, "anna", "local", 1)),
                             ("regenerate views", lambda: regenerate_view(studio, "anna", "local", 1)),
                             ("train it", lambda: train_character(studio, "anna", base="sdxl")),
                             ("use it", lambda: ensure_dataset(studio, find_character(studio, "anna", "local"),
                                                               "use it"))):
            with pytest.raises(InvalidInput, match=f"'anna' is still being made: {action} when it is done"):
                edit()
        shown = summary(studio, find_character(studio, "anna", "local"))
        seen.append((shown["being_made"], len(shown["photos"])))

    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2),
                              on_progress=meanwhile)
    assert report.images == 2 and seen == [(True, 1), (True, 1)], "no photo added while it was made"
    assert summary(studio, find_character(studio, "anna", "local"))["being_made"] is False
    assert len(add_photos(studio, "anna", "local", [other], face=1)[0]["state"]["photos"]) == 2


def test_views_below_the_threshold_are_rejected_with_their_score(studio, tiny_model, tiny_clip, portrait):
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, threshold=1.0, views=2))
    assert report.images == 0 and len(report.rejected) == 2
    assert all("below the threshold 1.00" in r["reason"] for r in report.rejected)


def test_without_a_threshold_the_identity_model_s_own_decides(studio, tiny_model, tiny_facenet, portrait):
    report = create_character(studio, request(tiny_model("sdxl"), tiny_facenet, portrait, threshold=None, views=3))
    views = find_character(studio, report.character, "local")["state"]["views"]
    assert all(view["kept"] == (view["score"] >= 0.363) for view in views)
    assert report.rejected and all("below the threshold 0.36" in r["reason"] for r in report.rejected)


def test_a_refused_photo_leaves_nothing_behind(studio, tiny_model, tiny_clip, no_face):
    with pytest.raises(InvalidInput, match="No face was found"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, no_face))
    assert list_characters(studio, "local") == []
    with pytest.raises(NotFound):
        find_dataset(studio, "anna", "local")


def test_an_outfit_reference_is_every_view_s_second_reference(studio, tiny_model, tiny_clip, portrait, tmp_path):
    outfit = tmp_path / "jacket.png"
    Image.new("RGB", (96, 128), "crimson").save(outfit)
    report = create_character(studio, request(tiny_model("flux2"), tiny_clip, portrait, views=2, outfit=outfit))
    character = find_character(studio, report.character, "local")
    kept = studio.config.absolute(character["params"]["outfit"])
    assert kept.is_file() and np.array_equal(np.asarray(Image.open(kept)), np.asarray(Image.open(outfit)))
    for view in character["state"]["views"]:
        generation = studio.store.get("generations", view["generation"])
        assert generation["params"]["task"] == "edit" and len(generation["params"]["references"]) == 2
        assert "wearing the outfit from the second image" in generation["prompt"]
    again = regenerate_view(studio, "anna", "local", 1)
    remade = studio.store.get("generations", again["state"]["views"][0]["generation"])
    assert len(remade["params"]["references"]) == 2, "a regenerated view wears the outfit too"


def test_the_view_model_is_checked_once_when_made_and_once_per_regenerated_view(studio, tiny_model, tiny_clip,
                                                                                portrait, monkeypatch):
    """A path another user could not tell from a missing one is refused before views (create) and before the view
    (regenerate, on the model the character keeps), not again for each view."""
    checked: list[str] = []
    usable = making.usable_model
    monkeypatch.setattr(making, "usable_model",
                        lambda studio, owner, model: checked.append(model) or usable(studio, owner, model))
    model = str(tiny_model("sdxl"))
    create_character(studio, request(model, tiny_clip, portrait, views=2))
    assert checked == [model]
    regenerate_view(studio, "anna", "local", 1)
    assert checked == [model, model]


def test_an_outfit_reference_needs_a_model_that_takes_several_images(studio, tiny_model, tiny_clip, portrait,
                                                                     tmp_path):
    outfit = tmp_path / "jacket.png"
    Image.new("RGB", (48, 64), "crimson").save(outfit)
    with pytest.raises(InvalidInput, match="An outfit reference needs an edit model that takes several images"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, outfit=outfit))
    with pytest.raises(InvalidInput, match="outfit reference .*does not exist"):
        create_character(studio, request(tiny_model("flux2"), tiny_clip, portrait, outfit=tmp_path / "none.png"))
    assert list_characters(studio, "local") == []


def test_one_face_number_per_photo_and_for_added_photos(studio, tiny_model, tiny_clip, portrait, tmp_path):
    two = two_faces(tmp_path, portrait)
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, two, photos=[two, portrait], face=2,
                                              views=1))
    boxes = [p["box"] for p in find_character(studio, report.character, "local")["state"]["photos"]]
    assert boxes[0][0] > 300 and boxes[1][0] < 300, "face 2 of the group photo, the only face of the other"
    with pytest.raises(InvalidInput, match="one per photo in order \\(2 photo\\(s\\), 3 face numbers\\)"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, two, name="bea", photos=[two, two],
                                         face=[1, 2, 1]))
    other = two_faces(tmp_path, portrait, "white")  # the same photo twice would be refused as a duplicate
    added = add_photos(studio, "anna", "local", [two, other], face="1, 2")[0]["state"]["photos"][2:]
    assert added[0]["box"][0] < 300 < added[1]["box"][0]
    with pytest.raises(InvalidInput, match="shows 2 faces: choose which one"):
        add_photos(studio, "anna", "local", [two])


def test_a_large_photo_is_brought_down_and_a_small_face_in_it_is_found(tmp_path, portrait):
    head = Image.open(portrait).convert("RGB").crop((100, 0, 400, 300)).resize((300, 300))  # a ~100 px face
    photo = Image.new("RGB", (6000, 4000), (120, 130, 140))
    photo.paste(head, (2000, 1500))
    photo.save(tmp_path / "24mp.jpg", quality=90)
    face = photo_face(tmp_path / "24mp.jpg")
    assert face.photo.size == (4096, 2731) and face.faces == 1
    assert 1300 < face.box[0] < 1500 and 60 < face.box[2] < 90, "the face, in the kept photo's pixels"
    deep = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)  # the same photo, 16-bit grey
    deep.save(tmp_path / "16bit.png")
    assert open_photo(tmp_path / "16bit.png").size == (4096, 2731)  # brought down too, not refused


def test_a_face_too_small_for_the_2048_pixel_copy_is_found_at_the_photo_s_own_size(tmp_path, portrait):
    """A ~40 px face in a 12 MP photo is ~20 px in a 2048-pixel copy, under the cascade's 24-pixel window: the search
    looks again at the photo's own size (it found no face before)."""
    head = Image.open(portrait).convert("RGB").crop((100, 0, 400, 300)).resize((120, 120))  # a ~40 px face
    photo = Image.new("RGB", (4000, 3000), (128, 128, 128))
    photo.paste(head, (2500, 1800))
    photo.save(tmp_path / "12mp.png")
    face = photo_face(tmp_path / "12mp.png")
    assert face.faces == 1 and 2500 < face.box[0] < 2560 and 1800 < face.box[1] < 1860 and 30 < face.box[2] < 50


def test_a_large_photo_cut_short_is_refused_as_not_readable_not_as_too_large(tmp_path):
    """A large photo is read by open_photo itself (open_picture refuses one by its size): a broken one is refused
    saying why, not sent on to open_picture, which called it too large although an intact one is brought down."""
    Image.new("RGB", (6000, 4000), (120, 130, 140)).save(tmp_path / "whole.jpg", quality=90)  # 24 MP
    whole = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    assert open_photo(tmp_path / "whole.jpg").size == (4096, 2731)
    with pytest.raises(InvalidInput, match=r"^The photo 'cut.jpg' is not a readable image \(image file is "
                                           r"truncated .*\)\.$"):
        photo_face(tmp_path / "cut.jpg")


def test_a_number_of_views_and_a_prompt_set_that_disagree_are_refused_naming_both(studio, tiny_model, tiny_clip,
                                                                                 portrait):
    """``views`` picks that many prompts when no prompts are given; your own prompts make one view each, and a
    number of views that differs is refused (not one of them silently ignored)."""
    assert view_prompts(2, None, 5) == pick_prompts(2, 5) and view_prompts(None, None, 0) == pick_prompts()
    assert view_prompts(None, ["a", " ", "b"], 0) == ["a", "b"] == view_prompts(2, ["a", "b"], 0)
    with pytest.raises(InvalidInput, match=r"^3 views were asked for, but the prompt set has 2 prompts \(one view a "
                                           r"line\): give as many views as prompts, or no prompts"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=3, prompts=["a", "b"]))
    assert studio.store.count("characters") == 0 and studio.store.count("generations") == 0
    with pytest.raises(InvalidInput, match=r"^The prompt set is empty"):  # an empty file: not the built-in set
        view_prompts(None, [], 0)


def png_header(path, width: int, height: int):
    """A PNG file that is only its header (no pixels): enough for Pillow to read its size and refuse it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_a_photo_too_large_to_read_is_refused_with_the_real_limit(tmp_path):
    with pytest.raises(InvalidInput, match=r"The photo 'huge.png' is too large: at most 179 megapixels "
                                           r"\(13377x13377, .*brought down to 4096 pixels long") as refused:
        photo_face(png_header(tmp_path / "huge.png", 20000, 20000))
    assert "16.8" not in str(refused.value)


def test_whole_numbers_and_a_decomposed_name(studio, tiny_model, tiny_clip, portrait):
    for field, value, message in (("views", 1.5, "The number of views must be a whole number"),
                                  ("size", 64.5, "The view size must be a whole number"),
                                  ("steps", 2.5, "Steps must be a whole number"),
                                  ("seed", 0.5, "Seed must be a whole number")):
        with pytest.raises(InvalidInput, match=message):
            create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, **{field: value}))
    assert studio.store.count("characters") == 0
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, name="Zoe\u0308", views=1))
    assert find_character(studio, "Zoë", "local")["id"] == report.character and report.dataset == "Zoë"


def test_a_seed_of_minus_one_draws_one_that_the_character_records(studio, tiny_model, tiny_clip, portrait,
                                                                  monkeypatch):
    monkeypatch.setattr("masuka.image.generate.random.randint", lambda low, high: 4000)
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2, seed=-1))
    character = find_character(studio, report.character, "local")
    assert character["params"]["seed"] == 4000
    assert [view["seed"] for view in character["state"]["views"]] == [4000, 4001]


def test_an_edit_made_meanwhile_in_another_tab_is_kept(studio, tiny_model, tiny_clip, portrait, monkeypatch):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2))
    make_view = making.make_view

    def slow_view(*args, **kwargs):  # while view 2 is made again, view 1 is rejected in another tab
        reject_view(studio, "anna", "local", 1)
        return make_view(*args, **kwargs)

    monkeypatch.setattr(making, "make_view", slow_view)
    views = regenerate_view(studio, "anna", "local", 2)["state"]["views"]
    assert views[0]["reason"] == "rejected by you" and views[0]["image"] is None and views[1]["seed"] == 2
    dataset = find_dataset(studio, "anna", "local")
    assert [row["id"] for row in dataset_images(studio, dataset["id"])] == [views[1]["image"]]


def test_images_and_datasets_deleted_in_the_datasets_tab_are_taken_in_stride(studio, tiny_model, tiny_clip,
                                                                            portrait):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=3))
    views = find_character(studio, "anna", "local")["state"]["views"]
    delete_image(studio, views[0]["image"], "local")
    delete_image(studio, views[2]["image"], "local")
    assert reject_view(studio, "anna", "local", 3)["state"]["views"][2]["reason"] == "rejected by you"
    generations = studio.store.count("generations")
    views = regenerate_view(studio, "anna", "local", 2)["state"]["views"]
    assert studio.store.count("generations") == generations + 1
    assert views[0]["reason"] == DELETED_THERE and not views[0]["kept"] and views[1]["kept"]

    delete_dataset(studio, "anna", "local")
    assert reject_view(studio, "anna", "local", 2)["state"]["views"][1]["image"] is None
    regenerate_view(studio, "anna", "local", 1)
    character, _refused = add_photos(studio, "anna", "local", [portrait])
    dataset = find_dataset(studio, "anna", "local")
    assert character["dataset_id"] == dataset["id"], "made again"
    images = [row["id"] for row in dataset_images(studio, dataset["id"])]
    kept = [v["image"] for v in character["state"]["views"] if v["kept"]]
    assert images == [*kept, character["state"]["photos"][1]["image"]] and len(kept) == 1
    delete_dataset(studio, "anna", "local")
    create_dataset(studio, "anna", "local")
    with pytest.raises(InvalidInput, match="another dataset of yours is named 'anna' now"):
        add_photos(studio, "anna", "local", [portrait])


def test_real_photos_deleted_in_the_datasets_tab_stay_out_of_the_dataset_made_again(studio, tiny_model, tiny_clip,
                                                                                    portrait, tmp_path):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    flipped = tmp_path / "flipped.png"
    Image.open(portrait).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    character = add_photos(studio, "anna", "local", [flipped], face=1)[0]
    delete_image(studio, character["state"]["photos"][1]["image"], "local")
    regenerate_view(studio, "anna", "local", 1)
    for _rebuild in range(2):
        delete_dataset(studio, "anna", "local")
        character = ensure_dataset(studio, find_character(studio, "anna", "local"), "train it")
        view = character["state"]["views"][0]
        assert view["kept"] and [row["id"] for row in dataset_images(studio, character["dataset_id"])] == \
            [view["image"]], "the view alone"
        assert character["state"]["photos"][1]["image"] is None, "the deleted photo stays out"


def test_images_deleted_before_their_dataset_stay_out_of_the_dataset_made_again(studio, tiny_model, tiny_clip,
                                                                              portrait, tmp_path):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=3))
    flipped = tmp_path / "flipped.png"
    Image.open(portrait).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    state = add_photos(studio, "anna", "local", [flipped], face=1)[0]["state"]
    delete_image(studio, state["views"][1]["image"], "local")  # no edit between these and the dataset's deletion
    delete_image(studio, state["photos"][1]["image"], "local")
    shown = summary(studio, find_character(studio, "anna", "local"))
    assert (shown["dataset"], shown["kept"], shown["real_photos"]) == ("anna", 2, 0)
    assert shown["views"][1]["reason"] == DELETED_THERE

    delete_dataset(studio, "anna", "local")
    shown = summary(studio, find_character(studio, "anna", "local"))
    assert shown["dataset"] is None and shown["dataset_deleted"] and dataset_words(shown) == (
        "its dataset was deleted: it is made again from 2 kept view(s) and 0 real photo(s) at the next edit or "
        "training")
    character = ensure_dataset(studio, find_character(studio, "anna", "local"), "train it")
    views = character["state"]["views"]
    assert [row["id"] for row in dataset_images(studio, character["dataset_id"])] == \
        [views[0]["image"], views[2]["image"]], "views 1 and 3 alone"


def test_edits_never_reach_another_user_s_dataset_or_attach_another_s_run(studio, tiny_model, tiny_clip, portrait,
                                                                        tmp_path):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    bob = create_dataset(studio, "private", "bob")
    Image.new("RGB", (256, 256), "teal").save(tmp_path / "bob.png")
    [bobs] = [entry["id"] for entry in add_images(studio, bob["id"], "bob", [tmp_path / "bob.png"]).added]
    character = find_character(studio, "anna", "local")
    delete_dataset(studio, "anna", "local")
    character["state"]["views"][0]["image"] = bobs  # links that name bob's rows, however they came to be
    studio.store.update("characters", character["id"], dataset_id=bob["id"], state=character["state"])
    reject_view(studio, "anna", "local", 1)
    add_photos(studio, "anna", "local", [portrait])
    assert [row["id"] for row in dataset_images(studio, bob["id"])] == [bobs]

    other = new_character(studio, "cleo", "local", "zxc", {})
    lora = studio.store.insert("loras", {"owner": "local", "name": "annas", "path": "loras/annas.safetensors"})
    run = studio.store.insert("jobs", {"owner": "local", "kind": "train", "status": "completed",
                                       "result": {"lora_id": lora}})
    assert finish_character(studio, other["id"], run) is None, "not one of its runs"
    assert find_character(studio, "cleo", "local")["lora"] is None
    assert studio.store.get("loras", lora)["metadata"] is None


def test_deleting_a_character_while_it_is_made_says_so_and_leaves_nothing(studio, tiny_model, tiny_clip,
                                                                         portrait, monkeypatch):
    notes: list[str] = []

    def progress(done, total, text):
        if done == 1:
            notes.append(deleted_note(studio, delete_character(studio, "anna", "local")))

    with pytest.raises(NotFound, match="'anna' was deleted while a view of it was being made: nothing more"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=3), on_progress=progress)
    assert studio.store.count("characters") == studio.store.count("datasets") == 0
    assert notes == ["Deleted character 'anna' and its photos while it was being made: its making stops and "
                     "deletes the dataset it made (the views made so far stay in History)."], "as it happened"

    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    make_view = making.make_view

    def deleted_meanwhile(*args, **kwargs):
        made = make_view(*args, **kwargs)
        delete_character(studio, "anna", "local")
        return made

    monkeypatch.setattr(making, "make_view", deleted_meanwhile)
    with pytest.raises(NotFound, match="'anna' was deleted while a view of it was being made"):
        regenerate_view(studio, "anna", "local", 1)


def test_a_dataset_gone_while_its_character_is_made_says_the_character_was_not_made(studio, tiny_model, tiny_clip,
                                                                                    portrait):
    """Should the dataset go anyway (its row deleted by a process that cannot see the maker's), the making says
    what happens: the character is not made and its views stay in History."""
    def progress(done, total, text):
        if done == 1:
            studio.store.delete("datasets", find_dataset(studio, "anna", "local")["id"])

    with pytest.raises(NotFound, match="deleted while the character was being made: the character was not made "
                                       r"\(its views stay in History as generations\); create it again"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2), on_progress=progress)
    assert studio.store.count("characters") == 0 and studio.store.count("generations", "status = 'completed'") == 2


def test_a_view_the_safety_check_flagged_is_neither_scored_nor_kept(studio, tiny_model, tiny_clip, portrait,
                                                                    tmp_path):
    save_aid_settings(studio.config, AidSettings(safety_model=str(save_tiny_classifier(tmp_path / "nsfw", "nsfw")),
                                                 safety_action="withhold", safety_mandatory=True))
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2))
    assert report.images == 0 and [r["reason"] for r in report.rejected] == [FLAGGED, FLAGGED]
    views = regenerate_view(studio, "anna", "local", 1)["state"]["views"]
    assert [(v["score"], v["kept"], v["reason"]) for v in views] == [(None, False, FLAGGED)] * 2
    assert dataset_images(studio, find_dataset(studio, "anna", "local")["id"]) == []
    with pytest.raises(InvalidInput, match=r"has no kept view: all were flagged by the safety check. Regenerate "
                                           r"views \(each with a new seed\), create it again with other prompts or "
                                           "photos, or add real photos") as refused:
        train_character(studio, "anna", base="sdxl")
    assert "threshold" not in str(refused.value), "a lower identity threshold keeps no flagged view"


def test_a_view_the_dataset_refuses_as_a_duplicate_is_not_kept(studio, tiny_model, tiny_clip, portrait,
                                                               monkeypatch):
    make_view = making.make_view
    monkeypatch.setattr(making, "make_view", lambda studio, owner, photo, text, seed, *args: make_view(
        studio, owner, photo, text, 7, *args))  # the same prompt and seed twice: the same picture
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=None,
                                              prompts=["front view"] * 2))  # as many views as prompts
    views = find_character(studio, "anna", "local")["state"]["views"]
    assert report.images == 1 == len(dataset_images(studio, find_dataset(studio, "anna", "local")["id"]))
    assert views[0]["kept"] and not views[1]["kept"] and views[1]["image"] is None
    assert views[1]["reason"].startswith("refused by the dataset: duplicate of view 1 ("), "named as the user knows it"


def test_a_photo_the_dataset_already_has_is_not_kept_and_the_refusal_says_so(studio, tiny_model, tiny_clip,
                                                                             portrait, tmp_path):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    group = two_faces(tmp_path, portrait)
    added, refused = add_photos(studio, "anna", "local", [group], face=1)
    assert len(added["state"]["photos"]) == 2 and refused == []
    again, refused = add_photos(studio, "anna", "local", [portrait, group], face="0, 1")
    assert refused == [{"file": "two.png",
                        "reason": "refused by the dataset: duplicate of the real photo two.png (same file)"}]
    assert [p["source"] for p in again["state"]["photos"]] == ["astronaut.png", "two.png", "astronaut.png"]
    assert all(studio.config.absolute(p["photo"]).is_file() for p in again["state"]["photos"])
    assert len(list((character_dir(studio, again["id"]) / "photos").glob("*.png"))) == 6, "3 photos, 3 faces"
    images = dataset_images(studio, find_dataset(studio, "anna", "local")["id"])
    assert len(images) == 3 and images[-1]["id"] == again["state"]["photos"][2]["image"]


def test_a_name_given_to_another_character_is_refused_as_such(studio, tiny_model, tiny_clip, portrait):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    with pytest.raises(InvalidInput, match="You already have a character named 'anna': pick another name"):
        create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))


def test_a_view_number_must_be_given_and_whole(studio, tiny_model, tiny_clip, portrait):
    create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=2))
    for empty in (None, " "):
        with pytest.raises(InvalidInput, match=r"Type a view number \(1 to 2\)"):
            reject_view(studio, "anna", "local", empty)
    with pytest.raises(InvalidInput, match=r"The view number must be a whole number \(got 1.6\)"):
        reject_view(studio, "anna", "local", 1.6)
    assert all(view["kept"] for view in find_character(studio, "anna", "local")["state"]["views"])


MAKER = """
import sys, time
from masuka.characters.library import new_character, update_character
from masuka.config import Config
from masuka.datasets.library import create_dataset
from masuka.studio import Studio

studio = Studio.open(Config.from_env(data_dir=sys.argv[1], auth=""))
character = new_character(studio, "anna", "local", "ohwx", {})
update_character(studio, character, dataset_id=create_dataset(studio, "anna", "local", "ohwx", None, {})["id"])
print(character["id"], flush=True)
time.sleep(300)  # still making its views
"""


def test_a_character_whose_making_was_killed_is_discarded_one_made_elsewhere_stays(studio, tiny_model, tiny_clip,
                                                                                  portrait):
    import subprocess
    import sys
    from pathlib import Path

    maker = subprocess.Popen([sys.executable, "-c", MAKER, str(studio.config.data_dir)], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        character_id = int(maker.stdout.readline())  # type: ignore[union-attr]
        # being made by another process (the CLI while the app lists, say): left alone
        assert [c["name"] for c in list_characters(studio, "local")] == ["anna"]
        with pytest.raises(InvalidInput, match="already have a character named 'anna'"):
            create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
        with pytest.raises(InvalidInput, match="'anna' is being made into this dataset: let it finish"):
            delete_dataset(studio, "anna", "local", admin=True)  # its views go into it: refused, admins too
        assert find_dataset(studio, "anna", "local")
    finally:
        maker.kill()  # SIGKILL: its own clean-up never runs
        maker.wait(timeout=30)
    assert list_characters(studio, "local") == [], "nothing of the unfinished character is kept"
    assert studio.store.count("datasets") == 0 and not character_dir(studio, character_id).exists()
    report = create_character(studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    assert find_character(studio, "anna", "local")["id"] == report.character
    assert "building" not in find_character(studio, "anna", "local")["state"]
