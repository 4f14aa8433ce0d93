"""The Image tab's Control and Reference accordions through the ``generate_image`` API of a live app, Reuse from
History and "Read parameters"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masuka.history.actions import reuse_parameters
from masuka.image.control import Control
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.reference import StyleReference
from masuka.models.tiny_control import save_tiny_controlnet, save_tiny_ip_adapter
from masuka.ui.image import GUIDE_FIELDS
from tests.image.guides import point_profile, square_picture


@pytest.fixture(scope="module")
def tiny_guides(tmp_path_factory):
    return (save_tiny_controlnet("sdxl", tmp_path_factory.mktemp("cn")),
            save_tiny_ip_adapter("sdxl", tmp_path_factory.mktemp("ip")))


@pytest.fixture
def sdxl_guides(monkeypatch, tiny_guides):
    """SDXL's default ControlNets and IP-Adapter pointed at tiny random ones."""
    net, adapter = (str(folder) for folder in tiny_guides)
    point_profile(monkeypatch, "sdxl", controlnet=net, reference=adapter)
    return net


@pytest.fixture
def pictures(tmp_path):
    Image.new("RGB", (64, 64), "orange").save(tmp_path / "orange.png")
    return square_picture(tmp_path), tmp_path / "orange.png"


def test_generate_image_api_takes_a_control_and_a_reference_and_reuse_redoes_it(shared_app, tiny_model, sdxl_guides,
                                                                                pictures):
    from gradio_client import Client, handle_file

    square, orange = pictures
    app = shared_app()  # the module's one app: this test finds its row by its prompt
    client = Client(app.url, verbose=False)
    model = str(tiny_model("sdxl"))
    gallery, seeds, _status = client.predict(
        prompt="a tower", model=model, steps=1, seed=3, width=64, height=64, control_kind="canny",
        control_image=handle_file(str(square)), control_weight=0.8, control_start=0.1, control_end=0.9,
        reference_image=handle_file(str(orange)), reference_weight=0.6, api_name="/generate_image")
    made = gallery[0]["image"]
    (row,) = app.studio.store.find("generations", "prompt = ?", ["a tower"])
    params = row["params"]
    assert params["controls"][0] | {"image": None} == dict(kind="canny", weight=0.8, start=0.1, end=0.9,
                                                           model=sdxl_guides, image=None)
    assert params["style_references"][0]["weight"] == 0.6

    kind, fields = reuse_parameters(app.studio, "local", True, f"g{row['id']}")
    assert kind == "image"
    assert Image.open(fields["control_image"]).size == (64, 64) and fields["control_kind"] == "canny"
    again = generate_images(app.studio, ImageRequest(
        prompt=fields["prompt"], model=fields["model"], steps=fields["steps"], guidance=fields["guidance"],
        width=fields["width"], height=fields["height"], seed=fields["seed"],
        controls=[Control(fields["control_kind"], fields["control_image"], fields["control_weight"],
                          fields["control_start"], fields["control_end"])],
        style_references=[StyleReference(fields["reference_image"], fields["reference_weight"])]))[0]
    assert np.array_equal(np.asarray(Image.open(again.path)), np.asarray(Image.open(made))), "Reuse redoes the job"

    read = client.predict(handle_file(made), api_name="/read_parameters")
    guides = dict(zip(GUIDE_FIELDS, read[15:15 + len(GUIDE_FIELDS)]))  # after the 15 form fields, then Face detail
    assert [guides[name] for name in GUIDE_FIELDS if not name.endswith("_image")] == ["canny", 0.8, 0.1, 0.9, 0.6]

    plain = generate_images(app.studio, ImageRequest(prompt="a tower", model=model, steps=1, width=64, height=64))
    _kind, fields = reuse_parameters(app.studio, "local", True, f"g{plain[0].id}")
    assert fields["control_image"] is None and fields["reference_image"] is None, "Reuse empties the pictures"


def test_a_control_on_a_model_without_controlnet_is_refused_in_the_form(shared_app, tiny_model, pictures):
    from gradio_client import Client, handle_file

    client = Client(shared_app().url, verbose=False)
    with pytest.raises(Exception, match="no ControlNet pipeline"):
        client.predict(prompt="a tower", model=str(tiny_model("sd3")), steps=1, width=64, height=64,
                       control_image=handle_file(str(pictures[0])), api_name="/generate_image")
