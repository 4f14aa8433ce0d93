"""Gradio's component signatures, computed once.

Gradio reads a component class's ``__init__`` signature for every component it builds and again for every
component each time it writes the app's config (when the Blocks close, when the server app is made, twice in
``launch``), and :func:`inspect.signature` computes it anew each time. For MASUKA's ~700 components that was a
third of building the app. :func:`pin_component_signatures` stores each signature where :mod:`inspect` looks
first (``__signature__``), the same signature it would compute.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from gradio.blocks import Block


def pin_component_signatures() -> None:
    """Give every ``__init__`` of Gradio's block classes (and the function each wraps) its ``__signature__``."""
    for cls in (Block, *_subclasses(Block)):
        function = cls.__dict__.get("__init__")
        while function is not None and "__signature__" not in vars(function):
            function.__signature__ = inspect.signature(function)
            function = getattr(function, "__wrapped__", None)


def _subclasses(cls: type) -> Iterator[type]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)
