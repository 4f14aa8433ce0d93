"""Video fixtures (the fake providers themselves are shared from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def first_frame(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "first.png"
    Image.new("RGB", (64, 64), "orange").save(path)
    return path


def wait_until(predicate, timeout: float = 30.0) -> bool:
    """Poll ``predicate`` every 50 ms until it is true or ``timeout`` passes; returns its last value."""
    import threading
    import time

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.05)
    return True
