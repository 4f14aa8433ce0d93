"""Image sequences to MP4: frame count, frame rate, History ids, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
from PIL import Image

from masuka.cli import main
from masuka.config import Config
from masuka.store import Store


def frames(tmp_path, sizes) -> list:
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"frame-{index}.png"
        Image.new("RGB", size, (40 * index, 100, 200)).save(path)
        paths.append(path)
    return paths


def test_files_become_an_mp4_with_one_frame_each(capsys, tmp_path):
    paths = frames(tmp_path, [(64, 64), (64, 64), (96, 48), (65, 63)])  # odd and other sizes are fitted
    code = main(["sequence", "--data-dir", str(tmp_path / "data"), *map(str, paths), "--fps", "4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["frames"] == 4
    count, seconds = imageio_ffmpeg.count_frames_and_secs(out["video"])
    assert count == 4 and abs(seconds - 1.0) < 0.3


def test_history_ids_in_order_and_refusals(capsys, tmp_path):
    data = tmp_path / "data"
    paths = frames(tmp_path, [(64, 64)] * 3)
    store = Store(Config.from_env(data_dir=data).db_path)
    ids = [store.insert("generations", {"owner": "local", "kind": "image", "status": "completed",
                                        "output_path": str(path)}) for path in paths]
    store.close()
    assert main(["sequence", "--data-dir", str(data), "--ids", ",".join(f"g{i}" for i in reversed(ids)),
                 "--fps", "2", "--out", str(tmp_path / "seq.mp4"), "--json"]) == 0
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "seq.mp4"))
    next(reader)  # the stream's metadata
    reds = [frame[0] for frame in reader]  # first pixel's red: 80, 40, 0 for frames 2, 1, 0
    assert len(reds) == 3 and reds[0] > reds[1] > reds[2] and abs(reds[0] - 80) < 12
    capsys.readouterr()
    assert main(["sequence", "--data-dir", str(data), *map(str, paths), "--fps", "0"]) == 2
    assert main(["sequence", "--data-dir", str(data), "--ids", "999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: The frame rate must be above 0 and at most 60 (got 0).",
                   "error: There is no image g999 of yours in History."]


def test_a_destination_that_cannot_take_the_video_is_refused_before_encoding(capsys, tmp_path, monkeypatch):
    paths = frames(tmp_path, [(64, 64)] * 2)
    data = ["--data-dir", str(tmp_path / "data")]
    folder = tmp_path / "videos"
    folder.mkdir()
    encoded = []
    monkeypatch.setattr(imageio_ffmpeg, "write_frames", lambda *a, **k: encoded.append(a))
    assert main(["sequence", *map(str, paths), "--out", str(folder), *data]) == 2
    assert capsys.readouterr().err == (f"error: {folder} is a folder: give the video a file name, such as "
                                       f"{folder / 'sequence.mp4'}.\n")
    assert main(["sequence", *map(str, paths), "--out", str(paths[0] / "x.mp4"), *data]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {paths[0] / 'x.mp4'} cannot be written (") and err.count("\n") == 1
    assert encoded == [] and list(folder.iterdir()) == []


def test_a_failed_clean_up_does_not_hide_why_the_video_was_not_made(capsys, tmp_path, monkeypatch):
    good, bad = frames(tmp_path, [(64, 64)] * 2)
    bad.write_bytes(b"not a picture")

    def refused(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refused)
    assert main(["sequence", str(good), str(bad), "--out", str(tmp_path / "v.mp4"),
                 "--data-dir", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err == "error: frame-1.png is not an image MASUKA can read.\n"


def test_thin_pictures_are_letterboxed_and_huge_ones_refused(capsys, tmp_path):
    paths = frames(tmp_path, [(1, 64), (64, 64), (64, 1)])
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["sequence", *data, *map(str, paths), "--out", str(tmp_path / "thin.mp4"), "--json"]) == 0
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "thin.mp4"))
    assert next(reader)["size"] == (2, 64) and len(list(reader)) == 3
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000)).save(bomb)  # 196 MP in a small file: Pillow's decompression-bomb guard
    capsys.readouterr()
    assert main(["sequence", *data, str(paths[1]), str(bomb)]) == 2
    assert capsys.readouterr().err == "error: bomb.png is too large to be read as a frame.\n"


def test_a_file_that_appears_while_the_video_is_encoded_is_not_replaced(tmp_path, monkeypatch):
    """Another run that takes the same name while this one encodes keeps its file; this one is refused."""
    import pytest

    from masuka.errors import InvalidInput
    from masuka.studio import Studio
    from masuka.video import sequence

    frames = []
    for index in range(2):
        frames.append(tmp_path / f"frame-{index}.png")
        Image.new("RGB", (32, 32), (90 * index, 20, 200)).save(frames[-1])
    dest = tmp_path / "clip.mp4"
    checked = sequence.check_mp4

    def another_run_finishes_first(path):
        checked(path)
        dest.write_bytes(b"the other run's video")

    monkeypatch.setattr(sequence, "check_mp4", another_run_finishes_first)
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=""))
    try:
        with pytest.raises(InvalidInput, match="already exists"):
            sequence.images_to_mp4(studio, "local", frames, 2.0, dest)
    finally:
        studio.close()
    assert dest.read_bytes() == b"the other run's video"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4", "data", "frame-0.png", "frame-1.png"]
