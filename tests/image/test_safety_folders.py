"""The safety model must be an image classifier: a local folder that is not one (a diffusers pipeline's, a folder
missing its processor) is refused when Settings or the command line save it, and before any image is made when
aids.json names it anyway; otherwise every checked image would be made, then thrown away."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.aid_settings import AidSettings, load_aid_settings, save_aid_settings
from masuka.image.generate import ImageRequest, generate_images
from tests.image.tiny_aids import save_tiny_classifier

NOT_A_CLASSIFIER = "is not an image classifier but a diffusers pipeline \\(model_index.json\\): its folder has no " \
    "config.json with its labels \\(id2label\\) and no preprocessor_config.json"


def test_settings_refuse_a_pipeline_folder_as_the_safety_model(config, tiny_model):
    save_aid_settings(config, AidSettings(safety_mandatory=True))
    before = (config.data_dir / "aids.json").read_bytes()
    with pytest.raises(InvalidInput, match=NOT_A_CLASSIFIER):
        save_aid_settings(config, AidSettings(safety_model=str(tiny_model("flux")), safety_mandatory=True))
    assert (config.data_dir / "aids.json").read_bytes() == before


def test_a_classifier_folder_without_its_processor_is_refused_and_a_whole_one_is_kept(config, tmp_path):
    whole = save_tiny_classifier(tmp_path / "nsfw", "nsfw")
    assert save_aid_settings(config, AidSettings(safety_model=str(whole))).safety_model == str(whole)
    (whole / "preprocessor_config.json").unlink()
    with pytest.raises(InvalidInput, match="is not an image classifier: its folder has no preprocessor_config.json"
                                           "\\. Choose an NSFW image classifier"):
        save_aid_settings(config, AidSettings(safety_model=str(whole)))
    assert load_aid_settings(config).safety_model == str(whole)  # what was saved before stays


def test_the_command_line_refuses_it_in_one_line(capsys, tmp_path, tiny_model):
    pipeline = str(tiny_model("flux"))
    code = main(["settings", "aids", "--safety-model", pipeline, "--data-dir", str(tmp_path / "data")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith(f"error: The safety model {pipeline} is not an image classifier")


def test_a_pipeline_folder_saved_before_is_refused_before_any_image_is_made(studio, tiny_model):
    """aids.json written before the check (or by hand), with the check mandatory: every user's generation is
    refused before diffusion with the reason, instead of made and thrown away."""
    (studio.config.data_dir / "aids.json").write_text(json.dumps({"safety_model": str(tiny_model("flux")),
                                                                  "safety_mandatory": True}))
    request = ImageRequest(prompt="a harbour", model=str(tiny_model("flux")), steps=1, seed=2, width=64, height=64)
    with pytest.raises(InvalidInput, match=NOT_A_CLASSIFIER):
        generate_images(studio, request)
    assert studio.store.find("generations") == []


def test_the_settings_tab_refuses_it_for_the_admin(live_app, tiny_model):
    app = live_app(auth="admin:admin-pw,ana:ana-pw")
    admin = Client(app.url, auth=("admin", "admin-pw"), verbose=False)
    with pytest.raises(Exception, match="is not an image classifier but a diffusers pipeline"):
        admin.predict(llm="some/llm", url="", endpoint_model="tiny-chat", safety_model=str(tiny_model("flux")),
                      threshold=0.5, action="withhold", mandatory=True, api_name="/save_aid_settings")
    assert not (app.studio.config.data_dir / "aids.json").exists()
