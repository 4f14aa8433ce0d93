"""The UI's generation threads: reused once free, one more only when all are busy, daemons, never killed by a
failing call."""

from __future__ import annotations

import threading
import time

from masuka.ui.workers import Workers


def run(workers: Workers, call) -> threading.Thread:
    """Submit ``call`` and wait for it; the thread it ran on."""
    ran, done = [], threading.Event()
    workers.submit(lambda: (call(), ran.append(threading.current_thread()), done.set()))
    assert done.wait(10)
    return ran[0]


def settle(workers: Workers, idle: int) -> None:
    """Wait until ``idle`` threads wait for work (a thread counts itself free just after its call returns)."""
    deadline = time.monotonic() + 10
    while workers.idle != idle:
        assert time.monotonic() < deadline, workers.idle
        time.sleep(0.001)


def test_a_free_thread_is_reused_and_a_busy_one_gets_company():
    workers = Workers("test-gen")
    first = run(workers, lambda: None)
    assert first.daemon and first.name == "test-gen-1"
    settle(workers, 1)
    assert run(workers, lambda: None) is first, "the second call waits for no new thread"
    settle(workers, 1)
    release, started = threading.Event(), threading.Event()
    workers.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    second = run(workers, lambda: None)  # the first is busy: a second thread runs this one meanwhile
    release.set()
    assert second is not first and second.name == "test-gen-2"


def test_a_failing_call_leaves_its_thread_serving():
    workers = Workers("test-gen")
    thread = run(workers, lambda: None)
    settle(workers, 1)
    workers.submit(lambda: 1 / 0)
    settle(workers, 1)
    assert run(workers, lambda: None) is thread
