"""What runs when the page opens, as one event.

Gradio's page updates the loading status of every component it tracks at each status message of every event, and
finds each one by walking the whole layout: with MASUKA's ~700 components, the 22 reads the tabs ask for as the
page opens took a browser 10 s of CPU as 22 events, on a 2-core machine where the page without them takes 3 s.
One event that runs them in turn and fills all their outputs takes 5 s, and one request instead of 22."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.blocks import Block
from gradio.components import Component
from gradio.helpers import special_args
from gradio.utils import is_prop_update

log = logging.getLogger(__name__)

#: what a tab asks to run as the page opens: ``(fn, inputs, outputs)``, where either may be one component or a list
PageRead = tuple[Callable, Any, Any]


def as_list(components: Any) -> list[Component]:
    """Inputs or outputs as an event takes them (none, one component or several) as a list."""
    if components is None:
        return []
    return list(components) if isinstance(components, (list, tuple)) else [components]


class PageOpened:
    """The one event's handler: runs every read in turn, each with its own inputs (and the ``gr.Request`` where it
    takes one, as Gradio would pass it), and fills every read's outputs (a component two reads fill ends as the
    two events left it: :func:`_merged`). A read that fails leaves its outputs as they are and says why in a
    warning; the others still fill theirs. ``inputs`` and ``outputs`` are the event's."""

    __name__ = "page_opened"

    def __init__(self, reads: list[PageRead]) -> None:
        self.reads = list(reads)
        self.inputs: list[Component] = []
        self.outputs: list[Component] = []
        for fn, inputs, outputs in self.reads:
            if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn):
                raise TypeError(f"{fn.__name__}: what runs as the page opens is a plain function")
            self.inputs += [c for c in as_list(inputs) if c not in self.inputs]
            self.outputs += [c for c in as_list(outputs) if c not in self.outputs]

    def __call__(self, request: gr.Request, *values: Any) -> list[Any]:
        given = dict(zip((id(c) for c in self.inputs), values, strict=True))
        filled: dict[int, Any] = {}
        for fn, inputs, outputs in self.reads:
            targets = as_list(outputs)
            try:
                args, *_ = special_args(fn, [given[id(c)] for c in as_list(inputs)], request)
                answer = fn(*args)
            except gr.Error as refused:  # one panel refused leaves the others to fill
                gr.Warning(str(refused))
                continue
            except Exception as error:
                log.exception("%s failed as the page opened", getattr(fn, "__name__", fn))
                gr.Warning(f"Part of the page could not be shown ({type(error).__name__}); see the app's log.")
                continue
            for component, value in zip(targets, _answers(answer, targets), strict=True):
                filled[id(component)] = _merged(filled.get(id(component), gr.skip()), value)
        return [filled.get(id(c), gr.skip()) for c in self.outputs]


def _answers(answer: Any, targets: list[Component]) -> list[Any]:
    """One read's answer as one value per output, the ways Gradio takes an answer (a value for one output; a tuple
    or list for several; a dict by component, outputs it leaves out unchanged)."""
    if isinstance(answer, dict) and all(isinstance(key, Component) for key in answer):
        return [answer.get(c, gr.skip()) for c in targets]
    if len(targets) == 1:
        return [answer]
    return list(answer)


def _merged(earlier: Any, later: Any) -> Any:
    """What a component two reads fill gets, as two events' answers left it: a later update of some properties
    (``gr.update(interactive=...)``, a component, ``gr.skip()``) keeps the earlier value and properties it does not
    set; a later value replaces the earlier one."""
    earlier, later = as_update(earlier), as_update(later)
    if not is_prop_update(later):
        return later
    return {**earlier, **later} if is_prop_update(earlier) else {"value": earlier, **later}


def as_update(answer: Any) -> Any:
    """A component returned as an answer (``gr.Button(interactive=False)``) as the update it stands for, as Gradio
    reads it; any other answer as it is."""
    return {**answer.constructor_args, "__type__": "update"} if isinstance(answer, Block) else answer
