"""Video fixtures: a real little MP4, fake provider servers wired in through MASUKA_*_BASE_URL, fast timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from masuka.config import PROVIDER_BASE_URLS
from masuka.keys import KEY_ENV
from masuka.video.fakes import KEY, FakeProvider

FAST = {"MASUKA_VIDEO_POLL_S": "0.02", "MASUKA_VIDEO_BACKOFF_S": "0.02", "MASUKA_VIDEO_ATTEMPTS": "4",
        "MASUKA_VIDEO_TIMEOUT_S": "5"}


def make_mp4(path: Path, frames: int = 8, size: int = 64, color: int = 0) -> Path:
    """A real H.264 MP4 written with the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg
    import numpy as np

    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=8, macro_block_size=16)
    writer.send(None)
    for index in range(frames):
        frame = np.full((size, size, 3), (color + index * 20) % 255, dtype=np.uint8)
        frame[:, : size // 2, 0] = 255 - index * 10
        writer.send(frame)
    writer.close()
    return path


@pytest.fixture(scope="session")
def sample_mp4(tmp_path_factory) -> bytes:
    return make_mp4(tmp_path_factory.mktemp("mp4") / "sample.mp4").read_bytes()


@pytest.fixture
def fast_video(monkeypatch):
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def fake(monkeypatch, sample_mp4, fast_video):
    """``fake("openai")`` -> a running :class:`FakeProvider`, with its base URL and key in the environment."""
    started = []

    def start(kind: str) -> FakeProvider:
        server = FakeProvider(kind, sample_mp4)
        started.append(server)
        monkeypatch.setenv(PROVIDER_BASE_URLS[kind][0], server.base)
        monkeypatch.setenv(KEY_ENV[kind][0], KEY)
        return server

    yield start
    for server in started:
        server.close()


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
