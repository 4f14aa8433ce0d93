"""A Stop arm (:func:`masuka.ui.common.stoppable`) whose work Gradio refuses before it runs (a component's
preprocessing fails, so the work never takes it) does not outlive the event: it is dropped once the event has
ended, so a Stop afterwards does not end the session's next work before it starts."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from masuka.ui.common import NOTHING_TO_STOP


def test_an_arm_gradio_refused_before_the_work_ran_does_not_stop_the_next_work(live_app, tmp_path):
    png = tmp_path / "small.png"
    Image.new("RGB", (32, 32), "teal").save(png)
    client = Client(live_app().url, verbose=False)
    with pytest.raises(Exception, match="Picture to upscale"):  # Gradio's Image refuses a path not uploaded
        client.predict(image="/etc/hosts", api_name="/upscale_image")
    # nothing runs: the refused event's arm is dropped before the Stop answers (a Stop that set it ended the next
    # upscale before it ran, and said "Stopping after the current step…")
    assert client.predict(api_name="/stop_upscale") == NOTHING_TO_STOP
    upscaled, status = client.predict(image=handle_file(str(png)), scale="2", api_name="/upscale_image")
    assert status.startswith("Done") and Image.open(upscaled).width == 64, status
    assert client.predict(api_name="/stop_upscale") != "Stopping after the current step…", "nothing left armed"


def test_the_queue_drops_an_arm_no_work_took_and_only_that():
    """:meth:`~masuka.gpu.StopFlags.unarm` of an event that ended: its arm goes if no work took it (a Stop set it:
    it must not end the next work), and is a no-op for one the work took (that work's flag stays until it ends)."""
    from masuka.gpu import StopFlags

    flags = StopFlags()
    refused = flags.arm("k", "e1")
    assert flags.stop("k") and refused.is_set()
    mine = flags.arm("k", "e2")
    flags.unarm("k", refused, "e1")
    assert flags.start("k") is mine and not mine.is_set()
    flags.unarm("k", mine, "e2")
    assert flags.stop("k"), "the running work's flag stays"
    flags.disarm("k", mine)
    assert not flags.stop("k") and not flags._flags


def test_a_stop_from_another_client_session_says_it_reaches_only_its_own_work(live_app, tiny_model):
    """Stop is per session (a Stop in one browser tab must not stop another tab's work): a second Client of the
    same user gets a clear answer, not a blank one, and the first Client's generation, waiting for the GPU
    meanwhile, still runs to the end."""
    app = live_app(auth="alice:pw1,bob:pw2")
    first, second = (Client(app.url, auth=("bob", "pw2"), verbose=False) for _ in range(2))
    with app.studio.gpu.hold("another job"):
        job = first.submit(prompt="a fox", model=str(tiny_model("sdxl")), steps=1, width=64, height=64,
                           api_name="/generate_image")
        while not app.studio.stops._flags:  # the queue armed the generation's Stop as it took it
            assert not job.done(), job.result()
            time.sleep(0.02)
        assert second.predict(api_name="/stop_image") == NOTHING_TO_STOP
    _images, _seeds, status = job.result()
    assert status.startswith("Done"), status
