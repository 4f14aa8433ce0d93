"""The command line: same jobs as the UI, JSON output, exit code 2 and one line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from masuka.cli import main
from masuka.config import Config
from masuka.store import Store


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_json_writes_images_and_history(capsys, tmp_path, tiny_model):
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(data), "--model", str(tiny_model("sd3")),
                             "--prompt", "a lighthouse", "--steps", "2", "--width", "64", "--height", "64",
                             "--seed", "40", "--batch", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["seeds"] == [40, 41] and len(result["images"]) == 2 == len(result["ids"])
    assert all(os.path.isfile(p) and p.startswith(str(data)) for p in result["images"])
    rows = Store(Config.from_env(data_dir=data).db_path).find("generations", order_by="id")
    assert [r["id"] for r in rows] == result["ids"] and {r["status"] for r in rows} == {"completed"}
    assert "step 2/2" in err


def test_generate_with_lora_weight(capsys, tmp_path, tiny_model):
    from tests.image.conftest import write_random_lora

    lora = write_random_lora(tiny_model("flux"), tmp_path / "l" / "ink.safetensors")
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model("flux")),
                             "--prompt", "ink", "--steps", "1", "--width", "64", "--height", "64",
                             "--lora", f"{lora}:0.5", "--json")
    assert code == 0, err
    assert len(json.loads(out)["images"]) == 1


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "prompt is empty"),
    (["--prompt", "x", "--width", "65"], "multiple of 16"),
    (["--prompt", "x", "--steps", "0"], "Steps must be between"),
    (["--prompt", "x", "--batch", "9"], "Batch must be between 1 and 4"),
    (["--prompt", "x", "--lora", "/nowhere/x.safetensors"], "was not found"),
    (["--prompt", "x", "--seed", "99999999999999999999"], "Seed must be between 0 and"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, tiny_model, args, message):
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(tmp_path), "--model", str(tiny_model("flux")), *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert out == ""


def test_unknown_model_in_a_real_process_has_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "masuka", "generate", "--data-dir", str(tmp_path), "--model",
                           "nobody/nothing", "--prompt", "x"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "nobody/nothing" in done.stderr and "offline" in done.stderr


def test_data_dir_and_json_count_before_and_after_the_action(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASUKA_DATA_DIR", raising=False)
    data = str(tmp_path / "mine")
    assert run_cli(capsys, "dataset", "--data-dir", data, "create", "before", "--trigger", "zz")[0] == 0
    assert run_cli(capsys, "dataset", "create", "after", "--trigger", "zz", "--data-dir", data)[0] == 0
    for argv in (["dataset", "--json", "--data-dir", data, "list"], ["dataset", "list", "--data-dir", data, "--json"]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and [d["name"] for d in json.loads(out)["datasets"]] == ["after", "before"]
    for argv in (["history", "--data-dir", data, "--json", "list"], ["history", "list", "--json", "--data-dir", data],
                 ["runs", "--data-dir", data, "--json"], ["keys", "--json", "--data-dir", data, "list"]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and json.loads(out) is not None
    assert not (tmp_path / "data").exists(), "nothing was written to ./data"


@pytest.mark.parametrize("argv, message", [
    (["bench", "image", "--runs", "0"], "--runs: must be at least 1 (got 0)"),
    (["bench", "startup", "--runs", "0"], "--runs: must be at least 1 (got 0)"),
    (["jobs", "--limit", "-5"], "--limit: must be at least 1 (got -5)"),
    (["runs", "--limit", "-1"], "--limit: must be at least 1 (got -1)"),
    (["runs", "--limit", "many"], "--limit: 'many' is not a whole number"),
    (["history", "list", "--kind", "bogus"], "--kind: invalid choice: 'bogus'"),
    (["history", "list", "--status", "bogus"], "--status: invalid choice: 'bogus'"),
])
def test_out_of_range_options_are_refused_before_anything_runs(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--data-dir", str(tmp_path / "data")])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_an_api_token_needs_a_user(capsys, tmp_path):
    code, out, err = run_cli(capsys, "keys", "token", "create", "--user", " ", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and err.startswith("error: Say whose token it is") and out == ""
    assert Store(Config.from_env(data_dir=tmp_path / "data").db_path).count("api_tokens") == 0


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    read, write = os.pipe()
    os.close(read)  # as `| head -1` does once it has its line
    with os.fdopen(write, "wb") as closed:
        done = subprocess.run([sys.executable, "-m", "masuka", "models", "list", "--data-dir", str(tmp_path)],
                              stdout=closed, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
