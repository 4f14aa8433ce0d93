"""The queue through the live app's API: jobs added over HTTP run in the app's background worker, per user; the
Queue tab's handlers and wiring."""

from __future__ import annotations

import time

import gradio as gr
import pytest
from gradio_client import Client

from masuka.image.generate import ImageRequest
from masuka.queue.jobs import queue_images
from masuka.queue.worker import work_until_empty
from masuka.ui import queue

SKIP = gr.skip()


def wait_until_done(client: Client, job_id: int) -> dict:
    while True:
        job = next(j for j in client.predict(api_name="/queue_status") if j["id"] == job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)


def test_queue_add_status_and_control_over_the_api(live_app, tiny_model):
    app = live_app(auth="ann:pw-ann,bob:pw-bob")
    ann = Client(app.url, auth=("ann", "pw-ann"), verbose=False)
    bob = Client(app.url, auth=("bob", "pw-bob"), verbose=False)
    added = ann.predict(prompt="", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=5,
                        prompts="a {red|blue} fox", api_name="/queue_add")
    (job_id,) = added["jobs"]
    job = wait_until_done(ann, job_id)
    assert (job["status"], job["done"], len(job["images"])) == ("completed", 2, 2)
    rows = app.studio.store.find("generations", "queue_id = ?", [job_id], order_by="id")
    assert [(r["owner"], r["prompt"]) for r in rows] == [("ann", "a red fox"), ("ann", "a blue fox")]

    assert bob.predict(api_name="/queue_status") == []  # another user's jobs are not shown
    with pytest.raises(Exception, match="no queued job"):
        bob.predict("retry", job_id, api_name="/queue_control")
    with pytest.raises(Exception, match="is completed"):
        ann.predict("retry", job_id, api_name="/queue_control")


def test_grid_over_the_api(live_app, tiny_model):
    app = live_app()
    client = Client(app.url, verbose=False)
    grid, cells = client.predict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                                 seed=3, x="guidance=1,2", y="prompt=red,blue", api_name="/grid")
    assert len(cells) == 4 and grid
    rows = app.studio.store.find("generations", order_by="id")
    assert [(r["guidance"], r["prompt"]) for r in rows] == [(1.0, "a red fox"), (2.0, "a red fox"),
                                                            (1.0, "a blue fox"), (2.0, "a blue fox")]


def test_a_grid_queued_over_the_api_runs_in_the_background(live_app, tiny_model):
    app = live_app()
    client = Client(app.url, verbose=False)
    message = client.predict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                             seed=3, x="sampler=Euler,Euler Karras", api_name="/queue_grid")
    job_id = int(message.split("job ")[1].split(":")[0])
    job = wait_until_done(client, job_id)
    assert (job["status"], job["task"], len(job["images"])) == ("completed", "grid", 2) and job["grid"]
    with pytest.raises(Exception, match="flow-matching"):
        client.predict(prompt="a fox", model=str(tiny_model("flux")), x="sampler=Euler,DDIM", api_name="/queue_grid")


def test_queue_add_from_a_starting_image(live_app, tiny_model, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    picture = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (30, 90, 200)).save(picture)
    app = live_app()
    client = Client(app.url, verbose=False)
    added = client.predict(prompt="a blue lake", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=2,
                           init_image=handle_file(str(picture)), strength=0.5, api_name="/queue_add")
    job = wait_until_done(client, added["jobs"][0])
    assert job["status"] == "completed", job["error"]
    row = app.studio.store.find("generations", "queue_id = ?", [job["id"]])[0]
    assert (row["params"]["task"], row["params"]["strength"]) == ("img2img", 0.5)
    assert row["params"]["init_image"].startswith("outputs/local/inputs/")
    with pytest.raises(Exception, match="uploaded files"):  # a path on the server is not an upload
        client.predict(prompt="a lake", model=str(tiny_model("flux")), init_image=str(picture), api_name="/queue_add")


def test_queue_add_and_grid_keep_the_image_tabs_sampler(live_app, tiny_model):
    app = live_app()
    client = Client(app.url, verbose=False)
    form = dict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=3,
                sampler="Euler Karras")
    job = wait_until_done(client, client.predict(**form, api_name="/queue_add")["jobs"][0])
    assert job["status"] == "completed", job["error"]
    client.predict(**form, x="seed=1,2", api_name="/grid")
    rows = app.studio.store.find("generations", order_by="id")
    assert [r["params"].get("sampler") for r in rows] == ["Euler Karras"] * 3


def test_the_tabs_that_send_the_image_form_send_its_sampler(studio):
    """Add to queue, prompt batches, the Grid tab and Render pairs take the Image tab's Sampler, last."""
    from masuka.ui.app import build_app

    demo = build_app(studio)
    sampler = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Sampler")
    sending = [fn for fn in demo.fns.values() if fn.name in ("queue_form", "make_grid", "add_grid", "make")]
    assert sorted(fn.name for fn in sending) == ["add_grid", "make", "make_grid", "queue_form", "queue_form"]
    assert all(fn.inputs[-1] is sampler for fn in sending)


def test_the_chosen_jobs_results_follow_it_as_it_runs(studio, tiny_model):
    """The timer's poll refreshes the results of the chosen job when it made images since they were shown, and
    leaves the gallery alone (no flicker) when nothing changed."""
    (job_id,) = queue_images(studio, ImageRequest(prompt="a red fox", model=str(tiny_model("flux")), steps=1,
                                                  width=64, height=64, seed=2, batch=2))
    table, results, shown = queue.poll(studio, job_id, [], None)
    assert table[0][:3] == [job_id, "local", "queued"] and results == shown == SKIP, "no images yet: left alone"
    work_until_empty(studio)
    table, results, shown = queue.poll(studio, job_id, [], None)
    assert table[0][2] == "completed" and results == shown and [caption for _path, caption in results] == [
        "image 1", "image 2"]
    assert queue.poll(studio, job_id, shown, None)[1:] == (SKIP, SKIP), "unchanged: no new gallery"
    assert queue.poll(studio, None, shown, None)[1:] == (SKIP, SKIP), "no job chosen: the gallery stays"
