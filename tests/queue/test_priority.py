"""Interactive requests go before queued work on the shared GPU slots."""

from __future__ import annotations

import threading
import time

from masuka.gpu import GPURunner


def test_a_waiting_interactive_request_takes_the_slot_before_queued_work(tmp_path):
    gpu = GPURunner(tmp_path / "locks")
    release, order = threading.Event(), []

    def hold(name: str, background: bool, until: threading.Event | None = None) -> None:
        with gpu.hold(name, background=background):
            order.append(name)
            if until:
                until.wait()

    first = threading.Thread(target=hold, args=("first", False, release))
    first.start()
    while order != ["first"]:
        time.sleep(0.01)
    queued = threading.Thread(target=hold, args=("queued", True))
    queued.start()
    person = threading.Thread(target=hold, args=("person", False))
    person.start()
    while not gpu.interactive_waiting():
        time.sleep(0.01)
    release.set()
    for thread in (first, queued, person):
        thread.join(timeout=30)
    assert order == ["first", "person", "queued"]
    assert not list((tmp_path / "locks").glob("wanted-*"))


def test_an_interactive_request_waits_past_its_timeout_for_queued_work(tmp_path):
    gpu = GPURunner(tmp_path / "locks")
    got = threading.Event()

    def person() -> None:
        with gpu.hold("person", timeout=0.01):
            got.set()

    with gpu.hold("queued job", background=True):
        thread = threading.Thread(target=person)
        thread.start()
        while not gpu.interactive_waiting():
            time.sleep(0.01)
        assert gpu.holders()[0].startswith("[queued] queued job")
        time.sleep(0.3)  # well past the person's timeout: still waiting, not refused
        assert thread.is_alive() and not got.is_set()
    thread.join(timeout=30)
    assert got.is_set()
