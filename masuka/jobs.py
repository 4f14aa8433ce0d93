"""Background work that outlives a click: each job is a row in ``jobs`` that this process owns.

Rows are read and written here and nowhere else: :func:`create` records one, :func:`get` / :func:`find` read
them as :class:`JobRow`, :func:`progress`, :func:`log` and :func:`finish` move them on.

:class:`JobRunner` runs a job's work with a :class:`JobContext` (``check_stop()``, ``progress(...)``,
``log(...)``), keeps its row's status honest (``running`` → ``completed`` / ``failed`` / ``cancelled``), and
runs jobs that share a lane (the GPU lane for training, for instance) one after another. A lane's queue is the
``jobs`` table itself: a queued row is claimed inside a transaction, so a queue left by a stopped app is still
there, and still queued, when the app starts again (:meth:`JobRunner.adopt`).
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from masuka.errors import Cancelled, GPUBusy, MasukaError, as_disk_full
from masuka.store import LIVE_HOLDERS, LOCAL_USER, UNFINISHED, Store, holder_alive, now, row_id

log = logging.getLogger(__name__)
TABLE = "jobs"
LOG_LINES = 200
ADOPT_POLL_S = 5.0
#: the longest a job's wait sleeps before it looks for a stop again (:meth:`JobContext.pause`)
STOP_CHECK_S = 0.2
FINISHED = ("completed", "failed", "cancelled", "interrupted")
#: the first and the longest pause before a runner writes a job's end again, when the write failed (a busy database)
FINISH_RETRY_S = 0.5
FINISH_RETRY_MAX_S = 30.0
#: ``stop_requested`` values: 1 asks to stop keeping what was made (a checkpoint), 2 to stop discarding it
STOP_MODES = {1: "save", 2: "discard"}
#: the lanes of this app (local video and captions share the GPU lane; training has its own, downloads too)
LANES = ("gpu", "gpu-train", "download")
#: job kind -> "module:function" running a job of that kind from its row alone, ``function(studio, ctx)``: how
#: a queued job left by a stopped app runs when the next app start adopts it
KINDS = {
    "train": "masuka.training.runs:run_job",
    "download": "masuka.models.manage:download_job",
    "video": "masuka.video.jobs:run_video_job",
}
#: the kinds of job nothing takes up once their process is gone (a CLI killed mid-run): :func:`interrupt_gone`
ENDS_WITH_PROCESS = ("train", "caption", "download")
#: job kinds -> "module:function" taking up the unfinished jobs of those kinds that no live process runs any more (a
#: process killed mid-job), ``function(studio)``: run when the app adopts its lanes, then every ADOPT_POLL_S
RECOVER = {("video",): "masuka.video.jobs:resume_video_jobs", ENDS_WITH_PROCESS: "masuka.jobs:interrupt_gone"}
#: why such a job reads ``interrupted``
GONE = "the process running it stopped before it finished"


@dataclass
class JobRow:
    """One ``jobs`` row: ``params``, ``state`` and ``result`` are always dicts (empty when unset)."""

    id: int = 0
    kind: str = ""
    owner: str = LOCAL_USER
    status: str = "queued"
    title: str | None = None
    model: str | None = None
    provider: str | None = None
    external_id: str | None = None
    progress: float | None = None
    step: int | None = None
    total: int | None = None
    params: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    error: str | None = None
    log: str | None = None
    cost_usd: float | None = None
    stop_requested: int = 0
    lane: str | None = None
    queued_at: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None
    holder: str | None = None  # the token of the runner that queued or runs it (JobRunner.token)

    @classmethod
    def from_row(cls, row: dict) -> JobRow:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in known}
        for name in ("params", "state", "result"):
            values[name] = values.get(name) if isinstance(values.get(name), dict) else {}
        values["stop_requested"] = values.get("stop_requested") or 0
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    @property
    def stop_mode(self) -> str | None:
        """``save`` or ``discard`` once a stop was asked for, else None."""
        return STOP_MODES.get(self.stop_requested)

    def as_dict(self) -> dict:
        """The row as the UI, the CLI's ``--json`` and the REST API show it."""
        return asdict(self)

    # rows are also read the way the store's dicts are, by the views and commands that show them
    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


# -- rows -------------------------------------------------------------------------------------------------
def create(store: Store, kind: str, owner: str = LOCAL_USER, *, status: str = "queued", title: str = "",
           state: dict | None = None, params: dict | None = None, **columns: Any) -> int:
    """Record a job (queued unless told) owned by this process, and by no runner until one queues or runs it
    (:meth:`JobRunner.submit`, :meth:`JobRunner.run_here`); returns its id. Work that a runner takes next is
    recorded by :meth:`JobRunner.create`, which names its holder from the start."""
    row = {"owner": owner, "kind": kind, "status": status, "title": title, "params": params or {},
           "state": state or {}, "pid": os.getpid(), **columns}
    if status == "running":
        row.setdefault("started_at", now())
    return store.insert(TABLE, row)


def get(store: Store, job_id: int) -> JobRow:
    """A job known to exist (just created, or named by another row); :class:`NotFound` when it is gone."""
    return JobRow.from_row(store.existing(TABLE, int(job_id)))


def lookup(store: Store, job_id: int) -> JobRow | None:
    """The job, or None when there is no such row (an id a person typed, a row deleted meanwhile)."""
    number = row_id(job_id)
    row = store.get(TABLE, number) if number else None
    return JobRow.from_row(row) if row else None


def find(store: Store, where: str | None = None, args: Any = (), **options: Any) -> list[JobRow]:
    """Rows matching ``where`` (newest first unless ``order_by`` says otherwise)."""
    return [JobRow.from_row(row) for row in store.find(TABLE, where, args, **options)]


def update(store: Store, job_id: int, **columns: Any) -> None:
    """Set columns of a job's row (``updated_at`` is stamped)."""
    store.update(TABLE, job_id, **columns)


def progress(store: Store, job_id: int, step: int | None = None, total: int | None = None, *,
             fraction: float | None = None, state: dict | None = None, **columns: Any) -> None:
    """Record how far a job is: ``step`` of ``total`` (the fraction follows unless given), its ``state``."""
    values = dict(columns)
    if step is not None:
        values["step"] = int(step)
    if total is not None:
        values["total"] = int(total)
    if fraction is None and step is not None and total:
        fraction = step / total
    if fraction is not None:
        values["progress"] = round(min(1.0, max(0.0, fraction)), 4)
    if state is not None:
        values["state"] = state
    store.update(TABLE, job_id, **values)


def log_line(store: Store, job_id: int, text: str, keep: int = LOG_LINES) -> None:
    """Append a time-stamped line to a job's log, keeping its last ``keep`` lines."""
    row = store.get(TABLE, job_id)
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    lines = ((row or {}).get("log") or "").splitlines()[-(keep - 1):] + [f"{stamp} {text}"]
    store.update(TABLE, job_id, log="\n".join(lines) + "\n")


def finish(store: Store, job_id: int, status: str, error: str | None = None, *, result: dict | None = None,
           detail: str | None = None, **columns: Any) -> None:
    """End a job: ``completed``, ``failed``, ``cancelled`` or ``interrupted``, with the reason for people;
    ``detail`` (a traceback) is appended to its log."""
    if status not in FINISHED:
        raise ValueError(f"not a final status: {status}")
    values = {"status": status, "error": error, "finished_at": now(), **columns}
    if result is not None:
        values["result"] = result
    if detail:
        row = store.get(TABLE, job_id)
        values["log"] = ((row or {}).get("log") or "") + detail
    store.update(TABLE, job_id, **values)


def request_stop(store: Store, job_id: int, discard: bool = False) -> None:
    """Ask a job to stop (it stops at its next :meth:`JobContext.check_stop`)."""
    store.update(TABLE, job_id, stop_requested=2 if discard else 1)


def interrupt_gone(studio: Any) -> list[int]:
    """Mark ``interrupted`` the unfinished jobs of :data:`ENDS_WITH_PROCESS` that no live holder runs any more (as
    :meth:`~masuka.store.Store.mark_interrupted` does at start-up), so that they can be resumed; queued ones waiting
    in a lane stay for a runner to claim. Rows whose holder lives cost one read. Returns the ids marked."""
    store, runner = studio.store, studio.runner()
    where = (f"kind in ({','.join('?' * len(ENDS_WITH_PROCESS))}) and status in "
             f"({','.join('?' * len(UNFINISHED))}) and not (status = 'queued' and lane is not null)")
    args = [*ENDS_WITH_PROCESS, *UNFINISHED]
    if all(runner.alive(row) for row in find(store, where, args)):  # a read first: no write lock when none is gone
        return []
    with store.transaction():
        gone = [row.id for row in find(store, where, args) if not runner.alive(row)]
        for job_id in gone:
            finish(store, job_id, "interrupted", GONE)
    if gone:
        log.warning("marked interrupted, their process gone: jobs %s", gone)
    return gone


# -- what a job's work talks to ----------------------------------------------------------------------------
@dataclass
class Progress:
    """One progress report as a watcher (a UI progress bar, the CLI's stderr) sees it."""

    step: int | None = None
    total: int | None = None
    fraction: float | None = None
    message: str = ""
    detail: str = ""  # what was just made (a caption, say), for watchers that show it


Watch = Callable[[Progress], None]


@dataclass
class JobContext:
    """What a job's work gets to talk to its row: stop requests, progress and a log.

    ``interrupt`` is an event set from outside the row (a signal to the CLI, a session's Stop button); ``watch``
    sees every progress report as it is made (for a progress bar in the tab that asked).
    """

    store: Store
    job_id: int
    interrupt: threading.Event | None = None
    watch: Watch | None = None

    def row(self) -> JobRow:
        row = lookup(self.store, self.job_id)
        if row is None:
            raise Cancelled(at="after its job was deleted")
        return row

    def stop_mode(self) -> str | None:
        """``interrupt`` (the event), ``save`` or ``discard`` (the row's stop flag), or None to go on."""
        if self.interrupt is not None and self.interrupt.is_set():
            return "interrupt"
        if not self.store.stop_requested(self.job_id):
            return None
        row = self.store.get(TABLE, self.job_id)
        return STOP_MODES.get(row["stop_requested"], "save") if row else "discard"

    def stop_requested(self) -> bool:
        return self.stop_mode() is not None

    def check_stop(self, before: Callable[[], None] | None = None, kept: str = "") -> None:
        """Raise :class:`Cancelled` when a stop was asked for, after running ``before`` (cancelling at a
        provider, say)."""
        if self.stop_mode() is None:
            return
        if before is not None:
            before()
        raise Cancelled(kept)

    def pause(self, seconds: float, check: Callable[[], None] | None = None) -> None:
        """Wait ``seconds`` in slices of :data:`STOP_CHECK_S`, running ``check`` (:meth:`check_stop` unless given)
        after each, so a stop asked for meanwhile ends the wait within a slice."""
        check = check or self.check_stop
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(STOP_CHECK_S, left))
            check()

    def progress(self, step: int | None = None, total: int | None = None, *, fraction: float | None = None,
                 message: str = "", detail: str = "", **columns: Any) -> None:
        """Record progress in the row (and ``state``/other columns given) and tell the watcher."""
        progress(self.store, self.job_id, step, total, fraction=fraction, **columns)
        if step is not None or fraction is not None or message:
            self.tell(Progress(step, total, fraction, message, detail))

    def tell(self, report: Progress) -> None:
        """Tell the watcher only (progress the row does not keep, such as a model download's line)."""
        if self.watch is not None:
            if report.fraction is None and report.step is not None and report.total:
                report.fraction = report.step / report.total
            self.watch(report)

    def log(self, text: str) -> None:
        """Append a line to the job's log."""
        log.info("job %s: %s", self.job_id, text)
        log_line(self.store, self.job_id, text)


JobWork = Callable[[Any], object]  # takes the JobContext (or the subclass the submitter gives as ``ctx``)


# -- running ------------------------------------------------------------------------------------------------
class JobRunner:
    """Runs job work in background threads; lanes serialise jobs that must not overlap."""

    def __init__(self, store: Store, max_queued_per_user: int | None = None, studio: object = None):
        self.store = store
        self.max_queued_per_user = max_queued_per_user
        self.studio = studio  # what adopted jobs' functions take first (the Studio that owns this runner)
        self._work: dict[int, tuple[JobWork, JobContext | None]] = {}
        self._mine: set[int] = set()  # queued in a lane by this runner
        self._lanes: dict[str, threading.Event] = {}
        self._adopting: set[str] = set()
        self._running: set[int] = set()  # claimed or started here, until its work ends
        self._recovering: threading.Event | None = None
        self._threads: dict[int, threading.Thread] = {}
        #: job id -> its latest attempt here: each requeue, submit and start makes a new one, so the thread of an
        #: attempt that ended (its end already recorded, the job resumed since) neither writes its end over the newer
        #: attempt's row (:meth:`_end`) nor takes the job out of :attr:`_running` while the newer one runs
        self._attempts: dict[int, int] = {}
        self._attempt_numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        #: the studio's, written into the rows of the work it holds (the jobs it queues or runs and the generations
        #: it makes, by :meth:`holding`; queue jobs, characters being made; see :func:`~masuka.store.holder_alive`):
        #: another studio open in this process, one opened again, or a process that reuses the pid, is told apart
        #: from the one that held them. Live until :meth:`close`.
        self.token = uuid.uuid4().hex
        LIVE_HOLDERS.add(self.token)

    def close(self) -> None:
        """Stop the lane threads (after the job each one is running, if any); the queue stays in the table. The
        rows this runner's studio holds count as gone from now on (:func:`~masuka.store.holder_alive`)."""
        self._closed = True
        LIVE_HOLDERS.discard(self.token)
        with self._lock:
            events = list(self._lanes.values()) + ([self._recovering] if self._recovering else [])
        for event in events:
            event.set()

    def holding(self) -> dict[str, Any]:
        """The columns that name this runner's studio the holder of a row (a job it queues or runs, a generation
        it makes): this process's ``pid`` and :attr:`token`, as :func:`~masuka.store.holder_alive` reads them."""
        return {"pid": os.getpid(), "holder": self.token}

    def create(self, kind: str, owner: str = LOCAL_USER, **options: Any) -> int:
        """Record a job (:func:`create`'s ``options``) that this runner queues or runs next: held by its studio from
        the start, so a studio opened on the data dir meanwhile does not take it for a gone process's work; returns
        its id."""
        return create(self.store, kind, owner, **options, **self.holding())

    def requeue(self, job_id: int) -> None:
        """Put a stopped, failed or interrupted job back in the queue, held by this runner's studio until it is
        given to a runner again. The attempt that ended is over: a late end write of its thread is ignored
        (:meth:`_end`)."""
        with self._lock:
            self._new_attempt(job_id)
        update(self.store, job_id, status="queued", stop_requested=0, error=None, finished_at=None,
               **self.holding())

    def submit(self, job_id: int, work: JobWork | None = None, lane: str | None = None,
               ctx: JobContext | None = None) -> None:
        """Start ``work(ctx)`` now, or after the jobs already queued in ``lane``; without ``work`` the job's
        kind says what runs (:data:`KINDS`).

        With a per-user limit, a job whose owner already has that many jobs queued or running is refused
        (its row becomes ``failed`` with the reason) so one person cannot fill the GPU queue.

        Work started now runs in a copy of the caller's context variables, so a job started from a Gradio request
        sees that request (``gradio.context.LocalContext.request``) as the handler does: on ZeroGPU ``spaces.GPU``
        reads it to charge a GPU call to the visitor's quota. A lane's job runs whenever its turn comes, maybe
        after the request has ended, so it carries no request (nor does any lane run ZeroGPU calls: training and
        local video are refused there, downloads use no GPU).
        """
        self._check_fair_share(job_id)
        if lane is None:
            context = contextvars.copy_context()
            with self._lock:
                attempt = self._new_attempt(job_id)
            thread = threading.Thread(target=context.run, args=(self._run, job_id, work, ctx, False, False, attempt),
                                      name=f"job-{job_id}", daemon=True)
            with self._lock:
                self._threads[job_id] = thread
                self._running.add(job_id)  # from now on: a watcher never sees it between submit and start
            thread.start()
            return
        with self._lock:
            self._new_attempt(job_id)
            self._mine.add(job_id)
            if work is not None:
                self._work[job_id] = (work, ctx)
        update(self.store, job_id, status="queued", lane=lane, queued_at=now(), **self.holding())
        self._wake(lane)

    def run_here(self, job_id: int, work: JobWork, ctx: JobContext | None = None) -> object:
        """Run ``work`` in the calling thread (a request that waits for its answer, as captioning does), with the
        same bookkeeping as a background job; returns what ``work`` returns and raises what it raised, once the
        row says so."""
        return self._run(job_id, work, ctx, reraise=True)

    def adopt(self, *lanes: str) -> None:
        """Also run the queued jobs of ``lanes`` (all of :data:`LANES` unless told) that a process no longer
        running left behind (the app at start-up: its queue survives a restart)."""
        lanes = lanes or LANES
        with self._lock:
            self._adopting.update(lanes)
        self.recover()
        with self._lock:
            if self._recovering is None:
                self._recovering = threading.Event()
                threading.Thread(target=self._recover_now_and_then, args=(self._recovering,), name="job-recovery",
                                 daemon=True).start()
        for lane in lanes:
            self._wake(lane)

    def recover(self) -> None:
        """Run each :data:`RECOVER` function once (the app: at start-up, then every :data:`ADOPT_POLL_S`), so a
        job whose process died does not read ``running`` for as long as the app is up."""
        if self.studio is None:
            return
        for kinds, target in RECOVER.items():
            try:
                named_function(target)(self.studio)
            except Exception:  # a locked database, say: the next poll tries again
                if self._closed:
                    return
                log.exception("taking up the %s jobs of gone processes failed", ", ".join(kinds))

    def _recover_now_and_then(self, closing: threading.Event) -> None:
        while not closing.wait(ADOPT_POLL_S) and not self._closed:
            self.recover()

    def runs(self, job_id: int) -> bool:
        """Whether this runner has claimed or is running ``job_id``."""
        with self._lock:
            return job_id in self._running

    def alive(self, row: JobRow) -> bool:
        """Whether ``row``'s job is in live hands: this runner's (claimed or running) or its holder's, a studio open in
        this process or another live process (:func:`~masuka.store.holder_alive`)."""
        return self.runs(row.id) or holder_alive(row.pid, row.holder)

    def dropped(self, row: JobRow) -> bool:
        """Whether ``row`` is a job this runner started and no longer runs though the row is unfinished (its thread
        ended without recording the end: nothing will move it on until it is taken up again)."""
        with self._lock:
            held = row.id in self._running or row.id in self._mine
        return not row.finished and row.holder == self.token and not held

    def _wake(self, lane: str) -> None:
        with self._lock:
            event = self._lanes.get(lane)
            if event is None:
                event = self._lanes[lane] = threading.Event()
                threading.Thread(target=self._drain, args=(lane, event), name=f"lane-{lane}", daemon=True).start()
        event.set()

    def check_share(self, owner: str, job_id: int = 0) -> None:
        """:class:`GPUBusy` when ``owner`` already has their share of jobs queued or running besides ``job_id`` (a
        job not recorded yet unless given; a user resuming stopped work asks for a new share, as a new job does)."""
        if not self.max_queued_per_user:
            return
        waiting = self.store.count(TABLE, f"owner = ? and id != ? and status in ({','.join('?' * len(UNFINISHED))})",
                                   [owner, job_id, *UNFINISHED])
        if waiting >= self.max_queued_per_user:
            raise GPUBusy(f"You already have {waiting} jobs queued or running (the limit is "
                          f"{self.max_queued_per_user} per user): wait for one to finish or stop one.")

    def _check_fair_share(self, job_id: int) -> None:
        row = lookup(self.store, job_id)
        if row is None or row.started_at:  # started work picked up again after a restart is not a new request
            return
        try:
            self.check_share(row.owner, job_id)
        except GPUBusy as busy:
            finish(self.store, job_id, "failed", str(busy))
            raise

    def wait(self, job_id: int, timeout: float | None = None) -> JobRow:
        """Block until the job's row leaves queued/running (for the CLI and tests); return the row
        (:class:`NotFound` when it was deleted meanwhile)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = get(self.store, job_id)
            if row.finished:
                return row
            if deadline is not None and time.monotonic() > deadline:
                return row
            time.sleep(0.1)

    def claim(self, lane: str) -> JobRow | None:
        """Take the next queued job of ``lane`` this runner may run (its own, or one a gone holder left when
        adopting: a closed studio, a dead process), inside one transaction so no other runner takes it too; it
        becomes ``running``."""
        adopting = lane in self._adopting

        def mine(row: JobRow) -> bool:
            return row.id in self._mine or (adopting and not holder_alive(row.pid, row.holder))

        where, args = "lane = ? and status = 'queued'", [lane]
        if not any(mine(row) for row in find(self.store, where, args)):  # a read first: no write lock when idle
            return None
        with self.store.transaction():
            for row in find(self.store, where, args, order_by="queued_at, id"):
                if mine(row):
                    with self._lock:
                        self._running.add(row.id)
                    update(self.store, row.id, status="running", **self.holding(),
                           started_at=row.started_at or now(), error=None)
                    return get(self.store, row.id)
        return None

    def _drain(self, lane: str, event: threading.Event) -> None:
        while not self._closed:
            try:
                row = self.claim(lane)
            except Exception:  # a locked database: try again later, never lose the lane
                if self._closed:
                    return
                log.exception("claiming the next %s job failed", lane)
                row = None
            if row is None:
                # a gone process's queue is looked for now and then; this process's own jobs wake the lane
                event.wait(ADOPT_POLL_S if lane in self._adopting else None)
                event.clear()
                continue
            with self._lock:
                self._mine.discard(row.id)
                work, ctx = self._work.pop(row.id, (None, None))
            self._run(row.id, work, ctx, claimed=True)

    def _new_attempt(self, job_id: int) -> int:
        """A new attempt at ``job_id`` (the lock held): the end of any earlier one is no longer its to write."""
        attempt = self._attempts[job_id] = next(self._attempt_numbers)
        return attempt

    def _current(self, job_id: int, attempt: int) -> bool:
        """Whether ``attempt`` is still the latest attempt at ``job_id`` here (not requeued or started again)."""
        with self._lock:
            return self._attempts.get(job_id) == attempt

    def _run(self, job_id: int, work: JobWork | None, ctx: JobContext | None, claimed: bool = False,
             reraise: bool = False, attempt: int | None = None) -> object:
        with self._lock:
            if attempt is None:  # claimed from a lane, or run here
                attempt = self._new_attempt(job_id)
            self._running.add(job_id)
        try:
            return self._run_tracked(job_id, work, ctx, claimed, reraise, attempt)
        finally:
            with self._lock:
                if self._attempts.get(job_id) == attempt:  # else a newer attempt runs it now: still running here
                    self._running.discard(job_id)
                    del self._attempts[job_id]

    def _run_tracked(self, job_id: int, work: JobWork | None, ctx: JobContext | None, claimed: bool,
                     reraise: bool, attempt: int) -> object:
        row = lookup(self.store, job_id)
        if row is None or row.status in ("cancelled", "completed"):
            return None
        if row.stop_requested:
            finish(self.store, job_id, "cancelled", str(Cancelled(at="before it started")))
            return None
        if not claimed:
            update(self.store, job_id, status="running", **self.holding(), started_at=row.started_at or now(),
                   error=None)
        ctx = ctx or JobContext(self.store, job_id)
        try:
            answer = (work or self._kind_work(row))(ctx)
        except (Cancelled, KeyboardInterrupt) as error:
            self._end(job_id, attempt, "cancelled",
                      str(error) if isinstance(error, Cancelled) else str(Cancelled()))
            if reraise:
                raise
        except MasukaError as error:
            self._end(job_id, attempt, "failed", str(error))
            if reraise:
                raise
        except Exception as error:  # a bug or a fault: record it, never leave the row "running"
            log.exception("job %s failed", job_id)
            full = as_disk_full(error)
            self._end(job_id, attempt, "failed", str(full) if full else f"{type(error).__name__}: {error}",
                      detail=traceback.format_exc())
            if reraise and full:
                raise full from error
            if reraise:
                raise
        else:
            self._end(job_id, attempt, "completed")
            return answer
        return None

    def _end(self, job_id: int, attempt: int, status: str, error: str | None = None, *,
             detail: str | None = None) -> None:
        """:func:`finish` the job unless its work recorded its own end (a remote run cancelled or failed at its
        service: that write and its time stand), trying again without ``detail`` and after a growing pause while the
        write fails (a busy database, a full disk), until it lands or the runner closes: the row never stays
        ``running`` behind a thread that ended.

        Only while ``attempt`` is the job's latest here and the row is still this runner's: a job whose work recorded
        its own end (a remote run cancelled at its service) may be resumed before this write, and the late write
        must not end the newer attempt (a Resume soon after Stop read ``cancelled`` again). The check and the write
        are one transaction, so a requeue lands before the check or after the write."""
        pause = FINISH_RETRY_S
        while True:
            try:
                with self.store.transaction():
                    row = lookup(self.store, job_id)
                    ours = row is not None and row.holder == self.token and self._current(job_id, attempt)
                    if row and ours and not row.finished:
                        finish(self.store, job_id, status, error, detail=detail)
                return
            except Exception:
                log.exception("job %s could not be recorded as %s; trying again in %.0f s", job_id, status, pause)
            detail = None  # the traceback may be what a full disk cannot take
            if self._closed:
                return
            time.sleep(pause)
            pause = min(2 * pause, FINISH_RETRY_MAX_S)

    def _kind_work(self, row: JobRow) -> JobWork:
        """The work of a job known only by its row (adopted after a restart)."""
        target = KINDS.get(row.kind)
        if target is None or self.studio is None:
            raise MasukaError(f"MASUKA cannot run a {row.kind!r} job it did not start itself: start it again.")
        function = named_function(target)
        studio = self.studio
        return lambda ctx: function(studio, ctx)


def named_function(target: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` (of :data:`KINDS`, :data:`RECOVER`) names."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
