"""A job runner records every job's end, even when the first write of it fails."""

from __future__ import annotations

import sqlite3

import masuka.jobs as jobs


def test_an_end_whose_traceback_the_full_disk_refuses_is_recorded_without_it(studio, monkeypatch):
    recorded = jobs.finish
    refused = []

    def finish(store, job_id, status, error=None, *, detail=None, **columns):
        if detail:  # the traceback appended to the log is more than the full disk takes
            refused.append(detail)
            raise sqlite3.OperationalError("database or disk is full")
        recorded(store, job_id, status, error, **columns)

    monkeypatch.setattr(jobs, "finish", finish)
    runner = studio.runner()
    job_id = runner.create("test", title="a fault")

    def work(ctx):
        raise RuntimeError("boom")

    runner.submit(job_id, work)
    row = runner.wait(job_id, timeout=30)
    assert (row.status, row.error) == ("failed", "RuntimeError: boom")
    assert len(refused) == 1 and "Traceback" in refused[0]
