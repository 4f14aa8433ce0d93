"""The generation aids through the live app's API, as a shared studio's users meet them: an admin makes the
safety check mandatory, a user's images are withheld, and the optimized prompt comes back with the result."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from masuka.image.safety import PLACEHOLDER
from masuka.testing.http import FakeServer
from tests.image.test_prompt_optimizer import DETAILED, completion
from tests.image.tiny_aids import save_tiny_classifier


def test_admin_makes_the_safety_check_mandatory_and_the_optimized_prompt_is_shown(live_app, tiny_model, tmp_path,
                                                                                   monkeypatch):
    classifier = save_tiny_classifier(tmp_path / "nsfw", "nsfw")
    with FakeServer(lambda request: completion(DETAILED)) as chat:
        monkeypatch.setenv("MASUKA_PROMPT_LLM_URL", chat.url)
        app = live_app(auth="admin:admin-pw,ana:ana-pw")
        admin = Client(app.url, auth=("admin", "admin-pw"), verbose=False)
        ana = Client(app.url, auth=("ana", "ana-pw"), verbose=False)
        settings = dict(llm="some/llm", url="", endpoint_model="tiny-chat", safety_model=str(classifier),
                        threshold=0.5, action="withhold", mandatory=True)
        with pytest.raises(Exception, match="Only an admin"):
            ana.predict(**settings, api_name="/save_aid_settings")
        assert "saved" in admin.predict(**settings, api_name="/save_aid_settings")

        gallery, _seeds, status = ana.predict(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64,
                                              height=64, seed=4, optimize_prompt=True, api_name="/generate_image")
    [image] = gallery
    assert "flagged (withheld" in image["caption"]
    assert (np.asarray(Image.open(image["image"]).convert("RGB")) == PLACEHOLDER).all()
    assert f"Optimized prompt** (endpoint:tiny-chat): {DETAILED}" in status
    assert chat.requests[0].json()["model"] == "tiny-chat"
    row = app.studio.store.find("generations", limit=1)[0]
    assert row["owner"] == "ana" and row["params"]["safety"]["flagged"] is True
    assert row["params"]["original_prompt"] == "a fox"


def test_queued_jobs_keep_the_aids_asked_for(live_app, tiny_model):
    from tests.queue.test_ui import wait_until_done

    app = live_app()
    client = Client(app.url, verbose=False)
    added = client.predict(prompt="a wall", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=2,
                           face_detail=True, face_strength=0.3, api_name="/queue_add")
    (job_id,) = added["jobs"]
    assert wait_until_done(client, job_id)["status"] == "completed"
    [row] = app.studio.store.find("generations", "queue_id = ?", [job_id])
    assert row["params"]["face_detail"]["strength"] == 0.3


def test_stop_ends_a_slow_prompt_optimizer_s_wait(live_app, tiny_model, monkeypatch):
    """While the prompt waits for the chat endpoint, Stop ends the wait at once, with nothing made."""
    import threading

    from masuka.testing.http import Reply

    asked, release = threading.Semaphore(0), threading.Event()

    def slow(request):
        asked.release()
        release.wait(90)
        return completion(DETAILED) if release.is_set() else Reply(503, "never released")

    model = str(tiny_model("flux"))
    with FakeServer(slow) as chat:
        monkeypatch.setenv("MASUKA_PROMPT_LLM_URL", chat.url)
        app = live_app(auth="alice:pw1")
        alice = Client(app.url, auth=("alice", "pw1"), verbose=False)
        request = dict(model=model, steps=1, width=64, height=64, api_name="/generate_image")
        stopped = alice.submit(prompt="a cat", seed=3, optimize_prompt=True, **request)
        assert asked.acquire(timeout=120), "the optimizer never asked the endpoint"
        alice.predict(api_name="/stop_image")
        _gallery, seeds, status = stopped.result(timeout=60)  # while the endpoint still holds the request
        assert not release.is_set() and status.startswith("Stopped") and seeds == ""
        release.set()
        assert app.studio.store.find("generations") == []
