"""The same history, model and key functions from the command line."""

from __future__ import annotations

import io
import json
import stat

import pytest

from masuka.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_history_list_search_show_and_delete(studio, capsys):
    data = str(studio.config.data_dir)
    studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "a blue whale",
                                        "model": "sdxl", "seed": 1})
    studio.store.insert("generations", {"kind": "image", "status": "failed", "prompt": "a red kite",
                                        "model": "sdxl", "seed": 2})
    code, out, _ = run(capsys, "history", "list", "--search", "whale", "--json", "--data-dir", data)
    listed = json.loads(out)
    assert code == 0 and listed["total"] == 1 and listed["entries"][0]["prompt"] == "a blue whale"
    code, out, _ = run(capsys, "history", "show", "g2", "--data-dir", data)
    assert "status: failed" in out
    code, _, err = run(capsys, "history", "delete", "g2", "--data-dir", data)
    assert code == 2 and "--yes" in err
    code, _, _ = run(capsys, "history", "delete", "g2", "--yes", "--data-dir", data)
    assert code == 0 and studio.store.get("generations", 2) is None


def test_keys_are_set_from_stdin_listed_masked_and_tested(config, capsys, monkeypatch):
    data = str(config.data_dir)
    monkeypatch.setattr("sys.stdin", io.StringIO("2abcDEFghiJKLmnoPQRstuVWX_1a2b3c4d5e6f7g8h9i\n"))
    code, out, _ = run(capsys, "keys", "set", "ngrok", "--data-dir", data)
    assert code == 0 and "h9i" in out and "2abcDEF" not in out
    assert stat.S_IMODE((config.data_dir / "secrets.json").stat().st_mode) == 0o600
    code, out, _ = run(capsys, "keys", "list", "--data-dir", data)
    assert "ngrok" in out and "2abcDEF" not in out
    code, out, _ = run(capsys, "keys", "test", "ngrok", "--data-dir", data)
    assert code == 0 and "looks valid" in out


def test_search_of_quotes_alone_lists_everything(studio, capsys):
    data = str(studio.config.data_dir)
    studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "a blue whale"})
    studio.store.insert("jobs", {"kind": "train", "status": "completed", "title": "run one"})
    for search in ('"', '""', ' " '):
        code, out, err = run(capsys, "history", "list", "--search", search, "--json", "--data-dir", data)
        assert code == 0 and json.loads(out)["total"] == 2, err


def test_an_entry_named_twice_is_deleted_once(studio, capsys):
    data = str(studio.config.data_dir)
    kept = studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "kept"})
    gone = studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "gone"})
    code, out, err = run(capsys, "history", "delete", f"g{gone}", f"g{gone}", f" g{gone}", "--yes", "--data-dir", data)
    assert code == 0 and "Deleted 1 entry" in out, err
    assert studio.store.get("generations", gone) is None and studio.store.get("generations", kept) is not None


def test_keys_test_openai_against_the_fake_provider(fake, config, capsys, monkeypatch):
    """The loopback OpenAI answers ``GET /v1/models`` as OpenAI documents it: the key check counts its models."""
    from masuka.keys import service

    fake("openai")
    data = str(config.data_dir)
    code, out, err = run(capsys, "keys", "test", "openai", "--data-dir", data)
    assert code == 0 and out.startswith("OpenAI") and "accepted the key" in out and "(2 models visible)" in out, err
    monkeypatch.setenv(service("openai").key_env[0], "sk-wrong-key-9876")
    code, out, err = run(capsys, "keys", "test", "openai", "--data-dir", data)
    assert code != 0 and "refused the key" in out + err and "HTTP 401" in out + err


@pytest.mark.parametrize(("key", "said"), [
    ("g²", "'g²' is not a history entry"), ("g١", "'g١' is not a history entry"),  # not ASCII digits
    ("g99999999999999999999999", "History entry 'g99999999999999999999999' does not exist"),  # past SQLite's ids
    ("j0", "History entry 'j0' does not exist")])
def test_a_key_of_other_digits_or_past_every_id_is_one_clear_refusal(studio, capsys, key, said):
    """'g²' raised a ValueError traceback, a huge number an OverflowError, and 'g١' was taken for g1."""
    import gradio as gr

    from masuka.ui.history import show

    studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "the first"})
    code, out, err = run(capsys, "history", "show", key, "--data-dir", str(studio.config.data_dir))
    assert code == 2 and out == "" and err.startswith(f"error: {said}") and err.count("\n") == 1
    with pytest.raises(gr.Error, match=said):  # what the API's history_entry answers
        show(studio, key, gr.Request(username="local"))


def test_a_video_is_one_history_entry_and_its_job_is_listed_only_without_one(studio, fake, capsys):
    """A video job that made its video is listed as the video (``g``) alone, in the CLI list, the UI History and
    their counts; a job with no video (failed, say) stays listed, and so does a job whose video was deleted (it
    still names the chain's clips)."""
    import gradio as gr

    from masuka.ui import history as ui_history
    from masuka.video.jobs import start_video, wait_video
    from masuka.video.request import VideoRequest

    fake("openai")
    made = wait_video(studio, start_video(studio, VideoRequest(provider="openai", model="sora-2",
                                                               prompt="a train crossing a valley", seconds=4)),
                      timeout=60)
    video = made["result"]["generation_id"]
    failed = studio.store.insert("jobs", {"kind": "video", "status": "failed", "title": "a red kite",
                                          "provider": "openai", "model": "sora-2", "error": "refused"})
    data = str(studio.config.data_dir)

    def listed(*flags) -> tuple[list[str], int]:
        code, out, _ = run(capsys, "history", "list", "--json", "--data-dir", data, *flags)
        page = json.loads(out)
        assert code == 0
        return sorted(e["key"] for e in page["entries"]), page["total"]

    assert listed() == listed("--kind", "video") == ([f"g{video}", f"j{failed}"], 2)
    gallery, rows, *_ = ui_history.load(studio, request=gr.Request(username=None))
    assert sorted(row[0] for row in rows) == [f"g{video}", f"j{failed}"] and gallery.label.startswith("2 entries")
    assert run(capsys, "history", "delete", f"g{video}", "--yes", "--data-dir", data)[0] == 0
    assert listed() == (sorted([f"j{failed}", f"j{made['id']}"]), 2)


@pytest.mark.parametrize("stdin", [io.StringIO(""), None])  # a closed or an empty stdin
def test_keys_set_with_no_line_on_stdin_keeps_the_saved_key(config, capsys, monkeypatch, stdin):
    """Only an empty line forgets a key: a stdin with nothing on it (``< /dev/null``, closed) is refused."""
    data = str(config.data_dir)
    monkeypatch.setattr("sys.stdin", io.StringIO("2abcDEFghiJKLmnoPQRstuVWX_1a2b3c4d5e6f7g8h9i\n"))
    assert run(capsys, "keys", "set", "ngrok", "--data-dir", data)[0] == 0
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, err = run(capsys, "keys", "set", "ngrok", "--data-dir", data)
    assert (code, out) == (2, "") and err.startswith("error: No key on stdin: pipe it in")
    assert run(capsys, "keys", "test", "ngrok", "--data-dir", data)[0] == 0, "the saved key is kept"
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    code, out, _ = run(capsys, "keys", "set", "ngrok", "--data-dir", data)
    assert code == 0 and "removed" in out
    assert run(capsys, "keys", "test", "ngrok", "--data-dir", data)[0] == 1
