"""The app's Blocks: an event takes a file input only from a user who may read it (:mod:`masuka.access`).

Gradio accepts any file under its static paths (the outputs and datasets folders) as an event input, from
whichever user names it. Every door into an event (``/queue/join``, ``/call/<api>``, ``/run/<api>``) ends in
``process_api`` with the raw inputs, so each file reference is checked there before Gradio resolves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from masuka.access import readable
from masuka.errors import MasukaError
from masuka.studio import Studio
from masuka.ui.common import user_of


class OwnInputsBlocks(gr.Blocks):
    """``gr.Blocks`` whose events refuse another user's files as inputs, whether or not they exist."""

    def __init__(self, studio: Studio, **kwargs: Any):
        super().__init__(**kwargs)
        self.studio = studio

    async def process_api(self, block_fn: Any, inputs: list[Any], state: Any = None, request: Any = None,
                          *args: Any, **kwargs: Any) -> dict[str, Any]:
        user = user_of(request[0] if isinstance(request, list) and request else request)
        data_dir = self.studio.config.data_dir
        for path in file_references(inputs):
            if Path(path).expanduser().resolve().is_relative_to(data_dir):
                try:
                    readable(self.studio, user, path)
                except MasukaError as error:
                    raise gr.Error(str(error)) from None
        return await super().process_api(block_fn, inputs, state, request, *args, **kwargs)


def file_references(value: Any) -> Iterator[str]:
    """Every ``path`` of a file reference (``{"path": ..., "meta": {"_type": "gradio.FileData"}}``) in ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for item in value.values():
            yield from file_references(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from file_references(item)
