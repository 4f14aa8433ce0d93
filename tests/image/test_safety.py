"""Safety check: a tiny ViT classifier wired to say "nsfw" (or "normal") scores each result; flagged images are
blurred or withheld before they are saved, and history keeps the score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput
from masuka.image.aid_settings import AidSettings, save_aid_settings
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.safety import PLACEHOLDER
from masuka.image.upscale.job import upscale_image
from masuka.image.upscale.request import UpscaleRequest
from tests.image.tiny_aids import save_tiny_classifier


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifiers")
    return {says: save_tiny_classifier(folder / says, says) for says in ("nsfw", "normal")}


def generate(studio, model, **kw):
    values = dict(prompt="a harbour at dusk", model=str(model), steps=1, seed=11, width=64, height=64)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))[0]


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path).convert("RGB"), dtype=np.float32)


def roughness(picture: np.ndarray) -> float:
    """Mean difference between neighbouring pixels: a blurred picture has much less of it."""
    return float(np.abs(np.diff(picture, axis=0)).mean() + np.abs(np.diff(picture, axis=1)).mean())


def use(studio, classifier, **settings):
    save_aid_settings(studio.config, AidSettings(safety_model=str(classifier), **settings))


def test_flagged_image_is_blurred_and_its_score_recorded(studio, tiny_model, classifiers):
    model = tiny_model("flux")
    plain = generate(studio, model)
    use(studio, classifiers["nsfw"], safety_action="blur")
    checked = generate(studio, model, safety_check=True)
    assert roughness(pixels(checked)) < roughness(pixels(plain)) / 2
    safety = studio.store.get("generations", checked.id)["params"]["safety"]
    assert safety["flagged"] is True and safety["action"] == "blur" and safety["score"] > 0.99
    assert safety["model"] == str(classifiers["nsfw"])


def test_withheld_image_is_never_written(studio, tiny_model, classifiers):
    use(studio, classifiers["nsfw"], safety_action="withhold")
    checked = generate(studio, tiny_model("flux"), safety_check=True)
    assert (pixels(checked) == PLACEHOLDER).all(), "only a grey placeholder is on disk"
    assert studio.store.get("generations", checked.id)["params"]["safety"]["action"] == "withhold"


def test_a_normal_image_is_left_as_it_is(studio, tiny_model, classifiers):
    model = tiny_model("flux")
    plain = generate(studio, model)
    use(studio, classifiers["normal"])
    checked = generate(studio, model, safety_check=True)
    assert np.array_equal(pixels(plain), pixels(checked))
    safety = studio.store.get("generations", checked.id)["params"]["safety"]
    assert safety["flagged"] is False and safety["action"] is None and safety["score"] < 0.01


def test_mandatory_check_applies_to_requests_that_do_not_ask(studio, tiny_model, classifiers):
    use(studio, classifiers["nsfw"], safety_action="withhold", safety_mandatory=True)
    result = generate(studio, tiny_model("flux"))
    assert (pixels(result) == PLACEHOLDER).all()
    assert studio.store.get("generations", result.id)["params"]["safety"]["flagged"] is True


def test_no_check_unless_asked_or_mandatory(studio, tiny_model, classifiers):
    use(studio, classifiers["nsfw"])
    result = generate(studio, tiny_model("flux"))
    assert "safety" not in studio.store.get("generations", result.id)["params"]


def test_bad_settings_are_refused(config):
    with pytest.raises(InvalidInput, match="blur or withhold"):
        save_aid_settings(config, AidSettings(safety_action="delete"))
    with pytest.raises(InvalidInput, match="threshold"):
        save_aid_settings(config, AidSettings(safety_threshold=0))


@pytest.mark.parametrize(("field", "value", "refusal"), [
    ("prompt_llm", "\u202eevil", "invisible character"), ("safety_model", "\u202eevil", "invisible character"),
    ("safety_model", "owner/na me", "neither a Hugging Face repo id"),
    ("prompt_llm", "/no/such/folder", "neither a Hugging Face repo id"), ("safety_model", "a" * 2000, "too long"),
    ("safety_model", "a" * 300, "neither a Hugging Face repo id"),
    ("prompt_llm_url", "http://", "http\\(s\\) URL"), ("prompt_llm_url", "https://\u202eevil", "invisible"),
    ("prompt_llm_model", "gpt\x00", "control characters")])
def test_settings_no_model_could_load_are_refused_and_nothing_changes(config, field, value, refusal):
    """A value the loaders could never use is refused when an admin saves it, not at every later generation."""
    save_aid_settings(config, AidSettings(safety_mandatory=True))
    before = (config.data_dir / "aids.json").read_bytes()
    with pytest.raises(InvalidInput, match=refusal):
        save_aid_settings(config, AidSettings(**{field: value}))
    assert (config.data_dir / "aids.json").read_bytes() == before
    assert save_aid_settings(config, AidSettings(prompt_llm=str(config.data_dir))).prompt_llm == \
        str(config.data_dir)  # an existing folder is fine (a safety model folder must hold a classifier)


def test_mandatory_check_applies_to_a_detail_upscale(studio, tiny_model, classifiers, tmp_path):
    use(studio, classifiers["nsfw"], safety_action="withhold", safety_mandatory=True)
    source = tmp_path / "source.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(source)
    [result] = upscale_image(studio, UpscaleRequest(source, scale=2, detail=True, model=str(tiny_model("flux")),
                                                    prompt="a harbour", strength=1.0, steps=2, tile=64))
    assert (pixels(result) == PLACEHOLDER).all(), "a repainted picture is checked like a generated one"
    safety = studio.store.get("generations", result.id)["params"]["safety"]
    assert safety["flagged"] is True and safety["action"] == "withhold"


@pytest.fixture
def cats_and_dogs(tmp_path):
    """A classifier with no unsafe label: it could never flag an image."""
    folder = save_tiny_classifier(tmp_path / "catdog", "normal")
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"nsfw"', '"dog"'))
    return folder


def test_a_classifier_without_an_unsafe_label_is_refused_when_saved(config, cats_and_dogs):
    with pytest.raises(InvalidInput, match="has no unsafe label \\(it has normal, dog\\)"):
        save_aid_settings(config, AidSettings(safety_model=str(cats_and_dogs)))
    assert not (config.data_dir / "aids.json").exists()


def test_a_classifier_without_an_unsafe_label_is_refused_before_any_image(studio, tiny_model, cats_and_dogs):
    """Settings saved before the check (or edited by hand): the generation is refused before diffusion, no row."""
    (studio.config.data_dir / "aids.json").write_text(json.dumps({"safety_model": str(cats_and_dogs)}))
    with pytest.raises(InvalidInput, match="has no unsafe label"):
        generate(studio, tiny_model("flux"), safety_check=True)
    assert studio.store.find("generations") == []


def test_cli_says_an_image_was_flagged(capsys, studio, tiny_model, classifiers):
    from masuka.cli import main

    use(studio, classifiers["nsfw"], safety_action="withhold")
    common = ["generate", "--data-dir", str(studio.config.data_dir), "--model", str(tiny_model("flux")), "--prompt",
              "a harbour", "--steps", "1", "--width", "64", "--height", "64", "--seed", "3", "--safety-check"]
    assert main(common) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(".png flagged (withheld, score 1.00)")
    assert main([*common, "--json"]) == 0
    [safety] = json.loads(capsys.readouterr().out)["safety"]
    assert (safety["flagged"], safety["action"], safety["model"]) == (True, "withhold", str(classifiers["nsfw"]))
