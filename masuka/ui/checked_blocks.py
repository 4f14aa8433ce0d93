"""The app's Blocks: every event's raw inputs are checked before Gradio reads them.

Every door into an event (``/queue/join``, ``/call/<api>``, ``/run/<api>``) ends in ``process_api`` with the
inputs as the client sent them, so the checks sit there:

- a file reference (``{"path": ..., "meta": {"_type": "gradio.FileData"}}``) into the data dir must name a
  file the user may read (:mod:`masuka.access`): Gradio itself accepts any file under its static paths (the
  outputs and datasets folders) from whichever user names it;
- a value must have its component's type (:func:`type_problem`), or for a ``gr.api`` endpoint its parameter's
  type hint (:func:`hint_problem`): Gradio would turn a number into a prompt (``str(5)``), pass ``"yes"`` on as a
  checkbox, split a text into letters where a list is taken, or fail with a Python error on NaN in a
  whole-number field. A text box or free-text dropdown that holds a whole number (an id, a job number, a run:
  :func:`masuka.ui.common.whole_number_box`) also takes an int, which its handler checks like the typed text;
  a ``gr.api`` int parameter takes a whole float (``2.0``) as that int, in a list too;
- a number must lie in its slider's or box's range, and a choice be one of its radio's or dropdown's choices
  (:func:`choice_problem`): Gradio checks both, but its message does not name the field;
- a picture sent to an image input (an image editor's background, layers and composite too), or as a
  ``gr.api`` endpoint's uploaded file (``/queue_add``'s ``init_image``), must be one Pillow reads, of at most
  ``MAX_PIXELS`` (:func:`image_problem`, from the header): Gradio's own error on it shows its temp path and
  internals.

Values a request leaves off at the end, or sends as null, take their component's initial value (a ``gr.api``
parameter: its default), as ``gradio_client`` fills left-off ones, so a parameter added at the end of an event
stays optional at every door (``/gradio_api/call/<api>`` included). A choice among numbers also takes the number
as text (``"7"``), as ``view_api`` shows such choices. A refusal is one log line, not a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.api_component import Api
from gradio.utils import get_function_params, get_upload_folder
from PIL import Image

from masuka.access import readable
from masuka.datasets.ingest import DECODE_ERRORS
from masuka.errors import MasukaError
from masuka.picture_formats import MAX_PIXELS, missing_reader, read_heif
from masuka.studio import Studio
from masuka.ui.api_names import free_text_inputs, number_choices
from masuka.ui.common import ANSWERING, not_uploaded, refusal, user_of

#: components whose value is a file reference (or a list of them)
FILE_COMPONENTS = (gr.Image, gr.File, gr.Video, gr.Audio, gr.UploadButton)
#: what a ``gr.api`` parameter of each type must be, as a refusal says it (the only dicts these endpoints take
#: are uploaded files, all of them pictures: :func:`pictures`)
HINT_KINDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
              dict: "an uploaded file (gradio_client's handle_file)"}


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
        asking = request[0] if isinstance(request, list) and request else request
        answering = ANSWERING.set(asking)  # the handlers' threads run in a copy of this context
        try:
            if isinstance(inputs, list) and not getattr(fn, "batch", False):
                inputs = checked_inputs(fn, inputs, state)
            for path in file_references(inputs):
                if _resolved(path).is_relative_to(self.studio.config.data_dir):
                    try:
                        readable(self.studio, user_of(asking), path)
                    except MasukaError as error:
                        raise refusal(str(fn.name), str(error)) from None
            places = (self.studio.config.data_dir, Path(get_upload_folder()).resolve())
            for label, value in pictures(fn, inputs if isinstance(inputs, list) else []):
                if problem := image_problem(label, value, places):
                    raise refusal(str(fn.name), problem)
            return await super().process_api(block_fn, inputs, state, request, *args, **kwargs)
        finally:
            ANSWERING.reset(answering)

    def get_api_info(self, all_endpoints: bool = False, page: str | None = None) -> Any:
        """Gradio's API description, with dropdowns that take any value typed as text and choices among numbers
        typed as numbers."""
        return free_text_inputs(self, super().get_api_info(all_endpoints=all_endpoints, page=page))


def checked_inputs(fn: Any, inputs: list[Any], state: Any = None) -> list[Any]:
    """``inputs`` of the event ``fn`` with left-off and null values filled in and number choices read, or a
    refusal (``gr.Error``) naming the first value of the wrong type, out of its range or not among its choices
    (as the session ``state`` holds the component: a handler may have changed its choices)."""
    props = getattr(fn, "component_prop_inputs", ())
    hints = api_hints(fn.fn) if fn.inputs and isinstance(fn.inputs[0], Api) else None
    inputs = inputs + [getattr(component, "value", None) for component in fn.inputs[len(inputs):]]
    for index, component in enumerate(fn.inputs[:len(inputs)]):
        if index in props or getattr(component, "stateful", False):
            continue
        value = inputs[index] = as_choice(component, getattr(component, "value", None) if inputs[index] is None
                                          else inputs[index])
        problem = hint_problem(*hints[index], value) if hints else (
            type_problem(component, value) or fn.preprocess and choice_problem(
                state[component._id] if state is not None and component._id in state else component, value))
        if problem:
            raise refusal(str(fn.name), problem)
        if hints:
            inputs[index] = as_hinted(hints[index][1], value)
    return inputs


def as_choice(component: Any, value: Any) -> Any:
    """``value`` as the number it spells, where ``component`` is a choice among numbers (else as it is)."""
    if isinstance(value, str) and number_choices(component):
        for number in (int, float):
            with contextlib.suppress(ValueError):
                return number(value)
    return value


def as_hinted(hint: Any, value: Any) -> Any:
    """``value`` (of the type ``hint``) with each whole float that only an int hint takes as that int (in a list
    too)."""
    options = _options(hint)
    if isinstance(value, float) and int in options and float not in options:
        return int(value)
    items = [typing.get_args(option)[0] for option in options if typing.get_origin(option) is list]
    if isinstance(value, list) and items:
        return [as_hinted(items[0], element) for element in value]
    return value


def type_problem(component: Any, value: Any) -> str | None:
    """Why ``value`` cannot be an input of ``component`` (None: it can, or Gradio checks it itself)."""
    label = _label(component)
    if value is None:
        return None
    if isinstance(component, gr.Checkbox) and not isinstance(value, bool):
        return f"{label} must be true or false (got {_shown(value)})."
    numbers = number_choices(component) is not None
    if (isinstance(component, (gr.Number, gr.Slider)) or numbers) and not _is_number(value):
        return f"{label} must be a number (got {_shown(value)})."
    whole = isinstance(value, int) and not isinstance(value, bool) and getattr(component, "holds_whole_number", False)
    if isinstance(component, gr.Textbox) and not isinstance(value, str) and not whole:
        return f"{label} must be text (got {type(value).__name__})."
    if isinstance(component, gr.Dropdown) and component.multiselect and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return f"{label} must be a list of names (got {_shown(value)})."
    if isinstance(component, (gr.Dropdown, gr.Radio)) and not getattr(component, "multiselect", False) and not (
            numbers or isinstance(value, str) or whole):
        return f"{label} must be a name (got {type(value).__name__})."
    if isinstance(component, FILE_COMPONENTS) and not all(map(_file_reference, value if isinstance(value, list)
                                                               else [value])):
        return not_uploaded(label)
    if isinstance(component, (gr.ImageEditor, gr.Gallery)) and isinstance(value, str):  # files inside a structure
        return not_uploaded(label)
    return None


def choice_problem(component: Any, value: Any) -> str | None:
    """Why ``value`` (of the right type) is out of the range of the slider or number box ``component``, or not one
    of the choices of a radio or dropdown that takes no other value (None: it is not; Gradio would refuse it
    without naming the field)."""
    label = _label(component)
    if value is None:
        return None
    if isinstance(component, (gr.Number, gr.Slider)) and _is_number(value):
        if component.minimum is not None and value < component.minimum:
            return f"{label} must be at least {component.minimum} (got {value})."
        if component.maximum is not None and value > component.maximum:
            return f"{label} must be at most {component.maximum} (got {value})."
    if isinstance(component, (gr.Radio, gr.Dropdown)) and not getattr(component, "allow_custom_value", False):
        choices = [choice for _name, choice in component.choices]
        for item in value if isinstance(value, list) else [value]:
            if item not in choices:
                shown = ", ".join(map(str, choices[:10])) + (", …" if len(choices) > 10 else "")
                return f"{label} must be one of: {shown} (got {_shown(item)})."
    return None


def pictures(fn: Any, inputs: list[Any]) -> Iterator[tuple[str, Any]]:
    """The pictures among ``inputs`` of the event ``fn``, each with the name a refusal gives it: an image input's
    value (its label), an image editor's background, layers and composite (its label and the field), a
    ``gr.api`` endpoint's uploaded file (its parameter's name)."""
    if fn.inputs and isinstance(fn.inputs[0], Api):
        yield from ((name, value) for (name, hint), value in zip(api_hints(fn.fn), inputs) if dict in _options(hint))
        return
    for component, value in zip(fn.inputs, inputs):
        if isinstance(component, gr.Image):
            yield _label(component), value
        elif isinstance(component, gr.ImageEditor) and isinstance(value, dict):
            yield f"{_label(component)} (background)", value.get("background")
            layers = value.get("layers")
            for number, layer in enumerate(layers if isinstance(layers, list) else [], 1):
                yield f"{_label(component)} (layer {number})", layer
            yield f"{_label(component)} (composite)", value.get("composite")


def image_problem(label: str, value: Any, places: tuple[Path, ...]) -> str | None:
    """Why the picture ``value`` sent as ``label`` cannot be read, from its header only (None: it can, or it is no
    file in ``places``: Gradio refuses those itself)."""
    if not (isinstance(value, dict) and isinstance(value.get("path"), str)):
        return None
    path = _resolved(value["path"])
    if not (path.is_file() and any(path.is_relative_to(place) for place in places)):
        return None
    limit = f"limit {MAX_PIXELS // 1_000_000} MP"
    read_heif()
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        return f"{label}: too large in pixels ({limit})."
    except DECODE_ERRORS:
        return f"{label}: {missing_reader(path) or 'not an image MASUKA can read'}."
    if width * height > MAX_PIXELS:
        return f"{label}: too large in pixels ({width}x{height}, {limit})."
    return None


@functools.cache
def api_hints(handler: Callable) -> list[tuple[str, Any]]:
    """The parameters of a ``gr.api`` handler as its endpoint takes them: (name, type hint)."""
    return [(name, hint) for name, _has_default, _default, hint in get_function_params(handler)]


def hint_problem(name: str, hint: Any, value: Any) -> str | None:
    """Why ``value`` cannot be the parameter ``name`` typed ``hint`` (None: it can)."""
    options = _options(hint)
    if value is None:
        return None if type(None) in options else f"{name} must be {_hint_kind(options)} (got nothing)."
    if any(_fits(option, value) for option in options):
        return None
    if dict in options and isinstance(value, str):
        return not_uploaded(name)
    return f"{name} must be {_hint_kind(options)} (got {_shown(value)})."


def _fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` (not None) is of the type ``hint``."""
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # a whole float (``2.0``) is a whole number
        return _is_number(value) and (hint is float or isinstance(value, int) or float(value).is_integer())
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(item, element) for element in value)
    origin = typing.get_origin(hint) or hint
    return not isinstance(origin, type) or isinstance(value, origin)  # a hint that is no class takes anything


def _options(hint: Any) -> tuple:
    """The types a value of the type ``hint`` may have (those of a union, else ``hint`` itself)."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _label(component: Any) -> str:
    """How a refusal names ``component``: its label, else its kind."""
    return getattr(component, "label", None) or type(component).__name__


def _hint_kind(options: tuple) -> str:
    """What a value of one of the types ``options`` is, in words."""
    named = [option for option in options if option is not type(None)]
    if len(named) == 1 and typing.get_origin(named[0]) is list:
        return f"a list of {HINT_KINDS.get(typing.get_args(named[0])[0], 'values')}"
    return " or ".join(HINT_KINDS.get(option, getattr(option, "__name__", str(option))) for option in named)


def _file_reference(value: Any) -> bool:
    """Whether ``value`` names a file as Gradio takes one (uploaded, or a URL)."""
    return isinstance(value, dict) and any(isinstance(value.get(key), str) for key in ("path", "url"))


def _is_number(value: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and math.isfinite(value)


def _shown(value: Any) -> str:
    return repr(str(value)[:40])


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


def _resolved(path: str) -> Path:
    """``path`` as a file it names ends up (``~`` expanded; a ``~nosuchuser`` left as written)."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:
        return Path(path).resolve()
