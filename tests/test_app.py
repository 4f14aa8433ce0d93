"""The live app on loopback, driven through gradio_client like any API user."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client

from masuka.config import Config
from masuka.server import public_warning, sign_in_line


@pytest.fixture(scope="module")
def open_app(tmp_path_factory):
    """One app without sign-in, served on loopback, for the tests here that need no other: each reads only the
    rows of its own prompt, so what another test made (or the order they run in) does not matter."""
    from masuka.keys import services
    from masuka.server import launch
    from tests.conftest import free_port

    with pytest.MonkeyPatch.context() as patch:  # as tests/conftest.py's _no_keys, for the app's whole life
        for name in (name for declared in services().values() for name in declared.key_env):
            patch.delenv(name, raising=False)
        running = launch(Config.from_env(data_dir=tmp_path_factory.mktemp("open-app"), auth=""), host="127.0.0.1",
                         port=free_port(), block=False)
        yield running
        running.close()


def generate(client, model, **kw):
    values = dict(prompt="a snowy mountain", model=str(model), negative_prompt="", steps=2, guidance=3.0, width=64,
                  height=64, seed=5, batch=1, loras=[])
    values.update(kw)
    return client.predict(**values, api_name="/generate_image")


def test_generate_image_api_saves_and_lists_in_history(open_app, tiny_model):
    app = open_app
    client = Client(app.url, verbose=False)
    prompt = "a snowy ridge"  # this test's rows
    gallery, seeds, status = generate(client, tiny_model("flux"), batch=2, prompt=prompt)
    assert seeds == "5, 6" and len(gallery) == 2 and "saved" in status
    rows = app.studio.store.find("generations", "prompt = ?", [prompt], order_by="id")
    assert [(r["seed"], r["status"]) for r in rows] == [(5, "completed"), (6, "completed")]
    _images, table = client.predict(1, api_name="/history")
    assert [row[5] for row in table["data"] if row[6] == prompt] == [6, 5]
    assert app.studio.models.loads == 1  # the first load of the one model this app's tests use
    generate(client, tiny_model("flux"), seed=9, prompt=prompt)
    assert app.studio.models.loads == 1, "the second request reuses the loaded pipeline"


def test_api_defaults_and_bad_input_error(open_app, tiny_model):
    client = Client(open_app.url, verbose=False)
    with pytest.raises(Exception, match="multiple of 16"):
        generate(client, tiny_model("flux"), width=72)
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(prompt="", model=str(tiny_model("flux")), api_name="/generate_image")


def test_auth_protects_ui_and_api(live_app, tiny_model):
    app = live_app(auth="ana:s3cret")
    assert httpx.get(app.url + "gradio_api/info").status_code == 401
    with pytest.raises(Exception):  # noqa: B017 - gradio_client's error type for a refused sign-in varies
        Client(app.url, verbose=False)
    with pytest.raises(Exception):  # noqa: B017 - likewise
        Client(app.url, auth=("ana", "wrong"), verbose=False)
    client = Client(app.url, auth=("ana", "s3cret"), verbose=False)
    generate(client, tiny_model("flux"))
    assert app.studio.store.find("generations")[0]["owner"] == "ana"


def test_public_without_auth_warns(tmp_path):
    open_config = Config.from_env(data_dir=tmp_path, auth="")
    assert "without auth" in public_warning(open_config, "0.0.0.0", False, False)
    assert "internet" in public_warning(open_config, "127.0.0.1", True, False)
    assert public_warning(open_config, "127.0.0.1", False, False) is None
    assert public_warning(Config.from_env(data_dir=tmp_path, auth="a:b"), "0.0.0.0", True, False) is None


def test_the_start_up_log_names_who_may_sign_in(tmp_path):
    """A password with a comma and a colon after it splits into an account nobody meant: the log shows it."""
    assert sign_in_line(Config.from_env(data_dir=tmp_path, auth="")) is None
    assert sign_in_line(Config.from_env(data_dir=tmp_path, auth="alice:pa,ss:word")) == "Sign-in for 2 user(s)."


def test_stop_button_stops_between_steps_and_keeps_finished_images(open_app, tiny_model):
    import time

    app = open_app
    client = Client(app.url, verbose=False)
    mine = ("prompt = ?", ["a long one"])  # this test's rows
    job = client.submit(prompt="a long one", model=str(tiny_model("flux")), negative_prompt="", steps=30,
                        guidance=3.0, width=64, height=64, seed=1, batch=4, loras=[], api_name="/generate_image")
    deadline = time.monotonic() + 60
    while (app.studio.store.count("generations", f"status = 'completed' and {mine[0]}", mine[1]) < 1
           and time.monotonic() < deadline):
        time.sleep(0.05)
    client.predict(api_name="/stop_image")
    gallery, _seeds, status = job.result(timeout=60)
    assert status.startswith("Stopped")
    statuses = [r["status"] for r in app.studio.store.find("generations", *mine, order_by="id")]
    assert statuses[-1] == "cancelled" and "completed" in statuses and len(statuses) < 4
    assert len(gallery) == statuses.count("completed")
