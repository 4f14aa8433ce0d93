"""The Characters tab through its Gradio API on the live app: create from an uploaded photo, reject a view (its
parameter names are checked against the README with every other endpoint's in tests/test_api_names.py)."""

from __future__ import annotations

import pytest

from .test_making import two_faces


def test_character_flow_through_the_api(live_app, tiny_model, tiny_clip, portrait, no_face, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    running = live_app()
    client = Client(running.url, verbose=False)
    model = str(tiny_model("sdxl"))
    name, status, views = client.predict("anna", "ohwx", [handle_file(str(portrait))], model, 2, "", 0.5, -1.0,
                                         False, "", str(tiny_clip), "", 64, 2, 0, api_name="/create_character")
    assert name == "anna" and "dataset **anna** with 2 kept view(s)" in status and "0 rejected" in status
    assert [view["caption"].split(" ", 1)[0] for view in views] == ["1.", "2."]

    status, faces, views, grid = client.predict("anna", 2, api_name="/reject_character_view")
    assert "with 1 kept view(s)" in status and views[1]["caption"].endswith("rejected") and grid is None
    assert len(faces) == 1, "the face crop of the one photo"
    group = two_faces(tmp_path, portrait)
    status, faces, views, grid = client.predict("anna", [handle_file(str(group))], "2",
                                                api_name="/add_character_photos")
    assert len(faces) == 2 and "with 1 kept view(s)" in status

    with pytest.raises(AppError, match="No face was found in bands.png"):
        client.predict("bea", "x", [handle_file(str(no_face))], model, 2, "", 0.5, -1.0, False, "", str(tiny_clip),
                       "", 64, 2, 0, api_name="/create_character")
    with pytest.raises(AppError, match="An outfit reference needs an edit model that takes several images"):
        client.predict("cleo", "x", [handle_file(str(portrait))], model, 2, "", 0.5, -1.0, False, "", str(tiny_clip),
                       "", 64, 2, 0, handle_file(str(portrait)), api_name="/create_character")
    with pytest.raises(AppError, match="No character 'bea'"):
        client.predict("bea", "sdxl", 10, 0.73, api_name="/train_character")
