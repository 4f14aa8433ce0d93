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
