"""GPU slots: one job at a time across threads and processes, with a clear refusal when asked not to wait."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from masuka.errors import Cancelled, GPUBusy
from masuka.gpu import GPURunner

HOLDER = """
import sys, time
from masuka.gpu import GPURunner
with GPURunner(sys.argv[1]).hold("training run #3"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_other_process_holding_the_gpu_is_named_in_the_refusal(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GPUBusy, match="training run #3"):
            with GPURunner(tmp_path).hold("image", timeout=0.3):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with GPURunner(tmp_path).hold("image", timeout=0.3):
        pass  # free again once the other process let go


def test_threads_never_overlap_with_one_slot(tmp_path):
    runner = GPURunner(tmp_path)
    spans = []

    def work():
        with runner.hold("job"):
            start = time.monotonic()
            time.sleep(0.02)
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans.sort()
    assert len(spans) == 6
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_two_slots_allow_two_holders(tmp_path):
    runner = GPURunner(tmp_path, slots=2)
    with runner.hold("a"), runner.hold("b", timeout=0.1):
        with pytest.raises(GPUBusy):
            with runner.hold("c", timeout=0.1):
                pass


def test_a_wait_for_the_gpu_ends_as_soon_as_it_is_cancelled(tmp_path):
    runner, stop = GPURunner(tmp_path), threading.Event()
    told = []
    with runner.hold("training run #3"):
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled, match="Stopped by the user while it waited for the GPU"):
            with runner.hold("training run #4", on_wait=told.append, cancelled=stop.is_set):
                pass
        assert time.monotonic() - started < 2
    assert told == [f"waiting for the GPU (training run #3 (pid {os.getpid()}))"]
    assert not list(tmp_path.glob("wanted-*"))  # interactive requests no longer wait behind it
    with runner.hold("image", timeout=0.1, cancelled=stop.is_set):
        pass  # a free slot is taken whatever the flag says: the flag only ends a wait


def test_the_busy_refusal_offers_a_stop_only_to_who_may_see_the_job(tmp_path):
    """An admin is told which job holds the GPU and that it can be stopped; another user only that another job
    does, and nothing about stopping it (they cannot)."""
    runner = GPURunner(tmp_path)
    with runner.hold("training run 3"):
        with pytest.raises(GPUBusy, match=r"busy with training run 3 \(pid \d+\)\. Try again when it finishes, "
                                          r"or stop it\.$"):
            with runner.hold("image", timeout=0):
                pass
        with pytest.raises(GPUBusy) as private:
            with runner.hold("image", timeout=0, private=True):
                pass
    assert str(private.value) == "The GPU is busy with another job. Try again when it finishes."


def test_a_stop_counts_from_the_click_to_the_end_of_the_work():
    """The click arms the flag before the work waits in the queue: a Stop then ends the work when it starts;
    a second click while the first work runs shares its flag (one Stop ends both); a click after a Stop gets a
    new flag; once all the work has ended nothing is left to stop."""
    from masuka.gpu import StopFlags

    flags = StopFlags()
    assert flags.arm("k") is flags.start("k")
    second = flags.arm("k")
    assert flags.stop("k") and second.is_set()
    third = flags.arm("k")
    assert not third.is_set(), "a click after the Stop is new work"
    assert flags.start("k") is second and flags.start("k") is third
    for event in (second, second, third):
        flags.disarm("k", event)
    assert not flags.stop("k") and not flags._flags


def test_a_failed_write_after_locking_leaves_the_gpu_slot_free(tmp_path):
    (tmp_path / "gpu-0.lock").symlink_to("/dev/full")  # locking works, writing the holder's name fails
    # (private: a busy slot's holder is never read back, which /dev/full would answer with endless zeros)
    kept = []  # as a caller keeps the error to report it, with its traceback
    for _attempt in range(2):  # the second finds the slot free again: it fails the same way, not "busy"
        with pytest.raises(OSError) as failed, GPURunner(tmp_path).hold("image", timeout=0, private=True):
            pass
        kept.append(failed.value)


def test_sqlite_and_os_disk_full_errors_read_the_same():
    import sqlite3

    from masuka.errors import as_disk_full

    with pytest.raises(OSError) as full, open("/dev/full", "w") as device:
        device.write("x")
        device.flush()
    os_error = full.value
    try:
        raise RuntimeError("saving failed") from sqlite3.OperationalError("database or disk is full")
    except RuntimeError as error:
        chained = error
    assert str(as_disk_full(os_error)) == str(as_disk_full(chained)) and "free some disk space" in str(
        as_disk_full(os_error))
    assert as_disk_full(ValueError("other")) is None
