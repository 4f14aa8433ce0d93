"""``python -m masuka ...``: the same jobs as the UI, headless. ``--json`` prints machine-readable results.

Each sub-command lives in ``masuka/commands/<name>.py`` with ``register(subparsers, common)``; a handler gets
the parsed arguments and returns an exit code. Expected failures print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from masuka.config import log_level
from masuka.errors import InvalidInput, MasukaError, Terminated, as_disk_full, bounded, cannot_write
from masuka.store import LOCAL_USER, busy, owns_anything

COMMANDS = ["serve", "generate", "queue", "grid", "compare", "sequence", "bench", "video", "jobs", "train", "runs",
            "dataset", "history", "models", "keys", "doctor", "upscale", "character", "edit", "settings", "storage"]

#: environment variables that set how much diffusers, transformers and huggingface_hub print themselves
LIBRARY_VERBOSITY = ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY", "HF_HUB_VERBOSITY")
#: the libraries under the model libraries whose notices (log records and Python warnings) are kept to errors too
#: ("Skipping publisher trust check", bitsandbytes' CPU kernels, deprecated arguments the libraries pass each other)
QUIETED_LIBRARIES = ("kernels", "bitsandbytes", "huggingface_hub", "diffusers", "transformers", "accelerate", "peft",
                     "torch")


def data_dir_parser() -> argparse.ArgumentParser:
    """The ``--data-dir`` option every command takes (a parent parser); its default is the top parser's."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", default=argparse.SUPPRESS, type=data_dir_name,
                        help="data folder (default: $MASUKA_DATA_DIR or ./data)")
    return parser


def data_dir_name(text: str) -> str:
    """An argparse ``type`` for ``--data-dir``: a blank one (an unset shell variable, ``--data-dir "$DIR"``) is
    refused, where it would mean ``./data`` wherever the command runs."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name the data folder (or leave --data-dir out for "
                                         "$MASUKA_DATA_DIR or ./data)")
    return text


def local_or_named(text: str) -> str:
    """An argparse ``type`` for a model that is a catalog id, a repo id or a local file or folder: one relative to
    this directory is made absolute, as queued, resumed and saved work reads it later from the app's directory;
    anything else is kept as given."""
    path = Path(text).expanduser()
    return str(path.resolve()) if text.strip() and not path.is_absolute() and path.exists() else text


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``low`` (``--runs``, ``--limit``)."""

    def whole(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be at least {low} (got {number})")
        return number

    return whole


def user_option(actions: argparse._SubParsersAction, whose: str) -> None:
    """``--user NAME`` on every action of a group: whose ``whose`` (characters, datasets) it reads and changes, a
    signed-in user's of a shared app (default: the local user)."""
    for action in actions.choices.values():
        action.add_argument("--user", default=LOCAL_USER, help=f"whose {whose} (default: the local user)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only ``command``'s where it names one (what a run of it parses: the other
    commands' options and the modules they import are not built). A group (``dataset``) and its actions
    (``dataset create``) both take the common options, so these have no defaults of their own: only the top
    parser's, or an action's would overwrite what was given to its group (``dataset --data-dir D create``)."""
    common = argparse.ArgumentParser(add_help=False, parents=[data_dir_parser()])
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print results as JSON")
    parser = argparse.ArgumentParser(prog="python -m masuka", description="MASUKA studio, headless.")
    parser.set_defaults(data_dir=None, json=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [command] if command in COMMANDS else COMMANDS:
        importlib.import_module(f"masuka.commands.{name}").register(sub, common)
    for line in sub._choices_actions:  # each group's line in --help ends with its actions, so none is left out
        if listed := actions_of(sub.choices[line.dest]):
            line.help = f"{line.help}: {', '.join(listed)}"
    return parser


def actions_of(command: argparse.ArgumentParser) -> list[str]:
    """The actions of a command group as a user types them (``dataset``: ``create``, ``add``, …): its
    sub-commands, or the choices of its ``action`` argument (``storage``); none for a plain command."""
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
        if action.dest == "action" and action.choices:
            return list(action.choices)
    return []


def main(argv: list[str] | None = None) -> int:
    try:
        level = log_level()
    except MasukaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # the model libraries' own notices ("Couldn't connect to the Hub…") only when debugging
        for variable in LIBRARY_VERBOSITY:
            os.environ.setdefault(variable, "error")
        for library in QUIETED_LIBRARIES:
            logging.getLogger(library).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"({'|'.join(QUIETED_LIBRARIES)})(\.|$)")
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    with signals_as_interrupts(args.command != "serve"):  # the server's jobs are taken up again by its next start
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit code, with expected failures and interrupts said in one line on stderr."""
    try:
        return int(args.handler(args) or 0)
    except MasukaError as error:
        print(f"error: {bounded(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (`| head`): quiet, as Python's "Note on SIGPIPE" advises
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, sqlite3.DatabaseError) as error:  # a full disk, a read-only place or a busy database
        refused = as_disk_full(error) or write_refused(error) or database_busy(error)
        if refused is None:
            raise
        print(f"error: {bounded(str(refused))}", file=sys.stderr)
        return 2
    except Terminated as error:
        print(f"interrupted by {error.name}", file=sys.stderr)
        return 128 + signal.Signals[error.name]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


@contextmanager
def signals_as_interrupts(wanted: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP end the command as Ctrl-C does, by raising :class:`~masuka.errors.Terminated`
    in it: work stops, what was made is reported and saved rows are closed, where Python would end the process on
    the spot. A signal ignored at the call (``nohup``) stays ignored, a command may set its own handlers inside, and
    the handlers found are put back on the way out (a caller in the same process keeps its own)."""
    if not wanted or threading.current_thread() is not threading.main_thread():  # only there may handlers be set
        yield
        return
    numbers = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    found = {number: signal.getsignal(number) for number in numbers}
    for number in numbers:
        if found[number] == signal.SIG_DFL:
            signal.signal(number, _terminated)
    try:
        yield
    finally:
        for number, handler in found.items():
            if handler is not None and signal.getsignal(number) != handler:
                signal.signal(number, handler)


def _terminated(number: int, _frame: object) -> None:
    raise Terminated(signal.Signals(number).name)


def write_refused(error: BaseException) -> MasukaError | None:
    """One line for a write the system refused (a read-only file system, no permission, an immutable file: ``EROFS``,
    ``EACCES``, ``EPERM``, SQLite's "readonly database"), as :func:`masuka.errors.cannot_write` words it; None for
    any other error."""
    if isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return cannot_write(OSError(error.errno, error.strerror), error.filename or "A file")
    if isinstance(error, sqlite3.OperationalError) and "readonly database" in str(error):
        return InvalidInput(f"The database cannot be written ({error}): choose another data dir (--data-dir or "
                            "MASUKA_DATA_DIR), or make this one writable.")
    return None


def database_busy(error: BaseException) -> MasukaError | None:
    """One line for a database another process kept locked past the store's 30 s busy timeout (SQLite's
    ``SQLITE_BUSY``, "database is locked"); None for any other error."""
    if busy(error):
        return InvalidInput("The database is busy: another MASUKA process is writing; try again.")
    return None


def open_studio(args: argparse.Namespace):
    """The studio for the data dir named by ``--data-dir`` (or the environment). A ``--user`` other than the local
    user (whom every command acts as by default) must be able to sign in (:func:`masuka.api.auth.check_user`) or
    own something in the data dir already (a user taken off the sign-in list): checked before anything is
    written."""
    from masuka.api.auth import check_user
    from masuka.config import Config
    from masuka.studio import Studio

    config = Config.read_env(data_dir=args.data_dir)
    if getattr(args, "user", None) not in (None, LOCAL_USER):
        try:
            check_user(config, args.user)
        except InvalidInput as refused:
            if not owns_anything(config.db_path, args.user):
                raise InvalidInput(f"{refused} Nor does {args.user!r} own anything in {config.data_dir}.") from None
    config.ensure_dirs()
    return Studio.open(config)


def emit(args: argparse.Namespace, result: Any, text: str | None = None) -> None:
    """Print ``result`` as one JSON object with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(result, ensure_ascii=False, default=str), flush=True)
    elif text is not None:
        print(text, flush=True)


def progress_line(args: argparse.Namespace, text: str) -> None:
    """Progress for people: on stderr, so ``--json`` stdout stays one object."""
    print(text, file=sys.stderr, flush=True)


def download_progress(args: argparse.Namespace) -> Callable[[Any], None]:
    """A model download's progress (a :class:`masuka.jobs.Progress`) for people: a line on stderr every 5 %."""
    shown = [-1]

    def show(progress: Any) -> None:
        if int((progress.fraction or 0.0) * 20) != shown[0]:
            shown[0] = int((progress.fraction or 0.0) * 20)
            progress_line(args, progress.message)

    return show
