"""A panel that polls sends only what changed.

A poll's outputs (a jobs table, a gallery of results, a loss curve, a video player) mostly hold what the page was
sent two seconds before. Sent again, each is drawn again in the browser: a gallery or a plot redrawn every tick
flickers and costs the page CPU while nothing happened. :func:`changed_only` remembers, per page, a fingerprint of
what it last sent each output and answers ``gr.skip()`` for those that are the same."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr
import pandas as pd

from masuka.ui.page_load import as_update


def fingerprint(value: Any) -> str | None:
    """A short digest of what an output is sent (None for ``gr.skip()``, which sends nothing). An update
    (``gr.Dropdown(choices=...)``) is told by its arguments; a DataFrame by its cells."""
    value = as_update(value)
    if isinstance(value, pd.DataFrame):
        value = value.to_dict("split")
    if isinstance(value, dict) and value == gr.skip():
        return None
    return hashlib.blake2b(repr(value).encode(), digest_size=16).hexdigest()


def changed_only(fn: Callable, count: int, always: bool = False) -> Callable:
    """``fn`` for a poll that fills ``count`` outputs, taking one more input and giving one more output: a
    ``gr.State`` of the fingerprints of what this page was last sent. An output whose fingerprint is unchanged is
    answered ``gr.skip()``, unless ``always`` (a tab just shown: everything is sent, and recorded)."""

    @functools.wraps(fn)
    def handler(*args: Any) -> list[Any]:
        *given, sent = args
        answer = fn(*given)
        values = [answer] if count == 1 else list(answer)
        before = list(sent or [None] * count)
        now = [fingerprint(value) or before[i] for i, value in enumerate(values)]
        return [*(value if always or now[i] != before[i] else gr.skip() for i, value in enumerate(values)), now]

    # Gradio passes a gr.Request by its place in the signature (read with fn's type hints): the state goes last
    parameters = list(inspect.signature(fn).parameters.values())
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*parameters, inspect.Parameter("sent", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)])
    return handler
