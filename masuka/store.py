"""The one door to SQLite (through sqlite-utils): schema, self-migration, and the queries the app needs.

Every table has an ``owner`` column (``"local"`` in single-user mode). Paths in rows are relative to the
data dir. JSON columns are decoded on the way out. One connection per process, in WAL mode, guarded by a
lock so the UI's worker threads and background jobs can share it; other processes (the CLI) share the file
through WAL and a busy timeout.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput, NotFound
from masuka.validation import composed

LOCAL_USER = "local"
UNFINISHED = ("queued", "running")
QUEUE_UNFINISHED = ("queued", "running", "paused", "interrupted")  # a queue job's, until it is done
MAX_ROW_ID = 2**63 - 1  # SQLite's largest integer
ID_MARKS = "row_ids"  # table -> the highest id it ever gave (ids are never reused)

#: table -> (columns, indexes). Adding a column here is a migration: older databases gain it at start-up.
SCHEMA: dict[str, tuple[dict[str, type], list[tuple[str, ...]]]] = {
    "generations": (
        {
            "id": int, "owner": str, "kind": str, "status": str, "prompt": str, "negative_prompt": str,
            "model": str, "provider": str, "seed": int, "width": int, "height": int, "steps": int,
            "guidance": float, "batch_id": str, "batch_index": int, "loras": str, "params": str,
            "output_path": str, "error": str, "cost_usd": float, "job_id": int, "created_at": str,
            "started_at": str, "finished_at": str, "duration_s": float, "pid": int, "queue_id": int,
            "holder": str,  # the token of the studio making it, with ``pid``: see holder_alive
        },
        [("owner", "created_at"), ("kind",), ("model",), ("status",), ("job_id",), ("created_at",),
         ("output_path",), ("owner", "kind", "created_at"), ("queue_id",)],
    ),
    "jobs": (
        {
            "id": int, "owner": str, "kind": str, "status": str, "title": str, "model": str, "provider": str,
            "external_id": str, "progress": float, "step": int, "total": int, "params": str, "state": str,
            "result": str, "error": str, "log": str, "cost_usd": float, "stop_requested": int,
            "created_at": str, "started_at": str, "updated_at": str, "finished_at": str, "pid": int,
            "lane": str, "queued_at": str,  # a lane's queue (masuka.jobs): claimed in order inside a transaction
            "holder": str,  # the token of the studio whose runner queued or runs it, with ``pid``: see holder_alive
        },
        [("owner", "created_at"), ("kind", "status"), ("status",), ("created_at",), ("lane", "status")],
    ),
    "queue": (  # queued image work (masuka.queue): claimed by a worker inside a transaction
        {"id": int, "owner": str, "task": str, "status": str, "title": str, "model": str, "params": str,
         "position": float, "done": int, "total": int, "control": str, "error": str, "log": str, "worker": str,
         "pid": int, "created_at": str, "started_at": str, "updated_at": str, "finished_at": str},
        [("status", "position"), ("owner", "status")],
    ),
    "comparisons": (  # blind A/B tests (masuka.image.compare): the pairs and the votes in ``state``
        {"id": int, "owner": str, "kind": str, "title": str, "model": str, "params": str, "state": str,
         "created_at": str, "updated_at": str},
        [("owner", "created_at")],
    ),
    "job_metrics": (
        {"id": int, "job_id": int, "step": int, "loss": float, "lr": float, "sec_per_step": float,
         "vram_gb": float, "at": str, "created_at": str},
        [("job_id", "step")],
    ),
    "datasets": (
        {"id": int, "owner": str, "name": str, "trigger": str, "template": str, "options": str,
         "created_at": str, "updated_at": str},
        [("owner", "name")],
    ),
    "dataset_images": (
        {"id": int, "dataset_id": int, "file_name": str, "original_path": str, "processed_path": str,
         "caption": str, "width": int, "height": int, "sha256": str, "phash": str, "source_name": str,
         "created_at": str, "original_width": int, "original_height": int, "caption_source": str,
         "augment_of": int},
        [("dataset_id",), ("dataset_id", "sha256")],
    ),
    "loras": (
        {"id": int, "owner": str, "name": str, "path": str, "architecture": str, "base_model": str,
         "trigger": str, "rank": int, "source": str, "job_id": int, "size_bytes": int, "metadata": str,
         "created_at": str},
        [("owner",), ("path",)],
    ),
    "provider_health": (
        {"id": int, "provider": str, "failures": int, "unhealthy_until": str, "last_error": str,
         "created_at": str, "updated_at": str},
        [("provider",)],
    ),
    "model_availability": (
        {"id": int, "provider": str, "model": str, "key_id": str, "reason": str, "created_at": str},
        [("provider", "model", "key_id")],
    ),
    "api_tokens": (
        {"id": int, "owner": str, "name": str, "token_hash": str, "prefix": str, "created_at": str,
         "last_used_at": str},
        [("token_hash",), ("owner",)],
    ),
    "bench_results": (
        {"id": int, "kind": str, "params": str, "figures": str, "machine": str, "created_at": str},
        [("kind", "created_at")],
    ),
    "characters": (  # characters from a photo (masuka.characters): settings and prompt set in ``params``,
        # photos, views, runs and test grid in ``state``
        {"id": int, "owner": str, "name": str, "trigger": str, "params": str, "state": str, "dataset_id": int,
         "lora": str, "created_at": str, "updated_at": str},
        [("owner", "name")],
    ),
    "holds": (  # what running work uses, by process (masuka.holds): refused to deletions meanwhile
        {"id": int, "kind": str, "key": str, "holder": str, "pid": int, "created_at": str},
        [("kind", "key")],
    ),
}
JSON_COLUMNS = frozenset({"loras", "params", "state", "result", "options", "metadata", "figures"})
#: the tables whose rows name their owner
OWNED = tuple(table for table, (columns, _) in SCHEMA.items() if "owner" in columns)
DEFAULTS = {"owner": LOCAL_USER, "stop_requested": 0}
FTS = {"generations": ["prompt", "negative_prompt", "model"], "jobs": ["title", "model"]}  # History's search
_ACCESS = "check that you may read and write it and its folder"
_DAMAGED = "restore it from a backup, or move it aside to start with an empty one"
#: SQLite's (primary) result codes of a database file that cannot be used at all -> what a person can do
UNUSABLE = {sqlite3.SQLITE_CANTOPEN: _ACCESS, sqlite3.SQLITE_READONLY: _ACCESS, sqlite3.SQLITE_PERM: _ACCESS,
            sqlite3.SQLITE_NOTADB: _DAMAGED, sqlite3.SQLITE_CORRUPT: _DAMAGED}


def now() -> str:
    """UTC timestamp as stored in rows (ISO 8601, sortable)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _sqlite_utils() -> Any:
    """sqlite-utils, imported at the first connection (code needing no database, the bench suite, runs without
    it) and without pandas where nothing loaded it yet: sqlite-utils imports pandas when it can, only to give
    ``pandas.Timestamp`` values a column type, and MASUKA stores none. That import was half the CPU of a command
    like ``history list`` (0.5 s) and of every command's first store. Where pandas is loaded (Gradio loads it)
    sqlite-utils sees it as usual."""
    if "sqlite_utils" not in sys.modules and "pandas" not in sys.modules:
        sys.modules["pandas"] = None  # type: ignore[assignment]  # ``import pandas`` raises ImportError
        try:
            import sqlite_utils
        finally:
            del sys.modules["pandas"]
    import sqlite_utils

    return sqlite_utils


class Store:
    """SQLite database of one data dir."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._inherited: list[Any] = []
        try:
            self.db = self._connect()
            self.db.enable_wal()
            self.migrate()
        except sqlite3.DatabaseError as error:
            if getattr(self, "db", None) is not None:
                self.db.conn.close()
            advice = UNUSABLE.get(getattr(error, "sqlite_errorcode", 0) & 0xFF)
            if advice is None:  # busy, a full disk...: said where it is caught
                raise
            raise InvalidInput(f"The database {self.path} cannot be opened ({error}): {advice}, or choose another "
                               "data dir (--data-dir or MASUKA_DATA_DIR). The file was left as it is.") from error

    def _connect(self) -> Any:
        sqlite_utils = _sqlite_utils()
        self._pid = os.getpid()
        db = sqlite_utils.Database(sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                                   isolation_level=None))
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL's recommended level: commits survive a crash
        except sqlite3.DatabaseError:
            db.conn.close()
            raise
        return db

    def in_this_process(self) -> None:
        """In a process forked from the one that opened the store (a ZeroGPU worker): a connection of its own,
        as SQLite connections must not cross a fork. The inherited one is kept, unused and unclosed."""
        if self._pid == os.getpid():
            return
        self._inherited.append(self.db)
        self._lock = threading.RLock()  # the parent's may have been held by another thread at the fork
        self.db = self._connect()

    # -- schema -------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create missing tables, columns, indexes and full-text search; safe to run any number of times."""
        with self._lock:
            for name, (columns, indexes) in SCHEMA.items():
                table = self.db.table(name)
                if not table.exists():
                    defaults = {k: v for k, v in DEFAULTS.items() if k in columns}
                    table.create(columns, pk="id", defaults=defaults)
                else:
                    existing = set(table.columns_dict)
                    for column, kind in columns.items():
                        if column not in existing:
                            table.add_column(column, kind, not_null_default=DEFAULTS.get(column))
                for index in indexes:
                    table.create_index(list(index), if_not_exists=True)
            for name, searched in FTS.items():  # replace: an index whose set-up was cut short (no triggers yet:
                # they come last) is built again; an intact one is left as it is
                self.db.table(name).enable_fts(searched, create_triggers=True, replace=True)
                self._index_on_update_of(name, searched)
            self.db.execute(f"create table if not exists {ID_MARKS} (name text primary key, last integer not null)")
            self._video_holders()

    def _video_holders(self) -> None:
        """Video jobs of an older MASUKA kept their runner's token in ``state`` as ``runner``: it moves to the
        ``holder`` column (unless one is named there), the one place a holder is read from."""
        old = "kind = 'video' and case when json_valid(state) then json_extract(state, '$.runner') end is not null"
        if self.db.execute(f"select 1 from jobs where {old} limit 1").fetchone():  # a read first: no write lock
            with self.transaction():
                self.db.execute("update jobs set holder = coalesce(holder, json_extract(state, '$.runner')), "
                                f"state = json_remove(state, '$.runner') where {old}")

    def _index_on_update_of(self, table: str, searched: list[str]) -> None:
        """Re-index a row of ``table`` only when a searched column changes: sqlite-utils' ``<table>_au`` trigger
        fires on every update (a job's progress, a heartbeat). Its body is kept; an older database gets it too."""
        trigger = f"{table}_au"
        old = self.db.execute("select sql from sqlite_master where type = 'trigger' and name = ?",
                              [trigger]).fetchone()[0]
        head, body = re.split(r"\sBEGIN\s", old, maxsplit=1, flags=re.IGNORECASE)
        new = f"CREATE TRIGGER [{trigger}] AFTER UPDATE OF {', '.join(f'[{c}]' for c in searched)} ON [{table}]"
        if head != new:
            with self.transaction():
                self.db.execute(f"DROP TRIGGER [{trigger}]")
                self.db.execute(f"{new} BEGIN\n{body}")

    # -- generic rows ---------------------------------------------------------------------------------
    def insert(self, table: str, row: Mapping[str, Any]) -> int:
        values = {k: _encode(k, v) for k, v in row.items()}
        if "created_at" in SCHEMA.get(table, ({"created_at": str},))[0]:
            values.setdefault("created_at", now())
        with self.transaction():
            values["id"] = self._new_ids(table, 1, values.get("id"))
            self.db.table(table).insert(values)
        return values["id"]

    def insert_many(self, table: str, rows: list[Mapping[str, Any]], batch_size: int = 2000) -> None:
        """Bulk insert (benchmarks, imports) in one transaction."""
        stamp = now()
        with self.transaction():
            first = self._new_ids(table, len(rows))
            values = ({"created_at": stamp, **{k: _encode(k, v) for k, v in row.items()}, "id": first + index}
                      for index, row in enumerate(rows))
            self.db.table(table).insert_all(values, batch_size=batch_size)

    def _new_ids(self, table: str, count: int, given: int | None = None) -> int:
        """The first of ``count`` ids for new rows of ``table`` (``given`` when the row names its own): above
        every id the table ever held, so a deleted row's id is never given again and an id kept elsewhere (a
        character's dataset, a run's character, a job's image) can never come to name someone else's row."""
        top = self.db.execute(f"select coalesce(max(id), 0) from [{table}]").fetchone()[0]
        mark = self.db.execute(f"select last from {ID_MARKS} where name = ?", [table]).fetchone()
        first = given if given is not None else max(top, mark[0] if mark else 0) + 1
        self.db.execute(f"insert into {ID_MARKS} (name, last) values (?, ?) on conflict (name) do update set "
                        "last = max(last, excluded.last)", [table, first + count - 1])
        return first

    def update(self, table: str, row_id: int, **fields: Any) -> None:
        if table == "jobs":
            fields.setdefault("updated_at", now())
        with self._lock:
            self.db.table(table).update(row_id, {k: _encode(k, v) for k, v in fields.items()})

    def get(self, table: str, row_id: int) -> dict | None:
        with self._lock:
            rows = list(self.db.query(f"select * from [{table}] where id = ?", [row_id]))
        return _decode(rows[0]) if rows else None

    def existing(self, table: str, row_id: int) -> dict:
        """A row known to exist (just written, or named by another row); :class:`NotFound` if it is gone."""
        row = self.get(table, row_id)
        if row is None:
            raise NotFound(f"No {table} row #{row_id}: it was deleted.")
        return row

    def find(self, table: str, where: str | None = None, args: Any = (), *, order_by: str = "id desc",
             limit: int | None = None, offset: int | None = None) -> list[dict]:
        with self._lock:
            rows = self.db.table(table).rows_where(where, args, order_by=order_by, limit=limit, offset=offset)
            return [_decode(r) for r in rows]

    def count(self, table: str, where: str | None = None, args: Any = ()) -> int:
        sql = f"select count(*) from [{table}]" + (f" where {where}" if where else "")
        with self._lock:
            return self.db.execute(sql, args).fetchone()[0]

    def delete(self, table: str, row_id: int) -> None:
        with self._lock:
            self.db.table(table).delete(row_id)

    def delete_where(self, table: str, where: str, args: Any = ()) -> None:
        with self._lock:
            self.db.table(table).delete_where(where, args)

    def query(self, sql: str, args: Any = ()) -> list[dict]:
        with self._lock:
            return [_decode(r) for r in self.db.query(sql, args)]

    def owned_rows(self) -> dict[str, int]:
        """Each owner of rows, with how many rows of the tables that name an owner (:data:`OWNED`) are theirs."""
        owned: dict[str, int] = {}
        for table in OWNED:
            for row in self.query(f"select owner, count(*) as n from [{table}] group by owner"):
                owned[row["owner"]] = owned.get(row["owner"], 0) + row["n"]
        return owned

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Group reads (a count and its page) so no write of this process lands between them."""
        with self._lock:
            yield

    def quote_fts(self, text: str) -> str:
        """``text`` as a full-text search query that matches rows holding a word that starts with each of its words
        (``"word"*``), whatever characters it holds: FTS operators are plain words. Only letters and digits make
        words (as in the index), so a word of neither ("-", "✨") is dropped; "" when nothing is left to search."""
        return " ".join(f'"{word}"*' for word in re.findall(r"[^\W_]+", text))  # "snow,fox" is two words

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they land together or not at all; inside another transaction, part of it."""
        with self._lock:
            if self.db.conn.in_transaction:
                yield
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- jobs -----------------------------------------------------------------------------------------
    def mark_interrupted(self) -> dict[str, list[int]]:
        """At start-up: rows left ``queued``/``running`` by a holder that is gone become ``interrupted``
        (:func:`holder_alive` by their ``pid`` and ``holder`` token: jobs and generations alike).

        Rows of a live holder (the app while the CLI starts, another studio open in this process) are left
        alone, and so are remote video jobs (the provider keeps working and polling resumes them) and jobs
        waiting in a lane (the queue is kept: the next runner of that lane claims them). Returns the ids changed
        per table.
        """
        changed: dict[str, list[int]] = {}
        placeholders = ",".join("?" * len(UNFINISHED))
        # table -> the unfinished rows it keeps anyway
        tables = {"jobs": " and not (status = 'queued' and lane is not null)", "generations": ""}
        with self.transaction():
            for table, kept in tables.items():
                rows = self.db.execute(f"select id, pid, holder from {table} where status in ({placeholders}) "
                                       f"and kind != 'video'{kept}", UNFINISHED).fetchall()
                ids = [row_id for row_id, pid, token in rows if not holder_alive(pid, token)]
                for row_id in ids:
                    self.db.table(table).update(row_id, {"status": "interrupted", "finished_at": now(),
                                                         "error": "the app stopped before this finished"})
                changed[table] = ids
        return changed

    def add_metric(self, job_id: int, **fields: Any) -> None:
        self.insert("job_metrics", {"job_id": job_id, "at": now(), **fields})

    def stop_requested(self, job_id: int) -> bool:
        with self._lock:
            row = self.db.execute("select stop_requested from jobs where id = ?", [job_id]).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()


def owns_anything(path: Path, user: str) -> bool:
    """Whether ``user`` owns a row in the database at ``path``, read without changing it or making it (a missing or
    unusable one owns nothing). Opened for writing, as a read-only connection would leave its WAL files behind."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=30)) as db:
            tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
            return any(db.execute(f"select 1 from [{table}] where owner = ? limit 1", [user]).fetchone()
                       for table in OWNED if table in tables)
    except sqlite3.DatabaseError:
        return False


def owner_clause(user: str, admin: bool, column: str = "owner") -> tuple[str, list[str]]:
    """SQL condition restricting rows to the user's own (admins see everything)."""
    return ("1 = 1", []) if admin else (f"{column} = ?", [user])


def insert_named(store: Store, table: str, row: Mapping[str, Any], taken: str) -> int:
    """Insert ``row`` unless its owner already has a row of that ``name`` (checked in the same transaction, else
    :class:`InvalidInput` with the message ``taken``); returns the new id."""
    with store.transaction():
        if store.count(table, "owner = ? and name = ?", [row["owner"], row["name"]]):
            raise InvalidInput(taken)
        return store.insert(table, row)


def find_named(store: Store, table: str, ref: str | int, owner: str, admin: bool, what: str, hint: str) -> dict:
    """A ``what`` (a row of ``table``) by id or name: the owner's own first, then (admins) anyone's; else
    :class:`NotFound` ending with ``hint`` (where to create one).

    Text of digits only is an id (what the pickers send; a name is never only digits), any other text a name, so a
    reference names one row or none: a name that several other owners give is refused (:class:`InvalidInput`),
    saying the ids to choose from."""
    text = composed(str(ref or ""))  # as names are kept
    if not text:
        raise InvalidInput(f"Choose a {what}.")
    match, value = ("id = ?", row_id(text) or -1) if is_id_text(text) else ("name = ?", text)
    rows = store.find(table, f"owner = ? and {match}", [owner, value], limit=1)
    if not rows and admin:
        rows = store.find(table, match, [value], order_by="id")
    if not rows:
        raise NotFound(f"No {what} {text!r}: {hint}.")
    if len(rows) > 1:
        owners = ", ".join(f"{row['id']} ({row['owner']})" for row in rows)
        raise InvalidInput(f"{len(rows)} {what}s go by {text!r} (ids {owners}): choose one by its id.")
    return rows[0]


def is_id_text(text: str) -> bool:
    """Whether ``text`` is written as an id: ASCII digits only (what the pickers send). A name is never that."""
    return text.isascii() and text.isdigit()


def row_id(value: Any) -> int | None:
    """``value`` (a number, or ASCII digits as typed) as an id a row can have, else None: a fraction, text or a
    number outside SQLite's positive integers names no row."""
    if isinstance(value, str) and not is_id_text(value.strip()):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not isinstance(value, str) and number != value:
        return None
    return number if 0 < number <= MAX_ROW_ID else None


def busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's answer to a database another connection kept locked past the busy timeout
    (``SQLITE_BUSY``, ``SQLITE_LOCKED``: "database is locked"): a passing state, not a fault of the work."""
    return isinstance(error, sqlite3.OperationalError) and (
        getattr(error, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        or "database is locked" in str(error))


def process_alive(pid: int | None) -> bool:
    """Whether another live process has ``pid`` (this process's own pid counts as gone: a restart reuses it)."""
    return _alive(pid)


#: the tokens of the studios open in this process (:attr:`~masuka.jobs.JobRunner.token`, from the runner's start to
#: its close): what :func:`holder_alive` tells this process's holders apart by
LIVE_HOLDERS: set[str] = set()


def holder_alive(pid: int | None, token: str | None) -> bool:
    """Whether the holder that wrote ``pid`` and ``token`` into a row still runs: a studio open in this process
    (:data:`LIVE_HOLDERS`; one closed, or a process before a restart that reused the pid, is gone) or another live
    process."""
    return token in LIVE_HOLDERS or process_alive(pid)


def _alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


def _decode(row: dict) -> dict:
    for column in JSON_COLUMNS.intersection(row):
        if isinstance(row[column], str):
            try:
                row[column] = json.loads(row[column])
            except ValueError:
                pass
    return row
