"""What a newcomer meets at the terminal: start-up lines that name MASUKA's flags, one-line errors, help texts."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app served on loopback (no sign-in) and what its start-up printed, for this module's tests of it."""
    import contextlib
    import io

    from masuka.config import Config
    from masuka.keys import services
    from masuka.server import launch
    from tests.conftest import free_port

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # as tests/conftest.py's _no_keys, for the app's whole life
        for name in (name for declared in services().values() for name in declared.key_env):
            patch.delenv(name, raising=False)
        with contextlib.redirect_stdout(printed):
            running = launch(Config.from_env(data_dir=tmp_path_factory.mktemp("app-data"), auth=""),
                             host="127.0.0.1", port=free_port(), block=False)
        yield running, printed.getvalue()
        running.close()


def test_start_up_names_masukas_share_flag_not_gradios(served):
    app, out = served
    assert f"MASUKA is running on {app.url}" in out
    assert "--share" in out and "share=True" not in out


def test_a_missing_model_folder_is_named_in_one_line(capsys, tmp_path):
    from masuka.cli import main

    code = main(["generate", "--data-dir", str(tmp_path / "data"), "--model", "./missing-folder", "--prompt", "x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: The folder ./missing-folder does not exist")


def test_a_refusal_in_the_app_is_one_log_line_without_a_traceback(served, capfd, caplog):
    from gradio_client import Client

    client = Client(served[0].url, verbose=False)
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="masuka.ui.common"):
        try:
            client.predict(prompt="x", model="./missing-folder", api_name="/generate_image")
        except Exception as error:
            assert "does not exist" in str(error)
        else:
            raise AssertionError("a missing folder was accepted")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert [r.getMessage() for r in caplog.records] == [
        "generate_image refused: The folder ./missing-folder does not exist: give a model folder saved with "
        "save_pretrained, a catalog id or a Hugging Face repo id (owner/name)."]


def _subcommand(parser, *names):
    import argparse

    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_help_texts_are_whole_and_meaningful():
    from masuka.cli import build_parser

    parser = build_parser()
    generate = _subcommand(parser, "generate")
    undocumented = [a.option_strings[0] for a in generate._actions if a.option_strings and not a.help]
    assert undocumented == []
    assert "--json" not in _subcommand(parser, "serve").format_help()
    bench = _subcommand(parser, "bench").format_help()
    assert "memory stays flat." in " ".join(bench.split())


def test_jobs_kind_training_lists_training_runs(studio, capsys):
    from masuka.cli import main

    studio.store.insert("jobs", {"owner": "local", "kind": "train", "status": "completed", "title": "run one"})
    studio.store.insert("jobs", {"owner": "local", "kind": "video", "status": "completed", "title": "a boat"})
    assert main(["jobs", "--data-dir", str(studio.config.data_dir), "--kind", "training", "--json"]) == 0
    import json

    listed = json.loads(capsys.readouterr().out)["jobs"]
    assert [job["title"] for job in listed] == ["run one"]
