"""What every tab shares: the :class:`UIContext` tabs register through, who is asking, domain errors shown as
``gr.Error``, the GPU event settings, and :func:`bind` for module-level handlers."""

from __future__ import annotations

import collections
import functools
import html
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from gradio.components import Component
from gradio.events import Dependency

from masuka.access import readable
from masuka.errors import Cancelled, MasukaError, as_disk_full, bounded
from masuka.gpu import CONCURRENCY_ID, STOP_TAB
from masuka.gpu import stop_key as flag_key
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.ui.page_load import PageOpened, PageRead, as_list
from masuka.ui.polls import changed_only

log = logging.getLogger(__name__)
#: the largest row id a form accepts (SQLite's integer limit)
MAX_ID = 2**63 - 1
#: what :func:`whole_number_box` marks
Box = TypeVar("Box", gr.Textbox, gr.Dropdown)
#: what Markdown (its links, tables, maths, setext heading underlines) reads
MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$=])")
LINE_END = re.compile(r"\r\n?|\n")  # Markdown's line ends
INDENT = re.compile(r"^[ \t]+", re.MULTILINE)  # four spaces or a tab start a code block, where escapes show
#: the request of the event being answered (``CheckedBlocks.process_api`` sets it): whom a refusal is worded for
ANSWERING: ContextVar[gr.Request | None] = ContextVar("answering", default=None)


@dataclass
class Form:
    """A tab's form as other tabs see it: its fields by name (the names History's Reuse fills, the names
    ``reuse_parameters`` gives) and the buttons another tab wires (the Image tab's "Add to queue")."""

    kind: str
    fields: dict[str, Component]
    buttons: dict[str, gr.Button] = field(default_factory=dict)
    tab: str = ""  # the id of the tab it sits in ("" = the kind's own tab)
    adapt: Callable[[dict], dict] | None = None  # an entry's fields as the form takes them (Reuse)
    accordion: gr.Accordion | None = None  # the accordion it sits in, opened with the tab (Reuse)
    #: what the form does once another tab's "Send to" put a picture in it: (handler, inputs, outputs)
    sent: tuple[Callable, list[Component], list[Component]] | None = None

    @property
    def tab_id(self) -> str:
        return self.tab or self.kind

    def reuse(self, entry_fields: dict) -> dict:
        """The values Reuse puts in the form for an entry's fields (by field name)."""
        return self.adapt(entry_fields) if self.adapt else entry_fields

    def __getitem__(self, name: str) -> Component:
        return self.fields[name]

    def pick(self, names: Iterable[str]) -> list[Component]:
        """The fields ``names``, in that order (the order an event takes them)."""
        return [self.fields[name] for name in names]


@dataclass
class UIContext:
    """Handed to every tab's ``build``: the studio, and typed registrations that link tabs to each other and to the
    page. A tab registers what others use (:meth:`register_form`, :meth:`generated`, :meth:`on_generation`) and
    what runs when the page opens (:meth:`on_page_load`), the pickers other tabs add to (:meth:`picker`) and the
    panels that follow running work (:meth:`poll`); links to a tab built later go in :meth:`once_built`. The app
    calls :meth:`finish` once every tab is built."""

    studio: Studio
    #: the top-level tabs (``gr.Tabs(selected=module)`` shows one)
    tabs: gr.Tabs | None = None
    forms: dict[str, Form] = field(default_factory=dict)
    _page_loads: list[PageRead] = field(default_factory=list)
    _pickers: list[tuple[Callable, list[Component]]] = field(default_factory=list)
    _generated: list[Dependency] = field(default_factory=list)
    _after_generation: list[tuple[Callable, Any, Any]] = field(default_factory=list)
    _once_built: list[Callable[[], None]] = field(default_factory=list)
    _polls: list[tuple[gr.Timer, Callable, Any, Any, dict[str, Any]]] = field(default_factory=list)

    def gpu_event(self) -> dict[str, Any]:
        """Keyword arguments for an event that uses the GPU: one shared concurrency group."""
        return {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": self.studio.config.gpu_concurrency}

    def on_page_load(self, fn: Callable, outputs: Any, inputs: Any = None) -> None:
        """Run ``fn(*inputs)`` into ``outputs`` each time the page opens (a private event)."""
        self._page_loads.append((fn, inputs, outputs))

    def picker(self, fn: Callable, outputs: Component | list[Component], refresh: gr.Button | None = None) -> None:
        """Choices drawn from what the user has (datasets, LoRAs, A/B tests…), which other tabs add to: ``fn()``
        fills ``outputs`` when the page opens, each time the user opens their tab (a dataset created in Datasets
        shows in Train's picker, a LoRA imported or trained in the Image tab's) and on ``refresh`` (a ↻ button)."""
        outputs = outputs if isinstance(outputs, list) else [outputs]
        self.on_page_load(fn, outputs)
        if refresh is not None:
            refresh.click(fn, None, outputs, api_visibility="private")
        self._pickers.append((fn, outputs))

    def poll(self, every: float, fn: Callable, inputs: Any, outputs: Any, **options: Any) -> None:
        """Run ``fn(*inputs)`` into ``outputs`` every ``every`` seconds while the top-level tab this is called in is
        shown, sending only the outputs that changed (:func:`changed_only`), and once each time it is shown, sending
        them all (a private event, no progress shown). A page's timers ticking in tabs nobody looks at cost the
        browser a walk of the whole layout per tick, and the server a request."""
        timer, sent = gr.Timer(every, active=False), gr.State(None)  # what this page was sent: polls.py
        inputs, outputs = [*as_list(inputs), sent], [*as_list(outputs), sent]
        options = {"api_visibility": "private", "show_progress": "hidden", **options}
        timer.tick(changed_only(fn, len(outputs) - 1), inputs, outputs, **options)
        self._polls.append((timer, changed_only(fn, len(outputs) - 1, always=True), inputs, outputs, options))

    def generated(self, event: Dependency) -> None:
        """``event`` makes outputs that History lists: what :meth:`on_generation` registers follows it."""
        self._generated.append(event)

    def on_generation(self, fn: Callable, inputs: Any, outputs: Any) -> None:
        """Run ``fn(*inputs)`` into ``outputs`` after every event registered with :meth:`generated`."""
        self._after_generation.append((fn, inputs, outputs))

    def register_form(self, kind: str, fields: dict[str, Component], buttons: dict[str, gr.Button] | None = None,
                      *, tab: str = "", adapt: Callable[[dict], dict] | None = None,
                      accordion: gr.Accordion | None = None,
                      sent: tuple[Callable, list[Component], list[Component]] | None = None) -> Form:
        """The form that makes entries of ``kind`` ("image", "video", "upscale"): History's Reuse fills ``fields``
        by name (from the entry's fields through ``adapt``) and shows ``tab`` (default: the kind's tab), opening
        ``accordion`` when the form sits in one; other tabs read the fields (and wire ``buttons``) through
        :meth:`form`, and run ``sent`` after putting a picture in."""
        form = self.forms[kind] = Form(kind, dict(fields), dict(buttons or {}), tab, adapt, accordion, sent)
        return form

    def form(self, kind: str) -> Form:
        """The form registered for ``kind``, which this tab needs: its tab comes earlier in ``TABS`` (an optional
        link reads ``forms.get(kind)`` in :meth:`once_built` instead)."""
        if kind not in self.forms:
            raise LookupError(f"No {kind} form: its tab must be built before the tabs that use it.")
        return self.forms[kind]

    def once_built(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` once every tab is built, still inside the Blocks: links to tabs built after this one."""
        self._once_built.append(hook)

    def finish(self, demo: gr.Blocks) -> None:
        """Wire what the tabs registered: the :meth:`once_built` hooks, then the page loads and what follows each
        generation. Called by the app inside its Blocks, after the last tab."""
        for hook in self._once_built:
            hook()
        if self._page_loads:
            opened = PageOpened(self._page_loads)
            demo.load(opened, opened.inputs, opened.outputs, api_visibility="private")
        for fn, outputs in self._pickers:
            tab = self._tab_of(outputs[0])
            if tab is not None:
                tab.select(fn, None, outputs, api_visibility="private", show_progress="hidden")
        for event in self._generated:
            for fn, inputs, outputs in self._after_generation:
                event.then(fn, inputs, outputs, api_visibility="private")
        self._wire_polls()

    def _wire_polls(self) -> None:
        """Each :meth:`poll`'s timer ticks while its tab is shown: a tab's ``select`` (a person's click, or an event
        that shows it) starts its timers, stops the others' and refreshes what its polls show."""
        if not self._polls or self.tabs is None:
            return
        tabs = [tab for tab in self.tabs.children if isinstance(tab, gr.Tab)]
        homes = [self._tab_of(timer) for timer, *_ in self._polls]
        timers = [timer for timer, *_ in self._polls]
        for timer, home in zip(timers, homes, strict=True):
            timer.active = home is tabs[0]  # the tab the page opens on
        for tab in tabs:
            shown = tab.select(functools.partial(_ticking, [home is tab for home in homes]), None, timers,
                               queue=False, show_progress="hidden", api_visibility="private")
            for (_timer, fn, inputs, outputs, options), home in zip(self._polls, homes, strict=True):
                if home is tab:
                    shown.then(fn, inputs, outputs, **options)

    def _tab_of(self, component: Component) -> gr.Tab | None:
        """The top-level tab ``component`` sits in (None outside :attr:`tabs`)."""
        block = component
        while block is not None:
            parent = getattr(block, "parent", None)
            if isinstance(block, gr.Tab) and parent is self.tabs:
                return block
            block = parent
        return None


def _ticking(active: list[bool]) -> list[gr.Timer]:
    return [gr.Timer(active=flag) for flag in active]


def bind(func: Callable, *args: Any) -> Callable:
    """``functools.partial(func, *args)`` as Gradio needs a handler: a function with ``func``'s name, docstring,
    remaining parameters and their type hints (``gr.Request``, ``gr.SelectData`` are found by type), a generator
    when ``func`` is one. Tabs keep their handlers at module level, taking the studio first, and bind them here."""
    bound = functools.partial(func, *args)
    if _is_generator(func):
        @functools.wraps(func)
        def handler(*more, **kwargs):
            yield from bound(*more, **kwargs)
    else:
        @functools.wraps(func)
        def handler(*more, **kwargs):
            return bound(*more, **kwargs)
    signature = inspect.signature(bound)
    handler.__signature__ = signature
    handler.__annotations__ = {name: hint for name, hint in getattr(func, "__annotations__", {}).items()
                               if name in signature.parameters or name == "return"}
    return handler


def last_output(func: Callable) -> Callable:
    """A plain function, with ``func``'s name and parameters, returning what the generator ``func`` yields last.

    For an API event: ``gradio_client`` reads a streaming event's messages every 50 ms and downloads its files
    once per message, which cost a ``/generate_image`` call about 50 ms more than a plain event here."""

    @functools.wraps(func)
    def final(*args, **kwargs):
        outputs = collections.deque(func(*args, **kwargs), maxlen=1)
        return outputs[0] if outputs else None
    return final


def user_of(request: gr.Request | None) -> str:
    """The signed-in user, or the single local user when auth is off."""
    return (getattr(request, "username", None) or LOCAL_USER) if request is not None else LOCAL_USER


def is_admin(studio: Studio, request: gr.Request | None) -> bool:
    return studio.config.is_admin(user_of(request))


#: the Image tab's Stop flag (its generations'; the Upscale panel has its own)
IMAGE_TAB = "image"


def stop_key(tab: str, request: gr.Request | None) -> str:
    """The key of ``tab``'s flag in ``studio.stops``: one per tab and browser session (the API caller's session)."""
    return flag_key(tab, getattr(request, "session_hash", None), user_of(request))


def stoppable(tab: str, event: Dependency) -> Dependency:
    """Mark ``event``'s work as ended by ``tab``'s Stop: the queue arms the Stop as it accepts the work
    (:func:`masuka.guards.guard_queue`), so a Stop pressed while the work waits counts; the work takes the flag
    with :func:`stop_flag`. Returns ``event``."""
    setattr(event.fn, STOP_TAB, tab)
    return event


@contextmanager
def stop_flag(studio: Studio, tab: str, request: gr.Request | None) -> Iterator[threading.Event]:
    """The Stop flag of ``tab``'s work done inside the ``with``: the one the queue armed (:func:`stoppable`), dropped
    however the work ends. A Stop that came while the work waited raises :class:`~masuka.errors.Cancelled` on
    entry, before anything runs."""
    with studio.stops.armed(stop_key(tab, request)) as stop:
        if stop.is_set():
            raise Cancelled(at="before it started")
        yield stop


def wire_stop(studio: Studio, tab: str, button: gr.Button, status: Component, api_name: str | None = None,
              step: str = "step") -> None:
    """``button`` stops the work of ``tab`` this session asked for (armed as it was queued: :func:`stoppable`) after its
    current ``step``; it skips the queue, which that work holds. Its answer may land after the work has ended, so it
    never writes ``status`` (the work's own, whose last word it would cover): it goes to a hidden component labelled
    as ``status`` (what the API returns) and the page shows it as a toast. Private unless ``api_name``."""
    where = {"api_name": api_name} if api_name else {"api_visibility": "private"}
    said = gr.Markdown(label=status.label, visible=False)
    button.click(bind(stop_work, studio, tab, step), None, said, queue=False, **where).then(
        acknowledge, said, said, api_visibility="private", show_progress="hidden")


def acknowledge(said: str | None) -> str:
    """A Stop's answer as a toast (through the queue, which carries toasts: the Stop's own click skips it), and
    its hidden output emptied."""
    if said:
        gr.Info(said)
    return ""


#: a Stop's answer when this session has no work of the tab waiting or running
NOTHING_TO_STOP = ("Nothing of this tab is running in this session: a Stop reaches the work started from the same "
                   "browser tab or API client session (gradio_client: the same Client).")


def stop_work(studio: Studio, tab: str, step: str, request: gr.Request) -> str:
    """A Stop button's click: stop ``tab``'s work of this session, running or waiting in the queue (the flag is
    there from the queue's admission of the work until it ends: :class:`~masuka.gpu.StopFlags`); else say that
    nothing of this session is there to stop (the work of another tab or client is not this Stop's)."""
    return f"Stopping after the current {step}…" if studio.stops.stop(stop_key(tab, request)) else NOTHING_TO_STOP


def usable_file(studio: Studio, request: gr.Request | None, path: str | Path) -> Path:
    """``path`` resolved, when a handler may take it as an input file: one uploaded to this app, or a file in the
    data dir the user may read (a result another tab sent here); anything else is refused, another user's file as
    a missing one."""
    uploads = Path(gr.utils.get_upload_folder()).resolve()
    resolved = studio.config.inside(path, uploads, studio.config.data_dir)
    return resolved if resolved.is_relative_to(uploads) else readable(studio, user_of(request), resolved)


def hidden_button() -> gr.Button:
    """A confirmation button (a LoRA's deletion, a billed remote run), hidden again."""
    return gr.Button(visible=False)


def whole_number_box(box: Box) -> Box:
    """Mark a text box or a free-text dropdown that holds a whole number (an id, a job number, a run, a step): it
    shows empty when nothing is chosen, and its event also takes the number as an int
    (:mod:`masuka.ui.checked_blocks`), as a dropdown filled at run time sends it; the handler checks it."""
    box.holds_whole_number = True
    return box


def not_uploaded(name: str) -> str:
    """The message for a path sent where ``name`` takes an uploaded file."""
    return f"{name}: send pictures and other files as uploaded files (gradio_client's handle_file), not as paths."


def toast_text(message: str) -> str:
    """``message`` as a ``gr.Error`` takes it: escaped for the page, whose toast shows HTML (where ``g<number>`` or
    ``<class '…'>`` would vanish); as it is for a ``gradio_client`` caller, which reads it as text (its requests
    say ``x-gradio-user: api``; the event's request is :data:`ANSWERING`)."""
    request = ANSWERING.get()
    if request is not None and (getattr(request, "headers", None) or {}).get("x-gradio-user") == "api":
        return message
    return html.escape(message, quote=False)


def refusal(source: str, message: str) -> gr.Error:
    """A refusal shown to the user as ``message`` (escaped: :func:`toast_text`; :func:`~masuka.errors.bounded`),
    logged as one line (no console traceback)."""
    message = bounded(message)
    log.warning("%s refused: %s", source, message)
    return gr.Error(toast_text(message), print_exception=False)


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


def failure(what: str, error: BaseException, kept: str = "") -> BaseException:
    """What to raise for a failure of ``what`` ("Generation", "Upscale"): an expected refusal (:func:`user_message`)
    as it is, which ``@friendly`` shows; else the toast of the error's type and message (:func:`toast_text`), then
    what was ``kept``."""
    if user_message(error):
        return error
    return gr.Error(f"{what} failed: {type(error).__name__}: {toast_text(bounded(str(error)))}."
                    + (f" {kept}" if kept else ""))


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
    log.debug("%s refused", func.__name__, exc_info=error)
    return refusal(func.__name__, message)


def _is_generator(func: Callable) -> bool:
    return inspect.isgeneratorfunction(func)


def fenced(text: str, info: str = "") -> str:
    """``text`` as a Markdown code block that no line of it can close: the fence is longer than its longest run of
    backticks (a picture's parameters holding a fence would otherwise end the block, and what follows would show
    as Markdown: links, and images the browser fetches)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def verbatim(text: object) -> str:
    """``text`` (a user's) as Markdown that shows it as it is (no emphasis, headings, links, HTML), line breaks
    kept."""
    escaped = LINE_END.sub("\n", MARKDOWN_SIGNS.sub(r"\\\1", html.escape(str(text), quote=False)))
    escaped = INDENT.sub(lambda spaces: "".join(f"&#{ord(char)};" for char in spaces.group()), escaped)
    return escaped.replace("\n", "  \n")
