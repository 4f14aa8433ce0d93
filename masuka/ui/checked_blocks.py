"""The app's Blocks: every event's raw inputs are checked before Gradio reads them.

Every door into an event (``/queue/join``, ``/call/<api>``, ``/run/<api>``) ends in ``process_api`` with the
inputs as the client sent them, so two checks sit there:

- a file reference (``{"path": ..., "meta": {"_type": "gradio.FileData"}}``) into the data dir must name a
  file the user may read (:mod:`masuka.access`): Gradio itself accepts any file under its static paths (the
  outputs and datasets folders) from whichever user names it;
- a value must have its component's type: Gradio would turn a number into a prompt (``str(5)``), pass
  ``"yes"`` on as a checkbox, or fail with a Python error on NaN in a whole-number field. A text box that holds
  a whole number (an id, a job number: :func:`masuka.ui.common.whole_number_box`) also takes an int, which its
  handler checks like the typed text.

Values a request leaves off at the end take their component's initial value, as ``gradio_client`` fills them,
so a parameter added at the end of an event stays optional at every door (``/gradio_api/call/<api>`` included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from masuka.access import readable
from masuka.errors import MasukaError
from masuka.studio import Studio
from masuka.ui.api_names import free_text_inputs
from masuka.ui.common import user_of


class CheckedBlocks(gr.Blocks):
    """``gr.Blocks`` whose events refuse another user's files and values of the wrong type, with a clear message,
    and whose API description types free-text dropdowns as text (:mod:`masuka.ui.api_names`)."""

    def __init__(self, studio: Studio, queue: dict[str, Any] | None = None, **kwargs: Any):
        self.studio = studio
        self.queue_settings = queue or {}
        super().__init__(**kwargs)  # which calls queue(): with ``queue`` given, the server app is built once here

    def queue(self, *args: Any, **kwargs: Any) -> CheckedBlocks:
        """Gradio's ``queue()``, with the settings given at construction as defaults."""
        return super().queue(*args, **{**self.queue_settings, **kwargs})

    async def process_api(self, block_fn: Any, inputs: list[Any], state: Any = None, request: Any = None,
                          *args: Any, **kwargs: Any) -> dict[str, Any]:
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        props = getattr(fn, "component_prop_inputs", ())
        if isinstance(inputs, list) and not getattr(fn, "batch", False) and len(inputs) < len(fn.inputs):
            inputs = inputs + [getattr(component, "value", None) for component in fn.inputs[len(inputs):]]
        for index, (component, value) in enumerate(zip(fn.inputs, inputs)):
            problem = None if index in props else type_problem(component, value)
            if problem:
                raise gr.Error(problem)
        user = user_of(request[0] if isinstance(request, list) and request else request)
        for path in file_references(inputs):
            if Path(path).expanduser().resolve().is_relative_to(self.studio.config.data_dir):
                try:
                    readable(self.studio, user, path)
                except MasukaError as error:
                    raise gr.Error(str(error)) from None
        return await super().process_api(block_fn, inputs, state, request, *args, **kwargs)

    def get_api_info(self, all_endpoints: bool = False, page: str | None = None) -> Any:
        """Gradio's API description, with dropdowns that take any value typed as text."""
        return free_text_inputs(self, super().get_api_info(all_endpoints=all_endpoints, page=page))


def type_problem(component: Any, value: Any) -> str | None:
    """Why ``value`` cannot be an input of ``component`` (None: it can, or Gradio checks it itself)."""
    label = getattr(component, "label", None) or type(component).__name__
    if value is None:
        return None
    if isinstance(component, gr.Checkbox) and not isinstance(value, bool):
        return f"{label} must be true or false (got {str(value)[:40]!r})."
    if isinstance(component, (gr.Number, gr.Slider)) and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return f"{label} must be a number (got {str(value)[:40]!r})."
    whole = isinstance(value, int) and not isinstance(value, bool) and getattr(component, "holds_whole_number", False)
    if isinstance(component, gr.Textbox) and not isinstance(value, str) and not whole:
        return f"{label} must be text (got {type(value).__name__})."
    if isinstance(component, gr.Dropdown) and component.multiselect and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return f"{label} must be a list of names (got {str(value)[:40]!r})."
    return None


def file_references(value: Any) -> Iterator[str]:
    """Every ``path`` of a file reference in ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for item in value.values():
            yield from file_references(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from file_references(item)
