"""The identity filter's models: SFace (ONNX, run by OpenCV) downloaded on first use, eye alignment, CLIP for what
is not a person and as the fallback."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from masuka.characters.facenet import (
    SIDE,
    TEMPLATE_EYES,
    FaceNet,
    aligned_face,
    box_transform,
    eye_transform,
    find_eyes,
)
from masuka.characters.identity import CLIP_MODEL, ImageEmbedder, face_model, load_embedder
from masuka.characters.library import list_characters
from masuka.datasets.preprocess import find_face
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.models.manage import model_status
from tests.models.fake_hub import FakeRepo, hub_online

from .conftest import tiny_face_onnx

SFACE_FILE = "face_recognition_sface_2021dec.onnx"
FACE_MODEL = face_model()


def test_the_eye_transform_puts_both_eyes_on_the_template():
    rng = np.random.default_rng(1)
    for _ in range(5):
        left = rng.uniform(50, 150, 2)
        right = left + rng.uniform(30, 80) * np.array([np.cos(a := rng.uniform(-0.4, 0.4)), np.sin(a)])
        matrix = eye_transform(tuple(left), tuple(right))
        moved = [matrix @ np.append(eye, 1) for eye in (left, right)]
        np.testing.assert_allclose(moved, TEMPLATE_EYES, atol=1e-6)


def test_a_tilted_face_is_turned_upright_by_its_eyes(portrait):
    import cv2

    photo = Image.open(portrait).convert("RGB")
    box = find_face(photo)
    (lx, ly), (rx, ry) = find_eyes(photo, box)
    left, top, width, height = box
    assert left < lx < left + width / 2 < rx < left + width and top < ly < top + height / 2 and top < ry

    def boxed(image):
        return cv2.warpAffine(np.asarray(image)[:, :, ::-1], box_transform(find_face(image)), (SIDE, SIDE),
                              flags=cv2.INTER_AREA).astype(float)

    upright, upright_box = aligned_face(photo).astype(float), boxed(photo)
    for angle in (-10, 10):
        tilted = photo.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
        aligned_change = np.abs(aligned_face(tilted) - upright).mean()
        assert aligned_change < 0.6 * np.abs(boxed(tilted) - upright_box).mean()


def test_a_picture_without_a_face_is_embedded_whole(tiny_facenet, no_face):
    net = FaceNet.load("tiny", tiny_facenet / "face.onnx")
    picture, speck = Image.open(no_face), Image.new("RGB", (5, 3), "white")
    assert aligned_face(picture).shape == aligned_face(speck).shape == (SIDE, SIDE, 3)
    assert net.embed([picture, speck]).shape == (2, 32)


def test_sface_is_the_default_and_only_its_file_is_downloaded_on_first_use(studio, monkeypatch, tmp_path, portrait):
    repo = FakeRepo({SFACE_FILE: tiny_face_onnx(), "face_recognition_sface_2021dec_int8.onnx": b"another variant",
                     "example_outputs/demo.jpg": b"a demo picture", "README.md": b"# SFace"})
    with hub_online(monkeypatch, {FACE_MODEL: repo}, tmp_path / "hf-cache") as hub:
        embedder, note = load_embedder(studio, "local")
        assert note is None and isinstance(embedder, FaceNet) and embedder.source == FACE_MODEL
        assert list(hub.downloads) == [SFACE_FILE]
        status = {row["repo"]: row for row in model_status()}[FACE_MODEL]
        assert status["section"] == "faces" and status["downloaded"] and "Apache" in status["license"]
        assert embedder.embed([Image.open(portrait)]).shape == (1, 32)


def test_clip_scores_what_is_not_a_person_and_stands_in_for_a_face_model_that_cannot_be_had(
        studio, monkeypatch, tmp_path, tiny_clip):
    with hub_online(monkeypatch, {CLIP_MODEL: FakeRepo.of_folder(tiny_clip)}, tmp_path / "hf-cache"):
        for kwargs in ({"faces": False}, {"model": "clip"}):
            embedder, note = load_embedder(studio, "local", **kwargs)
            assert note is None and isinstance(embedder, ImageEmbedder) and embedder.clip
        embedder, note = load_embedder(studio, "local")  # the Hub has no SFace here
        assert isinstance(embedder, ImageEmbedder) and embedder.source == CLIP_MODEL
        assert FACE_MODEL in note and "scored with CLIP instead" in note


@pytest.fixture
def empty_cache(monkeypatch, tmp_path_factory):
    """An empty Hugging Face cache (tests run offline): no model can be had."""
    from huggingface_hub import constants

    cache = str(tmp_path_factory.mktemp("empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)


def test_offline_without_either_model_the_message_names_both(studio, empty_cache):
    with pytest.raises(ModelUnavailable) as raised:
        load_embedder(studio, "local")
    assert FACE_MODEL in str(raised.value) and CLIP_MODEL in str(raised.value) and "not downloaded" in str(raised.value)


def test_a_character_whose_identity_model_cannot_be_had_fails_before_any_view(studio, tiny_model, portrait,
                                                                              tmp_path, empty_cache):
    from masuka.characters.making import CharacterRequest, create_character

    before = studio.store.count("generations")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        create_character(studio, CharacterRequest(name="anna", photos=[portrait], trigger="ohwx", views=2,
                                                  model=str(tiny_model("sdxl")), identity_model=str(tmp_path)))
    assert studio.store.count("generations") == before and list_characters(studio, "local") == []


def test_a_missing_identity_model_folder_is_said_to_be_missing(studio, tmp_path):
    (tmp_path / "face.onnx").write_bytes(tiny_face_onnx())
    for path, what in ((tmp_path / "nonexist", "does not exist"), (tmp_path / "face.onnx", "is a file")):
        with pytest.raises(InvalidInput, match=f"^The folder {re.escape(str(path))} {what}.*: give a model folder"):
            load_embedder(studio, "local", str(path))


def test_a_folder_with_several_onnx_models_needs_a_choice(studio, tmp_path, tiny_clip):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ("a.onnx", "b.onnx"):
        (folder / name).write_bytes(tiny_face_onnx())
    with pytest.raises(Exception, match="several ONNX models"):
        load_embedder(studio, "local", str(folder))


def test_the_identity_model_repo_is_held_from_its_download_to_its_load(studio, monkeypatch, tmp_path, tiny_clip):
    from masuka.models.manage import delete_model
    from tests.models.in_use import cached_repo, deletion_tried_in

    repo = cached_repo(monkeypatch, tmp_path / "hf-cache", tiny_clip, "acme/tiny-clip")
    refusals = deletion_tried_in(monkeypatch, studio, repo, studio.aids, "get")
    embedder, note = load_embedder(studio, "local", repo)
    assert note is None and embedder.source == repo and len(refusals) == 2
    assert delete_model(studio, repo) > 0  # once it is loaded
