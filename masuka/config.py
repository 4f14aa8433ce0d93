"""Settings from the environment and command-line flags: data dir, GPU limits, auth, provider URLs (declared by
each service in :mod:`masuka.services`).

Every ``MASUKA_*`` variable (and the Hugging Face Space variables MASUKA looks at) is read through the readers
below, here or in the module that uses it (:mod:`masuka.environment` checks those at start-up): a bad value is
an :class:`InvalidInput` naming the variable, never a traceback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput, reason
from masuka.store import LOCAL_USER

DEFAULT_PORT = 7860
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEVICES = ("auto", "cuda", "mps", "cpu")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``torch.compile`` backends: ``inductor`` generates kernels, ``eager``/``aot_eager`` only trace (for checks)
COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")


# -- readers of single variables ----------------------------------------------------------------------------

def env_text(name: str, default: str = "") -> str:
    """The variable's value without surrounding blanks, or ``default`` when unset or empty."""
    return os.environ.get(name, "").strip() or default


def env_number(name: str, default: float | None, kind: type = int, minimum: float = 0) -> Any:
    """The variable as ``kind`` (int or float), finite and at least ``minimum``; ``default`` when unset."""
    raw = env_text(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise InvalidInput(f"{name}={raw!r} is not {noun}.") from None
    if not math.isfinite(value):  # nan and inf: no comparison with ``minimum`` would refuse nan
        raise InvalidInput(f"{name}={raw!r} is not a finite number.")
    if value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum:g} (got {raw}).")
    return value


def env_flag(name: str) -> bool:
    """True for 1/true/yes/on, False when unset or 0/false/no/off; anything else is refused."""
    raw = env_text(name).lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise InvalidInput(f"{name}={raw!r} is not a switch: use 1 or 0.")


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (matched without regard to case), or ``default`` when unset."""
    raw = env_text(name)
    if not raw:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise InvalidInput(f"{name}={raw!r} is not one of {', '.join(choices)}.")


def env_url(name: str, default: str) -> str:
    """An http(s) base URL without a trailing slash; ``default`` when unset ("" when neither is set)."""
    url = env_text(name, default).rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInput(f"{name}={url!r} is not an http:// or https:// URL.")
    return url


def env_networks(name: str) -> tuple[IPNetwork, ...]:
    """Comma-separated IP addresses or networks (CIDR: ``10.0.0.0/8``); none when unset."""
    networks = []
    for part in (part.strip() for part in env_text(name).split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise InvalidInput(f"{name}: {part!r} is not an IP address or network (such as 10.0.0.5 or "
                                   "10.0.0.0/8).") from None
    return tuple(networks)


# -- process-wide settings ----------------------------------------------------------------------------------

def log_level() -> str:
    return env_choice("MASUKA_LOG_LEVEL", LOG_LEVELS, "WARNING")


def device_choice() -> str:
    """``MASUKA_DEVICE``: where models run (``auto`` picks CUDA, then MPS, then the CPU)."""
    return env_choice("MASUKA_DEVICE", DEVICES, "auto")


def compile_backend() -> str:
    return env_choice("MASUKA_COMPILE_BACKEND", COMPILE_BACKENDS, "inductor")


def server_host() -> str:
    """``MASUKA_HOST``; by default every interface on a Hugging Face Space, else this machine only."""
    return env_text("MASUKA_HOST", "0.0.0.0" if env_text("SPACE_ID") else "127.0.0.1")


def on_space() -> bool:
    return bool(env_text("SPACE_ID"))


def on_zerogpu() -> bool:
    return bool(env_text("SPACES_ZERO_GPU"))


def public_space() -> bool:
    """``MASUKA_PUBLIC_SPACE``: a Space without sign-in may start (every visitor shares one studio as its admin)."""
    return env_flag("MASUKA_PUBLIC_SPACE")


def gguf_file() -> str:
    """``MASUKA_GGUF_FILE``: the transformer's ``.gguf`` file (path or Hugging Face URL) for ``gguf_offload``."""
    return env_text("MASUKA_GGUF_FILE")


def space_model() -> str:
    """``MASUKA_SPACE_MODEL``: the model a ZeroGPU Space loads at start-up."""
    return env_text("MASUKA_SPACE_MODEL")


def depth_model() -> str:
    """``MASUKA_DEPTH_MODEL``: the depth model ControlNet's depth preprocessor uses ("" for the default)."""
    return env_text("MASUKA_DEPTH_MODEL")


def zerogpu_aoti() -> bool:
    return env_flag("MASUKA_ZEROGPU_AOTI")


def zerogpu_max_seconds(default: int) -> int:
    return env_number("MASUKA_ZEROGPU_MAX_S", default, minimum=1)


def parse_auth(spec: str | None) -> dict[str, str]:
    """Parse ``user:pass,user2:pass2`` or ``@path/to/file`` (one ``user:pass`` a line) into a dict; no spec (or a
    blank one) is no sign-in. A file's passwords are kept as written, blanks at either end included (only the
    line ending is not part of one). A spec that names no user, or a file that cannot be read, is refused: the
    app would otherwise start without sign-in."""
    spec = (spec or "").strip()
    if not spec:
        return {}
    if names_auth_file(spec):
        path = Path(spec.lstrip("@"))
        try:  # utf-8-sig: a file saved by Windows Notepad starts with a byte-order mark, not part of the first name
            entries = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"Sign-in file {path} cannot be read ({reason(error)}).") from None
        source = f"The sign-in file {path}"
    else:
        entries = [part.strip() for part in spec.split(",")]
        source = "The sign-in spec"
    users: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:  # said without the entry: it may be the tail of a password
            if Path(spec).is_file():  # a bare file name (users.txt): read as user:password, it is not one
                raise InvalidInput(f"The sign-in spec {spec!r} is not user:password, but a file of that name exists: "
                                   f"write @{spec} to read sign-ins from a file.")
            raise InvalidInput(f"Sign-in entry {number} must look like user:password. A password with a comma "
                               "belongs in a file, one user:password a line (MASUKA_AUTH=@path/to/file).")
        if user.strip() == LOCAL_USER:  # what a studio without sign-in owns: shared with every user
            raise InvalidInput(f"{LOCAL_USER!r} cannot be a user name: MASUKA keeps it for what everyone shares.")
        if user.strip() in users:  # the later password would silently replace the earlier one
            raise InvalidInput(f"Sign-in entry {number} names the user {user.strip()!r} again: give each user once.")
        users[user.strip()] = password
    if not users:
        raise InvalidInput(_names_no_user(source))
    return users


def names_auth_file(spec: str) -> bool:
    """Whether a sign-in spec is read as a file: ``@path``, or a path with a folder in it that names a file (a bare
    ``users.txt`` is not: ``user:pass`` may well be a file name too)."""
    spec = spec.strip()
    return spec.startswith("@") or (os.sep in spec and Path(spec).is_file())


def _names_no_user(source: str) -> str:
    return (f"{source} names no user: give at least one user:password, or no sign-in at all (leave out --auth "
            "and MASUKA_AUTH).")


def auth_flag(spec: str | None) -> str | None:
    """``--auth`` as typed: absent (None) leaves sign-in to ``MASUKA_AUTH``; a blank one names no user and is
    refused, rather than starting without sign-in whatever ``MASUKA_AUTH`` says."""
    if spec is not None and not spec.strip():
        raise InvalidInput(_names_no_user("--auth"))
    return spec


@dataclass(frozen=True)
class Config:
    """Where MASUKA keeps its files and how it shares the GPU. Built once per process."""

    data_dir: Path
    users: dict[str, str] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()
    gpu_concurrency: int = 1
    max_queued_per_user: int = 4
    queue_size: int = 64
    api_open: bool = False  # the REST APIs answer other machines even without users (--api-open)
    login_attempts: int = 5
    login_lockout_s: float = 60.0
    max_upload_mb: int = 2048
    max_files: int = 1000
    max_unzipped_mb: int = 2048
    queued_jobs_per_user: int = 1000  # the generation queue (masuka.queue): unfinished jobs one user may hold
    #: how long a running queued job keeps its turn, counted from its turn's first finished image (a model load or
    #: a wait for the GPU does not count), before it gives way to another user's waiting job: long enough that two
    #: users with different models do not reload them between every image, short enough that nobody waits for the
    #: whole of someone's long job
    queue_turn_s: float = 60.0
    trusted_proxies: tuple[IPNetwork, ...] = ()  # peers whose X-Forwarded-For names the client (masuka.guards)

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, auth: str | None = None, **overrides) -> "Config":
        """Read ``MASUKA_*`` variables (:meth:`read_env`) and create the data dir (:meth:`ensure_dirs`)."""
        config = cls.read_env(data_dir, auth, **overrides)
        config.ensure_dirs()
        return config

    @classmethod
    def read_env(cls, data_dir: str | Path | None = None, auth: str | None = None, **overrides) -> "Config":
        """Read ``MASUKA_*`` variables, creating nothing; explicit arguments win over the environment."""
        root = Path(data_dir or env_text("MASUKA_DATA_DIR") or _default_data_dir()).expanduser()
        users = parse_auth(auth if auth is not None else env_text("MASUKA_AUTH"))
        named = env_text("MASUKA_ADMINS", "admin" if "admin" in users else "")
        admins = frozenset(a.strip() for a in named.split(",") if a.strip())
        if users and (unknown := sorted(admins - users.keys())):
            raise InvalidInput(f"MASUKA_ADMINS names {', '.join(map(repr, unknown))}, not on the sign-in list (names "
                               "are case-sensitive): name admins exactly as in MASUKA_AUTH.")
        values = {
            "gpu_concurrency": env_number("MASUKA_GPU_CONCURRENCY", 1, minimum=1),
            "max_queued_per_user": env_number("MASUKA_MAX_QUEUED_PER_USER", 4, minimum=1),
            "queue_size": env_number("MASUKA_QUEUE_SIZE", 64, minimum=1),
            "api_open": env_flag("MASUKA_API_OPEN"),
            "login_attempts": env_number("MASUKA_LOGIN_ATTEMPTS", 5, minimum=1),
            "login_lockout_s": env_number("MASUKA_LOGIN_LOCKOUT_S", 60.0, float),
            "max_upload_mb": env_number("MASUKA_MAX_UPLOAD_MB", 2048, minimum=1),
            "max_files": env_number("MASUKA_MAX_FILES", 1000, minimum=1),
            "max_unzipped_mb": env_number("MASUKA_MAX_UNZIPPED_MB", 2048, minimum=1),
            "queued_jobs_per_user": env_number("MASUKA_QUEUED_JOBS_PER_USER", 1000, minimum=1),
            "queue_turn_s": env_number("MASUKA_QUEUE_TURN_S", 60.0, float),
            "trusted_proxies": env_networks("MASUKA_TRUSTED_PROXIES"),
        }
        values.update(overrides)
        return cls(data_dir=root.resolve(), users=users, admins=admins, **values)

    # Folders under the data dir. Rows store paths relative to ``data_dir`` so the dir can move.
    @property
    def db_path(self) -> Path:
        return self.data_dir / "masuka.db"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def loras_dir(self) -> Path:
        return self.data_dir / "loras"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def characters_dir(self) -> Path:
        return self.data_dir / "characters"

    @property
    def served_dirs(self) -> list[Path]:
        """The folders whose pictures the app shows: served in place (never copied into Gradio's upload cache, whose
        URLs no owner check sees), each file to whoever :func:`~masuka.access.may_read` it."""
        return [self.outputs_dir, self.datasets_dir, self.runs_dir, self.characters_dir]

    @property
    def wildcards_dir(self) -> Path:
        return self.data_dir / "wildcards"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def ensure_dirs(self) -> None:
        """Create the data dir itself (its folders come once its database opens: :meth:`make_folders`).

        The process umask becomes 077, so everything MASUKA writes from here on (database, outputs, datasets,
        LoRAs, runs) is readable by its owner only: folders 0700, files 0600.
        """
        os.umask(0o077)
        self._make(self.data_dir)

    def make_folders(self) -> None:
        """Create the data dir's folders (outputs, LoRAs, datasets, runs, tmp) and close the data dir to other
        users (0700, where the file system has permissions at all: one made by an older version too): after its
        database took a write, so a data dir refused for its database is left as it was. A data dir that exists but
        cannot be written (a read-only file system, another user's folder) is refused here, not by every action."""
        self._make(self.outputs_dir, self.loras_dir, self.datasets_dir, self.runs_dir, self.tmp_dir)
        try:  # a file made and removed: existing folders are "made" even on a read-only file system
            handle, probe = tempfile.mkstemp(prefix="write-probe-", dir=self.tmp_dir)
            os.close(handle)
            os.unlink(probe)
        except OSError as error:
            raise InvalidInput(f"The data dir {self.data_dir} cannot be used: {reason(error)}.") from None
        with contextlib.suppress(OSError):
            if self.data_dir.stat().st_uid == os.getuid():
                self.data_dir.chmod(0o700)

    def _make(self, *folders: Path) -> None:
        try:
            for path in folders:
                path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InvalidInput(f"The data dir {self.data_dir} cannot be used: {reason(error)}.") from None

    def relative(self, path: str | Path) -> str:
        """Path as stored in rows: relative to the data dir when inside it."""
        resolved = Path(path).resolve()
        try:
            return resolved.relative_to(self.data_dir).as_posix()
        except ValueError:
            return str(resolved)

    def absolute(self, stored: str | Path) -> Path:
        """Inverse of :meth:`relative`."""
        path = Path(stored)
        return path if path.is_absolute() else self.data_dir / path

    def inside(self, path: str | Path, *roots: Path) -> Path:
        """Resolve ``path`` and refuse it unless it lies under one of ``roots`` (default: the data dir)."""
        resolved = Path(path).resolve()
        for root in roots or (self.data_dir,):
            if resolved.is_relative_to(root.resolve()):
                return resolved
        raise InvalidInput(f"{Path(path).name!r} is outside the folders MASUKA may use")

    @property
    def multi_user(self) -> bool:
        return bool(self.users)

    def is_admin(self, user: str) -> bool:
        return not self.multi_user or user in self.admins


def _default_data_dir() -> Path:
    """``/data`` on a Hugging Face Space with persistent storage, else ``./data``."""
    if on_space() and Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/masuka")
    return Path("data")
