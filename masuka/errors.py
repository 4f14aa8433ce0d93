"""The few exceptions a user may see: each carries a message a person can act on."""

import errno
import os
import re

#: about the most characters a message shown or logged takes (:func:`bounded`)
MAX_MESSAGE_CHARS = 1000
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")  # a name or value as a message quotes it
KEPT_CHARS = 20  # the least a shortened quoted part keeps on each side of the cut


class MasukaError(Exception):
    """Base for expected failures; the UI shows them as ``gr.Error``, the CLI exits with code 2."""


class InvalidInput(MasukaError):
    """A parameter, file or name given by the user is not acceptable."""


class NotFound(MasukaError):
    """A model, dataset, job, LoRA or file that was asked for does not exist (or is not yours)."""


class ModelUnavailable(MasukaError):
    """Model weights cannot be loaded: not downloaded, gated, offline or broken."""


class GPUBusy(MasukaError):
    """The GPU is held by another job and the caller chose not to wait."""


class Cancelled(MasukaError):
    """A job was stopped; the message says by whom, where, and what was kept.

    Every stop reads the same way: ``Stopped by <who>[ <where>][; <what was kept or what to do>].``, e.g.
    ``Cancelled("the images already made are kept")`` or ``Cancelled("checkpoint saved", at="at step 3")``.
    """

    def __init__(self, kept: str = "", *, by: str = "the user", at: str = ""):
        self.kept, self.by, self.at = kept, by, at
        super().__init__(f"Stopped by {by}{' ' + at if at else ''}{'; ' + kept if kept else ''}.")

    def __reduce__(self) -> tuple:  # copied or sent to another process (a ZeroGPU worker) as it was made
        return _cancelled, (self.kept, self.by, self.at)


def _cancelled(kept: str, by: str, at: str) -> Cancelled:
    return Cancelled(kept, by=by, at=at)


class Terminated(KeyboardInterrupt):
    """A command ended by a signal other than Ctrl-C's (``SIGTERM``: ``kill``, ``timeout``, a scheduler; ``SIGHUP``:
    the terminal closed), raised where Ctrl-C's :class:`KeyboardInterrupt` would be, so the command stops and
    reports what it made the same way; ``name`` is the signal's."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def interrupted_with(error: KeyboardInterrupt) -> str:
    """What interrupted a command, as its messages say it: ``Ctrl-C`` or the signal's name."""
    return error.name if isinstance(error, Terminated) else "Ctrl-C"


class ProviderError(MasukaError):
    """A remote provider refused or failed a request; the message is the provider's own, ``status`` the HTTP
    status it answered with last, when there was one."""

    def __init__(self, message: object = "", status: int | None = None):
        super().__init__(message)
        self.status = status


class DiskFull(MasukaError):
    """The disk (or the user's quota) is full: nothing more can be written until space is freed."""


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: how a full disk reads when it comes as text: SQLite's, and the system's own words (``strerror``) that libraries
#: quote, such as safetensors' "I/O error: No space left on device (os error 28)"
FULL_TEXTS = ("database or disk is full", os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def as_disk_full(error: BaseException) -> DiskFull | None:
    """One clear :class:`DiskFull` for a write refused by a full disk (``ENOSPC``, SQLite's "database or disk
    is full", a library's error quoting ``ENOSPC``), found anywhere in the chain of causes; None for any other
    error."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DiskFull):
            return seen
        if (isinstance(seen, OSError) and seen.errno in FULL_ERRNOS) or any(text in str(seen) for text in FULL_TEXTS):
            return DiskFull("The disk is full: free some disk space (old outputs, exports, models you no longer "
                            "use) and try again.")
        seen = seen.__cause__ or seen.__context__
    return None


def reason(error: BaseException) -> str:
    """Why ``error`` happened, in words for people: the system's (an :class:`OSError`'s ``strerror``, without the
    errno and file name), else the error's own text."""
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def cannot_write(error: OSError, place: str | os.PathLike[str]) -> MasukaError:
    """The error to raise when ``place`` (a file or folder the user named) cannot be written: :class:`DiskFull`
    for a full disk, else :class:`InvalidInput` saying why."""
    why = reason(error)
    if error.filename is not None:
        why += f": {error.filename}"
    return as_disk_full(error) or InvalidInput(f"{place} cannot be written ({why}): choose another place.")


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` in at most ``limit`` characters, as people are shown it and logs keep it: past that, the middle
    of its longest quoted part (the 100,000-character name it repeats) is left out, else the middle of the message,
    saying how many characters were."""
    spans = [(match.start() + 1, match.end() - 1) for match in QUOTED.finditer(message)]
    start, end = max(spans, key=lambda span: span[1] - span[0], default=(0, 0))
    shortened = _cut(message, start, end, limit)
    return _cut(shortened, 0, len(shortened), limit)


def _cut(text: str, start: int, end: int, limit: int) -> str:
    """``text`` with the middle of ``text[start:end]`` left out so that it has at most ``limit`` characters, when that
    part can spare them; else ``text`` as it is."""
    excess = len(text) - limit
    if excess <= 0:
        return text
    left_out = excess + len(_left_out(excess)) + 1  # the note itself takes room too
    if end - start < left_out + 2 * KEPT_CHARS:
        return text
    middle = start + (end - start - left_out) // 2
    return text[:middle] + _left_out(left_out) + text[middle + left_out:]


def _left_out(count: int) -> str:
    return f"… ({count:,} characters left out) …"
