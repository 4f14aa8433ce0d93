"""The running studio: configuration, store, GPU slots, model cache and background jobs of one process.

The UI and the CLI each open one :class:`Studio` and pass it to the domain functions they call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from masuka.config import Config
from masuka.gpu import GPURunner, StopFlags
from masuka.jobs import JobRunner
from masuka.models.cache import ModelCache
from masuka.store import Store

log = logging.getLogger(__name__)


@dataclass
class Studio:
    config: Config
    store: Store
    gpu: GPURunner
    models: ModelCache = field(default_factory=ModelCache)
    stops: StopFlags = field(default_factory=StopFlags)
    jobs: JobRunner | None = None

    @classmethod
    def open(cls, config: Config) -> "Studio":
        """Open the data dir: migrate the database and mark work a dead process left behind."""
        store = Store(config.db_path)
        changed = store.mark_interrupted()
        if any(changed.values()):
            log.warning("marked interrupted after an unclean stop: %s", changed)
        studio = cls(config=config, store=store, gpu=GPURunner(config.data_dir / "locks", config.gpu_concurrency))
        studio.jobs = JobRunner(store, config.max_queued_per_user if config.multi_user else None)
        return studio

    def close(self) -> None:
        self.models.release()
        self.store.close()
