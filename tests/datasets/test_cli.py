"""``python -m masuka dataset ...``: the same datasets from the command line, JSON out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

from masuka.cli import main
from tests.conftest import ROOT
from tests.datasets import corpus


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_create_from_a_folder_and_a_zip_prints_the_promised_json(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        corpus.photo(folder / f"p{i}.jpg", 100 + i)
    (folder / "p0.txt").write_text("photo of zorp, a caption that came along")
    corpus.not_an_image(folder / "notes.jpg")
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as archive:
        archive.write(corpus.photo(tmp_path / "z.jpg", 110), "z.jpg")
        archive.writestr("../up.jpg", b"x")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "masuka", "dataset", "create", "zorp-set", "--trigger", "zorp",
                           "--from", str(folder), "--from", str(tmp_path / "more.zip"), "--size", "512", "--crop",
                           "center", "--flip", "--json", "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"dataset", "added", "rejected"} and result["added"] == 4
    assert sorted(result["rejected"], key=lambda r: r["file"]) == [
        {"file": "more.zip/../up.jpg", "reason": "path leads out of the zip folder ('..'): refused, nothing written"},
        {"file": "photos/notes.jpg", "reason": "not an image (or a format MASUKA cannot read)"}]


def test_add_caption_show_export_list_and_delete(capsys, tmp_path, tiny_captioner):
    data = ["--data-dir", str(tmp_path / "data")]
    code, out, _ = cli(capsys, "dataset", "create", "mugs", "--trigger", "zorp", "--min-side", "100", "--json",
                       *data)
    assert code == 0 and json.loads(out) == {"dataset": 1, "added": 0, "rejected": [], "notes": []}
    photos = [str(corpus.photo(tmp_path / f"m{i}.jpg", 120 + i, size=(300, 200))) for i in range(2)]
    code, out, _ = cli(capsys, "dataset", "add", "mugs", *photos, str(tmp_path / "missing.jpg"), "--json", *data)
    assert json.loads(out)["added"] == 2
    assert json.loads(out)["rejected"] == [{"file": "missing.jpg", "reason": "file not found"}]
    code, out, err = cli(capsys, "dataset", "caption", "mugs", "--captioner", str(tiny_captioner("florence2")),
                         "--mode", "short", "--template", "{trigger} style, {caption}", "--json", *data)
    assert code == 0 and json.loads(out)["captioned"] == 2 and "2/2" in err
    code, out, _ = cli(capsys, "dataset", "show", "mugs", "--json", *data)
    shown = json.loads(out)
    assert shown["statistics"]["images"] == 2 and shown["statistics"]["trigger_coverage"] == 1.0
    assert all(image["caption"].startswith("zorp style, ") for image in shown["images"])
    code, out, _ = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", str(tmp_path / "k"),
                       "--repeats", "4", *data)
    assert code == 0 and len(list((tmp_path / "k" / "4_zorp").glob("*.txt"))) == 2
    code, out, _ = cli(capsys, "dataset", "list", "--json", *data)
    assert json.loads(out) == {"datasets": [{"id": 1, "name": "mugs", "trigger": "zorp", "images": 2}]}
    code, out, _ = cli(capsys, "dataset", "delete", "mugs", "--yes", *data)
    assert code == 0 and "deleted" in out
    code, out, _ = cli(capsys, "dataset", "list", *data)
    assert out.strip() == "no datasets yet"


def test_mistakes_print_one_line_and_exit_2(capsys, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    code, _, err = cli(capsys, "dataset", "show", "nothing", *data)
    assert code == 2 and err.startswith("error: No dataset 'nothing'")
    cli(capsys, "dataset", "create", "a", "--trigger", "t", *data)
    code, _, err = cli(capsys, "dataset", "create", "a", "--trigger", "t", *data)
    assert code == 2 and "already have a dataset named 'a'" in err
    code, _, err = cli(capsys, "dataset", "caption", "a", "--captioner", "nonsense", *data)
    assert code == 2 and "Unknown captioner" in err


def test_ingest_benchmark_runs_and_keeps_its_figures(capsys, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    code, out, _ = cli(capsys, "bench", "ingest", "--images", "3", "--runs", "1", "--megapixels", "0.5", "--json",
                       *data)
    row = json.loads(out)
    assert code == 0 and row["kind"] == "ingest"
    assert row["figures"]["images"] == 3 and row["figures"]["images_per_s"] > 0
    code, out, _ = cli(capsys, "dataset", "list", "--json", *data)
    assert json.loads(out) == {"datasets": []}  # the benchmark works in a data dir of its own


def test_export_to_a_file_or_an_unwritable_place_exits_2_and_writes_nothing(capsys, tmp_path, monkeypatch):
    data = ["--data-dir", str(tmp_path / "data")]
    cli(capsys, "dataset", "create", "mugs", "--trigger", "zorp", "--from", str(corpus.photo(tmp_path / "m.jpg", 1)),
        *data)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out, message in ((taken, f"{taken} is a file"),
                         (taken / "k", f"{taken / 'k'} cannot be made: {taken} is a file")):
        code, _, err = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", str(out), *data)
        assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert taken.read_text() == "mine"
    monkeypatch.setattr("masuka.datasets.export.os.access", lambda *_: False)  # as a folder of another user's
    code, _, err = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", str(tmp_path / "new" / "k"),
                       *data)
    assert code == 2 and f"{tmp_path} is not writable" in err and not (tmp_path / "new").exists()
    monkeypatch.undo()
    [processed] = (tmp_path / "data" / "datasets").glob("*/processed/*")
    processed.rename(tmp_path / "away.jpg")  # an export failing part way: one line, nothing left, a retry works
    out = tmp_path / "out"
    code, _, err = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", str(out), *data)
    assert code == 2 and err.startswith("error: Could not export dataset 'mugs'") and err.count("\n") == 1
    assert not out.exists()
    (tmp_path / "away.jpg").rename(processed)
    code, _, _ = cli(capsys, "dataset", "export", "mugs", "--format", "kohya", "--out", str(out), *data)
    assert code == 0 and len(list(out.glob("10_zorp/*"))) == 2


def test_every_image_refused_exits_2_and_create_keeps_the_empty_dataset(capsys, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    code, out, err = cli(capsys, "dataset", "create", "mugs", "--trigger", "zorp", "--min-side", "100", "--from",
                         str(tmp_path / "missing.jpg"), *data)
    assert code == 2 and "refused missing.jpg: file not found" in out
    assert err.splitlines()[-1] == ("error: no image was added, 1 refused; dataset 'mugs' was created empty (add "
                                    "images with `dataset add`)")
    code, out, err = cli(capsys, "dataset", "add", "mugs", str(tmp_path / "missing.jpg"), "--json", *data)
    assert code == 2 and json.loads(out)["added"] == 0
    assert err.splitlines()[-1] == "error: no image was added, 1 refused"
    photo = str(corpus.photo(tmp_path / "m.jpg", 120, size=(300, 200)))
    code, out, err = cli(capsys, "dataset", "add", "mugs", photo, str(tmp_path / "missing.jpg"), "--json", *data)
    assert code == 0 and json.loads(out)["added"] == 1 and "error" not in err


def test_a_folder_without_pictures_exits_2_saying_none_was_found(capsys, tmp_path):
    """An empty folder (a typo'd one, a wrong glob) reported "added 0, refused 0" and exit 0: easy to miss."""
    data = ["--data-dir", str(tmp_path / "data")]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli(capsys, "dataset", "create", "cups", "--trigger", "zorp", "--from", str(empty), *data)
    assert code == 2 and "added 0, refused 0" in out
    assert err.splitlines()[-1] == (f"error: no image was added, no image was found in {empty}; dataset 'cups' was "
                                    "created empty (add images with `dataset add`)")
    code, _out, err = cli(capsys, "dataset", "add", "cups", str(empty), *data)
    assert code == 2 and err.splitlines()[-1] == f"error: no image was added, no image was found in {empty}"
    code, _out, err = cli(capsys, "dataset", "create", "plates", "--trigger", "zorp", *data)  # no --from: fine
    assert code == 0 and "error" not in err


def test_set_caption_and_remove_one_image(capsys, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    photos = [str(corpus.photo(tmp_path / f"m{i}.jpg", 120 + i, size=(300, 200))) for i in range(2)]
    assert cli(capsys, "dataset", "create", "mugs", "--trigger", "zorp", "--min-side", "100", "--flip",
               *[f"--from={p}" for p in photos], *data)[0] == 0
    assert cli(capsys, "dataset", "create", "other", "--trigger", "zz", *data)[0] == 0
    first, second = [image["id"] for image in json.loads(cli(capsys, "dataset", "show", "mugs", "--json",
                                                              *data)[1])["images"]]
    code, out, err = cli(capsys, "dataset", "set-caption", "mugs", str(first), "zorp on a desk", "--json", *data)
    assert code == 0, err
    assert json.loads(out) == {"dataset": 1, "image": first, "changed": True}
    code, out, err = cli(capsys, "dataset", "set-caption", "other", str(first), "stolen", *data)
    assert code == 2 and err == f"error: Dataset 'other' has no image #{first} (see `dataset show`).\n"
    code, out, err = cli(capsys, "dataset", "remove", "mugs", str(second), *data)
    assert code == 0 and out == f"removed image #{second}\n"
    shown = json.loads(cli(capsys, "dataset", "show", "mugs", "--json", *data)[1])
    assert [(i["id"], i["caption"]) for i in shown["images"]] == [(first, "zorp on a desk")]
    code, _, err = cli(capsys, "dataset", "remove", "mugs", str(second), *data)
    assert code == 2 and err.startswith(f"error: Dataset 'mugs' has no image #{second}")


def test_every_action_acts_on_the_datasets_of_the_user_given(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")  # --user names someone on the sign-in list
    data = ["--data-dir", str(tmp_path / "data")]
    photo = str(corpus.photo(tmp_path / "m.jpg", 120, size=(300, 200)))
    assert cli(capsys, "dataset", "create", "mugs", "--trigger", "zorp", "--min-side", "100", f"--from={photo}",
               "--user", "alice", *data)[0] == 0
    assert cli(capsys, "dataset", "list", *data)[1].strip() == "no datasets yet", "the local user has none"
    code, _, err = cli(capsys, "dataset", "show", "mugs", *data)
    assert code == 2 and err.startswith("error: No dataset 'mugs'")
    shown = json.loads(cli(capsys, "dataset", "show", "mugs", "--json", "--user", "alice", *data)[1])
    [image] = [image["id"] for image in shown["images"]]
    code, _, err = cli(capsys, "dataset", "set-caption", "mugs", str(image), "zorp mug", "--user", "alice", *data)
    assert code == 0, err
    assert cli(capsys, "dataset", "remove", "mugs", str(image), "--user", "alice", *data)[0] == 0
    assert cli(capsys, "dataset", "add", "mugs", photo, "--user", "alice", *data)[0] == 0
    code, _, err = cli(capsys, "dataset", "delete", "mugs", "--yes", *data)
    assert code == 2 and err.startswith("error: No dataset 'mugs'")
    assert cli(capsys, "dataset", "delete", "mugs", "--yes", "--user", "alice", *data)[0] == 0
    assert cli(capsys, "dataset", "list", "--json", "--user", "alice", *data)[1].strip() == '{"datasets": []}'
