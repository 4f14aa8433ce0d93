"""What API clients see of the app's events (``gradio_client``'s ``view_api``, the "Use via API" page).

Gradio types a dropdown as the closed list of its choices (``Literal['a', 'b']``, or ``Literal[]`` for one filled
at run time) even where it takes any value (``allow_custom_value``: a model path, a dataset name), and a choice
among numbers as a list of texts (``Literal['7', '30']``). :func:`free_text_inputs` documents the first as text (or
a number), with the listed choices as examples, and the second as numbers. :func:`name_outputs` names the outputs
of a ``gr.api`` endpoint, which Gradio would call ``1st``, ``2nd``….
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio_client.utils import json_schema_to_python_type


def free_text_inputs(blocks: gr.Blocks, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` (from ``get_api_info``) with every dropdown that takes custom values typed as free text (or any
    number) and every choice among numbers typed as those numbers."""
    endpoints = info.get("named_endpoints", {})
    for fn in blocks.fns.values():
        endpoint = endpoints.get(f"/{fn.api_name}")
        if endpoint is None:
            continue
        documented = [component for component in fn.inputs if not component.skip_api]
        for component, parameter in zip(documented, endpoint["parameters"]):
            if not isinstance(component, (gr.Dropdown, gr.Radio)):
                continue
            values, numbers = [value for _label, value in component.choices], number_choices(component)
            listed = ", ".join(repr(value) for value in values)
            free = isinstance(component, gr.Dropdown) and component.allow_custom_value
            if numbers:
                kind = "integer" if all(isinstance(value, int) for value in numbers) else "number"
                parameter["type"] = {"type": kind} if free else {"type": kind, "enum": numbers}
                parameter["python_type"] = {
                    "type": {"integer": "int", "number": "float"}[kind] if free else f"Literal[{listed}]",
                    "description": f"any number, e.g. one of {listed}" if free
                    else parameter["python_type"].get("description", ""),
                }
            elif free:
                parameter["type"] = ({"type": "array", "items": {"type": "string"}} if component.multiselect
                                     else {"type": "string"})
                parameter["python_type"] = {
                    "type": json_schema_to_python_type(parameter["type"]),
                    "description": f"any name, e.g. one of {listed}" if listed else "any name",
                }
    return info


def number_choices(component: Any) -> list[int | float] | None:
    """The choices of a single-choice dropdown or radio when they are all numbers (else None)."""
    if not isinstance(component, (gr.Dropdown, gr.Radio)) or getattr(component, "multiselect", False):
        return None
    values = [value for _label, value in component.choices]
    numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return numbers if values and numbers == values else None


def name_outputs(event: dict[str, Any], *labels: str) -> None:
    """Name the outputs of ``event`` (a ``gr.api`` endpoint's dependency) for API clients; call inside Blocks."""
    fn = gr.context.get_blocks_context().fns[event["id"]]
    for component, label in zip(fn.outputs, labels, strict=True):
        component.label = label
