"""What every tab shares: who is asking, domain errors shown as ``gr.Error``, the GPU event settings."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from masuka.errors import MasukaError, as_disk_full
from masuka.gpu import CONCURRENCY_ID
from masuka.store import LOCAL_USER
from masuka.studio import Studio

log = logging.getLogger(__name__)
#: the largest row id a form accepts (SQLite's integer limit)
MAX_ID = 2**63 - 1


@dataclass
class UIContext:
    """Handed to every tab's ``build``: the studio, and components other tabs link to (by name)."""

    studio: Studio
    components: dict[str, Any] = field(default_factory=dict)

    def gpu_event(self) -> dict[str, Any]:
        """Keyword arguments for an event that uses the GPU: one shared concurrency group."""
        return {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": self.studio.config.gpu_concurrency}


def user_of(request: gr.Request | None) -> str:
    """The signed-in user, or the single local user when auth is off."""
    return (getattr(request, "username", None) or LOCAL_USER) if request is not None else LOCAL_USER


def is_admin(studio: Studio, request: gr.Request | None) -> bool:
    return studio.config.is_admin(user_of(request))


def whole_number_box(box: gr.Textbox) -> gr.Textbox:
    """Mark a text box that holds a whole number (an id, a job number): it shows empty when nothing is chosen,
    and its event also takes the number as an int (:mod:`masuka.ui.checked_blocks`); the handler checks it."""
    box.holds_whole_number = True
    return box


def friendly(func: Callable) -> Callable:
    """Show expected failures (and a full disk) as a ``gr.Error`` with their message (generators included)."""
    if _is_generator(func):
        @functools.wraps(func)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from func(*args, **kwargs)
            except Exception as error:
                raise _refusal(func, error) from None
        return generator_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as error:
            raise _refusal(func, error) from None
    return wrapper


def user_message(error: BaseException) -> str | None:
    """What to tell the user about ``error``: a domain error's or a full disk's message; None for anything else."""
    if isinstance(error, MasukaError):
        return str(error)
    full = as_disk_full(error)
    return str(full) if full else None


def _refusal(func: Callable, error: Exception) -> Exception:
    """An expected failure (a domain error or a full disk) becomes a toast without a console traceback and one
    log line (the traceback at DEBUG only); anything else is re-raised as it is."""
    message = user_message(error)
    if message is None:
        return error
    log.warning("%s refused: %s", func.__name__, message)
    log.debug("%s refused", func.__name__, exc_info=error)
    return gr.Error(message, print_exception=False)


def _is_generator(func: Callable) -> bool:
    import inspect

    return inspect.isgeneratorfunction(func)
