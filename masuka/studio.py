"""The running studio: configuration, store, GPU slots, model cache and background jobs of one process.

The UI and the CLI each open one :class:`Studio` and pass it to the domain functions they call.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from masuka.config import Config, on_zerogpu
from masuka.errors import InvalidInput
from masuka.gpu import GPURunner, StopFlags
from masuka.jobs import JobRunner
from masuka.key_store import KeyStore
from masuka.logins import LoginThrottle
from masuka.model_cache import ModelCache
from masuka.store import Store

log = logging.getLogger(__name__)


def check_writable(store: Store, config: Config) -> None:
    """:class:`InvalidInput` when the database cannot be written (a read-only file or file system opens, and
    reads): said at start-up rather than as the raw error of every action that writes. The probe writes the
    header's ``user_version`` as it is."""
    with store.transaction():
        version = store.db.execute("PRAGMA user_version").fetchone()[0]
        try:
            store.db.execute(f"PRAGMA user_version = {int(version)}")
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_READONLY:
                raise
            raise InvalidInput(f"The data dir {config.data_dir} cannot be used: {error}.") from None


@dataclass
class Studio:
    config: Config
    store: Store
    gpu: GPURunner
    keys: KeyStore
    models: ModelCache = field(default_factory=ModelCache)
    stops: StopFlags = field(default_factory=StopFlags)
    jobs: JobRunner | None = None
    logins: LoginThrottle = field(default_factory=LoginThrottle)
    aids: ModelCache = field(default_factory=ModelCache)  # the small helper models (safety, prompt LLM, identity)
    upscalers: ModelCache = field(default_factory=ModelCache)  # one model upscaler, on the CPU (image.upscale)

    @classmethod
    def open(cls, config: Config) -> "Studio":
        """Open the data dir: migrate the database, check that it can be written, make the folders (once the
        database passed: a data dir refused for it is left as it was) and mark work a dead process left behind."""
        store = Store(config.db_path)
        try:
            check_writable(store, config)
            config.make_folders()
        except InvalidInput:
            store.close()
            raise
        changed = store.mark_interrupted()
        if any(changed.values()):
            log.warning("marked interrupted after an unclean stop: %s", changed)
        gpu = GPURunner(config.data_dir / "locks", config.gpu_concurrency)
        studio = cls(config=config, store=store, gpu=gpu, keys=KeyStore(config.data_dir),
                     models=ModelCache(config.gpu_concurrency),
                     logins=LoginThrottle(config.login_attempts, config.login_lockout_s))
        studio.jobs = JobRunner(store, config.max_queued_per_user if config.multi_user else None, studio)
        if on_zerogpu():  # GPU functions run in a forked worker: these cross as references to its copies
            from masuka.gpu_worker import shared

            shared(studio)
            shared(store)
        return studio

    def runner(self) -> JobRunner:
        """The background job runner, which :meth:`open` starts."""
        if self.jobs is None:
            raise RuntimeError("This studio has no job runner: open it with Studio.open.")
        return self.jobs

    @contextmanager
    def hold_gpu(self, job: str, owner: str, **kwargs: Any) -> Iterator[None]:
        """A GPU slot for ``owner``'s job (see :meth:`GPURunner.hold`), and a model cache session: the models
        the job gets are its own while it holds the slot. On a shared studio only admins are told whose jobs
        hold the GPU."""
        with self.gpu.hold(job, private=self.config.multi_user and not self.config.is_admin(owner), **kwargs), \
                self.models.session():
            yield

    def in_this_process(self) -> None:
        """In a process forked from the app (a ZeroGPU worker): a database connection of its own, and model
        caches whose locks and holders belong to this process."""
        self.store.in_this_process()
        self.models.in_this_process()
        self.aids.in_this_process()
        self.upscalers.in_this_process()

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        self.models.release()
        self.aids.release()
        self.upscalers.release()
        self.store.close()
