"""``bench image --through-app``: a live MASUKA ``/generate_image`` against a bare one-tab Gradio app making the
same diffusers call and against the bare call, and MASUKA's two REST routes against the bare call, alternated in
one run. The test checks the measurement and the bounds' arithmetic; whether this machine's figures keep within
the bounds is the benchmark's to say (its exit status), since wall times on a loaded machine are noise."""

from __future__ import annotations

import pytest

from masuka.bench import image as bench_image
from masuka.bench.through_app import AROUND_CALL_TIMES, measure_through_app, over_bounds

#: Figures within every bound (ms): MASUKA a few ms over the bare app each way, REST routes ~10 ms around the call.
WITHIN = {"bare_call_ms": 100.0, "bare_app_ms": 130.0, "masuka_app_ms": 135.0, "bare_app_new_session_ms": 160.0,
          "masuka_app_new_session_ms": 190.0, "bare_app_gradio_client_ms": 150.0, "masuka_app_gradio_client_ms": 150.0,
          "a1111_rest_ms": 112.0, "gradio_share_ms": 30.0, "a1111_around_call_ms": 9.0, "openai_around_call_ms": 11.0,
          "bare_app_around_call_ms": 25.0, "masuka_around_share_ms": 12.0}


@pytest.mark.slow
def test_the_measurement_alternates_every_way_in_and_saves_each_image(tmp_path):
    rounds = 2
    figures = measure_through_app(tmp_path, rounds=rounds, size=64, steps=2)
    assert figures["bare_call_ms"] > 0 and figures["bare_app_ms"] > 0 and figures["masuka_app_ms"] > 0
    assert figures["masuka_share_ms"] == round(figures["masuka_app_ms"] - figures["bare_app_ms"], 1)
    for way in ("new_session", "gradio_client"):
        assert figures[f"{way}_share_ms"] == round(figures[f"masuka_app_{way}_ms"] - figures[f"bare_app_{way}_ms"], 1)
    for route in ("a1111", "openai"):  # the diffusers call and save recorded inside a request lie within it
        assert figures[f"{route}_around_call_ms"] > 0, figures
    assert figures["over_bounds"] == over_bounds(figures)
    images = list((tmp_path / "through-app-data").rglob("*.png"))
    # one warm-up and the measured requests each: three ways into /generate_image and two REST routes, all saved
    assert len(images) == 5 * (1 + rounds)


def test_figures_within_the_bounds_break_none_and_the_benchmark_exits_0():
    assert over_bounds(WITHIN) == []
    assert bench_image.exit_status({**WITHIN, "over_bounds": []}) == 0


@pytest.mark.parametrize("moved, named", [
    ({"masuka_app_ms": 261.0}, "masuka_app_ms 261.0 ms > 2 x bare_app_ms 130.0 ms"),
    ({"masuka_app_new_session_ms": 321.0}, "masuka_app_new_session_ms 321.0 ms > 2 x bare_app_new_session_ms"),
    ({"masuka_app_gradio_client_ms": 301.0}, "masuka_app_gradio_client_ms 301.0 ms > 2 x bare_app_gradio_client_ms"),
    ({"a1111_rest_ms": 261.0}, "a1111_rest_ms 261.0 ms > 2 x bare_app_ms 130.0 ms"),
    ({"masuka_around_share_ms": 25.0 * AROUND_CALL_TIMES + 0.1}, f"> {AROUND_CALL_TIMES} x bare_app_around_call_ms"),
    ({"openai_around_call_ms": 30.0}, "openai_around_call_ms 30.0 ms >= gradio_share_ms 30.0 ms"),
])
def test_each_bound_a_figure_breaks_is_named_and_the_benchmark_exits_1(moved, named):
    broken = over_bounds({**WITHIN, **moved})
    assert len(broken) == 1 and named in broken[0], broken
    assert bench_image.exit_status({**WITHIN, **moved, "over_bounds": broken}) == 1
