"""The Image tab's "Speed and memory" settings reach the pipeline: through the live app's API."""

from __future__ import annotations

from gradio_client import Client


def test_memory_plan_chosen_in_the_ui_is_used_and_recorded(live_app, tiny_model):
    app = live_app()
    client = Client(app.url, verbose=False)
    gallery, seeds, status = client.predict(
        prompt="a red fox in the snow", model=str(tiny_model("flux")), steps=2, width=64, height=64, seed=9,
        memory_plan="fp8_offload", api_name="/generate_image")
    assert len(gallery) == 1 and seeds == "9" and status.startswith("Done")
    row = app.studio.store.find("generations", limit=1)[0]
    assert row["params"]["memory_plan"] == "fp8_offload" and row["params"]["fast"] is False
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate_image"]
    names = [p["parameter_name"] for p in api["parameters"]]
    assert names[:10] == ["prompt", "model", "negative_prompt", "steps", "guidance", "width", "height", "seed",
                          "batch", "loras"]
