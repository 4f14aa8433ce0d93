"""``bench image --through-app``: a live MASUKA ``/generate_image`` against a bare one-tab Gradio app making the
same diffusers call and against the bare call, and MASUKA's two REST routes against the bare call, alternated in
one run. The bounds are generous: they fail on a clear regression of MASUKA's own share (twice the bare app's
round trip, a share around the call above twice the bare app's: :data:`AROUND_CALL_TIMES`, or more time around a
REST request's diffusers call than Gradio's own round trip in the bare app), not on machine noise (the diffusers call
alone varies several-fold on a loaded machine)."""

from __future__ import annotations

import pytest

from masuka.bench.through_app import measure_through_app

#: How many times the bare app's own time around its diffusers call (``bare_app_around_call_ms``: Gradio's work
#: around the handler, about 25 ms here) MASUKA's share around the call and PNG save may take
#: (``masuka_around_share_ms``): a bound that grows with a slow machine, not a fixed time. On this 2-core machine
#: (load 4-6, 7 rounds) the share measured 10-19 ms, and 70-76 ms with a 60 ms sleep added to the request path (the
#: target is 30 ms). Taken around the call it misses the diffusers call's noise (the plain ``masuka_share_ms``, a
#: difference of two medians, read -2 to 24 ms, and 53-106 ms with the sleep). Regressions inside the call and the
#: save are left to the ratio bound.
AROUND_CALL_TIMES = 2


@pytest.mark.slow
def test_masuka_request_costs_at_most_twice_a_bare_gradio_app_making_the_same_call(tmp_path):
    rounds = 7  # medians of seven alternated rounds: one burst of work beside them moves a median of three
    figures = measure_through_app(tmp_path, rounds=rounds, size=64, steps=4)
    assert figures["bare_call_ms"] > 0 and figures["bare_app_ms"] > 0 and figures["masuka_app_ms"] > 0
    assert figures["masuka_share_ms"] == round(figures["masuka_app_ms"] - figures["bare_app_ms"], 1)
    for way in ("new_session", "gradio_client"):
        assert figures[f"{way}_share_ms"] == round(figures[f"masuka_app_{way}_ms"] - figures[f"bare_app_{way}_ms"], 1)
        assert figures[f"masuka_app_{way}_ms"] <= 2 * figures[f"bare_app_{way}_ms"], figures
    assert figures["masuka_app_ms"] <= 2 * figures["bare_app_ms"], figures
    around = AROUND_CALL_TIMES * figures["bare_app_around_call_ms"]  # the ratio above lets 60 ms more pass
    assert figures["masuka_around_share_ms"] <= around, figures
    assert figures["a1111_rest_ms"] <= 2 * figures["bare_app_ms"], figures  # no queue stream to pay for
    for route in ("a1111", "openai"):  # MASUKA's work around the diffusers call, which pipeline noise misses
        assert 0 < figures[f"{route}_around_call_ms"] < figures["bare_app_ms"] - figures["bare_call_ms"], figures
    images = list((tmp_path / "through-app-data").rglob("*.png"))
    # one warm-up and the measured requests each: three ways into /generate_image and two REST routes, all saved
    assert len(images) == 5 * (1 + rounds)
