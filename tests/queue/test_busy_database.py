"""A queue job that another process's lock on the database cuts short (a write refused after the busy timeout) is
interrupted, not failed, leaves no image without its History entry, and resumes from its finished images."""

from __future__ import annotations

import logging
import sqlite3

from masuka.image import generate
from masuka.queue.jobs import queue_images
from masuka.queue.worker import work_until_empty
from tests.queue.test_queue import completed_rows, request


class _Release(logging.Handler):
    """Ends the other connection's lock once the worker says the job was interrupted."""

    def __init__(self, other: sqlite3.Connection):
        super().__init__(logging.WARNING)
        self.other = other

    def emit(self, record: logging.LogRecord) -> None:
        if "interrupted" in record.getMessage() and self.other.in_transaction:
            self.other.execute("ROLLBACK")


def test_a_database_locked_at_the_second_image_interrupts_the_job_which_resumes(studio, tiny_model, monkeypatch):
    (job_id,) = queue_images(studio, request(tiny_model("flux"), batch=3), "a fox")
    studio.store.db.execute("PRAGMA busy_timeout = 200")  # the store's 30 s, shortened: the lock outlasts it
    other = sqlite3.connect(studio.store.path, isolation_level=None, check_same_thread=False)
    saved = generate._save
    images = []

    def save(*args, **kwargs):
        path = saved(*args, **kwargs)
        images.append(path)
        if len(images) == 2:  # the second image is on disk: another process takes the database before its row
            other.execute("BEGIN EXCLUSIVE")
        return path

    monkeypatch.setattr(generate, "_save", save)
    release = _Release(other)
    logging.getLogger("masuka.queue.worker").addHandler(release)
    try:
        statuses = []
        work_until_empty(studio, lambda job, status: statuses.append(status))
    finally:
        logging.getLogger("masuka.queue.worker").removeHandler(release)
        other.close()
    assert statuses == ["interrupted", "completed"]
    job = studio.store.get("queue", job_id)
    assert (job["status"], job["error"]) == ("completed", None)
    rows = completed_rows(studio.store)
    assert sorted(row["params"]["queue_item"] for row in rows) == [0, 1, 2]
    assert not studio.store.find("generations", "status != 'completed'")
    assert not images[1].exists()  # the image whose row could not be written is gone
    on_disk = {path for path in studio.config.data_dir.rglob("*.png") if "images" in path.parts}
    assert on_disk == {studio.config.absolute(row["output_path"]) for row in rows}
