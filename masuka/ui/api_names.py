"""What API clients see of the app's events (``gradio_client``'s ``view_api``, the "Use via API" page).

Gradio types a dropdown as the closed list of its choices (``Literal['a', 'b']``, or ``Literal[]`` for one filled
at run time) even where it takes any value (``allow_custom_value``: a model path, a dataset name).
:func:`free_text_inputs` documents those as text, with the listed choices as examples. :func:`name_outputs` names
the outputs of a ``gr.api`` endpoint, which Gradio would call ``1st``, ``2nd``….
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio_client.utils import json_schema_to_python_type


def free_text_inputs(blocks: gr.Blocks, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` (from ``get_api_info``) with every dropdown that takes custom values typed as free text."""
    endpoints = info.get("named_endpoints", {})
    for fn in blocks.fns.values():
        endpoint = endpoints.get(f"/{fn.api_name}")
        if endpoint is None:
            continue
        documented = [component for component in fn.inputs if not component.skip_api]
        for component, parameter in zip(documented, endpoint["parameters"]):
            if isinstance(component, gr.Dropdown) and component.allow_custom_value:
                parameter["type"] = ({"type": "array", "items": {"type": "string"}} if component.multiselect
                                     else {"type": "string"})
                listed = ", ".join(repr(value) for _label, value in component.choices)
                parameter["python_type"] = {
                    "type": json_schema_to_python_type(parameter["type"]),
                    "description": f"any name, e.g. one of {listed}" if listed else "any name",
                }
    return info


def name_outputs(event: dict[str, Any], *labels: str) -> None:
    """Name the outputs of ``event`` (a ``gr.api`` endpoint's dependency) for API clients; call inside Blocks."""
    fn = gr.context.get_blocks_context().fns[event["id"]]
    for component, label in zip(fn.outputs, labels, strict=True):
        component.label = label
