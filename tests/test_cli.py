"""The command line: same jobs as the UI, JSON output, exit code 2 and one line for bad input."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from masuka.cli import main
from masuka.config import Config
from masuka.store import Store
from tests.conftest import ROOT


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


def test_generate_with_a_lora_path_relative_to_the_current_directory(capsys, tmp_path, tiny_model, monkeypatch):
    """``--lora ./my-style.safetensors:0.8`` (as the README shows) takes the file of the current directory."""
    from tests.image.conftest import write_random_lora

    write_random_lora(tiny_model("flux"), tmp_path / "work" / "my-style.safetensors")
    monkeypatch.chdir(tmp_path / "work")
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model("flux")),
                             "--prompt", "ink", "--steps", "1", "--width", "64", "--height", "64",
                             "--lora", "./my-style.safetensors:0.8", "--json")
    assert code == 0, err
    assert len(json.loads(out)["images"]) == 1
    # a queued job keeps the file, not the words: the app's worker runs it from its own directory
    code, out, err = run_cli(capsys, "queue", "add", "--data-dir", str(tmp_path / "d"), "--model",
                             str(tiny_model("flux")), "--prompt", "ink", "--lora", "./my-style.safetensors:0.8",
                             "--json")
    assert code == 0, err
    params = Store(Config.from_env(data_dir=tmp_path / "d").db_path).find("queue")[0]["params"]
    assert [str(tmp_path / "work" / "my-style.safetensors"), 0.8] in params["request"]["loras"]


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "prompt is empty"),
    (["--prompt", "x", "--width", "65"], "multiple of 16"),
    (["--prompt", "x", "--steps", "0"], "Steps must be between"),
    (["--prompt", "x", "--batch", "9"], "Batch must be between 1 and 4"),
    (["--prompt", "x", "--lora", "/nowhere/x.safetensors"], "was not found"),
    (["--prompt", "x", "--seed", "99999999999999999999"], "Seed must be between 0 and"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, tiny_model, args, message):
    model = str(tiny_model("flux"))
    capsys.readouterr()  # what building the tiny model printed (the first test of a worker to ask builds it)
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(tmp_path), "--model", model, *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert out == ""


@pytest.mark.parametrize("args, message", [
    (["--mask", "mask.png"], "--mask needs --init-image"),
    (["--outpaint", "8,8,0,0"], "--outpaint needs --init-image"),
    (["--init-image", "photo.png", "--outpaint", "1,2"], "Outpaint takes four whole numbers"),
    (["--control", "bogus"], "--control takes KIND:PATH[:WEIGHT]"),
    (["--strength", "0.5"], "--strength needs --init-image: without it --strength does nothing."),
    (["--mask-blur", "9"], "--mask-blur needs --mask or --outpaint"),
    (["--init-image", "photo.png", "--mask-blur", "9"], "--mask-blur needs --mask or --outpaint"),
    (["--face-strength", "0.9"], "--face-strength needs --face-detail"),
    (["--controlnet", "xinsir/controlnet-union-sdxl-1.0"], "--controlnet needs --control"),
    (["--init-image", "photo.png", "--invert-mask"], "--invert-mask needs --mask: without it --invert-mask does"),
    (["--init-image", "photo.png", "--outpaint", "8,8,0,0", "--fill-masked"], "--fill-masked needs --mask"),
    (["--init-image", "photo.png", "--only-masked"], "--only-masked needs --mask"),
])
def test_refused_flags_leave_no_data_folder(capsys, tmp_path, args, message):
    """Flags the image CLI refuses by themselves are refused before the studio opens: nothing is made."""
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(data), "--model", "nobody/nothing",
                             "--prompt", "x", *args)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1 and out == ""
    assert not data.exists()


@pytest.mark.parametrize("command", [["queue", "add"], ["grid", "--x", "steps=1,2"],
                                     ["grid", "--queue", "--x", "steps=1"], ["compare", "create"]])
def test_other_image_commands_refuse_flags_before_the_data_folder_is_made(capsys, tmp_path, command):
    """``queue add``, ``grid`` and ``compare create`` check their flags as ``generate`` does, before the studio."""
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, *command, "--data-dir", str(data), "--model", "nobody/nothing",
                             "--prompt", "x", "--mask", "mask.png")
    assert code == 2 and "--mask needs --init-image" in err and err.count("\n") == 1 and out == ""
    assert not data.exists()


@pytest.mark.parametrize("command", [["upscale"], ["queue", "upscale"]])
@pytest.mark.parametrize("flag", [["--strength", "0.5"], ["--steps", "3"], ["--seed", "1"], ["--prompt", "x"],
                                  ["--negative-prompt", "blur"], ["--guidance", "5"]])
def test_detail_upscale_flags_without_detail_are_refused(capsys, tmp_path, command, flag):
    """A detail upscale's flags without ``--detail`` are refused (as ``--model`` is), not silently ignored."""
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, *command, "--data-dir", str(data), "--image", "photo.png", *flag)
    assert code == 2 and err == f"error: {flag[0]} needs --detail: without it {flag[0]} does nothing.\n"
    assert out == "" and not data.exists()


@pytest.mark.parametrize("command", [["upscale"], ["queue", "upscale"]])
@pytest.mark.parametrize("flags, message", [
    (["--model", "nobody/nothing"], "A model repaints tiles only in a detail upscale"),
    (["--detail"], "A detail upscale needs the diffusion model"),
    (["--scale", "3"], "The upscale factor must be 2 or 4 (got 3)."),
])
def test_upscale_choices_are_refused_before_the_data_folder_is_made(capsys, tmp_path, command, flags, message):
    """The upscale request's own checks that need no studio (factor, detail and model) run before one opens."""
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, *command, "--data-dir", str(data), "--image", "photo.png", *flags)
    assert code == 2 and message in err and err.count("\n") == 1 and out == "" and not data.exists()


def test_dependent_flags_left_out_take_the_request_defaults(capsys):
    """Left out, ``--strength``, ``--mask-blur``, ``--face-strength`` (generate) and the detail flags (upscale) are
    the request dataclasses' own defaults, which ``--help`` shows."""
    from masuka.cli import build_parser
    from masuka.commands.generate import flags_request
    from masuka.commands.upscale import upscale_request
    from masuka.image.generate import ImageRequest
    from masuka.image.tasks import InitImage
    from masuka.image.upscale.request import UpscaleRequest

    parser = build_parser()
    request = flags_request(parser.parse_args(["generate", "--model", "m", "--prompt", "x", "--init-image", "a.png",
                                               "--mask", "m.png", "--face-detail"]))
    assert request.init == InitImage("a.png", mask="m.png")
    assert request.face_strength == ImageRequest("", "").face_strength
    chosen = flags_request(parser.parse_args(["generate", "--model", "m", "--prompt", "x", "--init-image", "a.png",
                                              "--strength", "0.5", "--outpaint", "8,8,0,0", "--mask-blur", "9",
                                              "--face-detail", "--face-strength", "0.9"]))
    assert (chosen.init.strength, chosen.init.mask_blur, chosen.face_strength) == (0.5, 9, 0.9)
    inpaint = ["generate", "--model", "m", "--prompt", "x", "--init-image", "a.png", "--mask", "m.png"]
    options = flags_request(parser.parse_args([*inpaint, "--invert-mask", "--fill-masked", "--only-masked"])).init
    assert options == InitImage("a.png", mask="m.png", invert_mask=True, fill_masked=True, only_masked_padding=32)
    assert flags_request(parser.parse_args([*inpaint, "--only-masked", "8"])).init.only_masked_padding == 8
    assert upscale_request(parser.parse_args(["upscale", "--image", "a.png"])) == UpscaleRequest("a.png")
    detail = upscale_request(parser.parse_args(["upscale", "--image", "a.png", "--detail", "--model", "m",
                                                "--prompt", "a boat"]))
    assert detail == UpscaleRequest("a.png", detail=True, model="m", prompt="a boat")
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default {InitImage('').strength})" in shown and f"(default {InitImage('').mask_blur})" in shown
    assert f"(default {ImageRequest('', '').face_strength})" in shown


def test_the_top_help_lists_each_group_s_actions(capsys, monkeypatch):
    """``python -m masuka --help`` ends each group's line with its actions, as the group's parser has them."""
    from masuka.cli import actions_of, build_parser

    monkeypatch.setenv("COLUMNS", "500")  # no help wrapped
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    groups = build_parser()._subparsers._group_actions[0].choices
    listed = {name: ", ".join(actions_of(group)) for name, group in groups.items() if actions_of(group)}
    assert [name for name, actions in listed.items() if f": {actions} " not in shown] == []
    assert {"keys", "dataset", "storage", "settings", "queue"} <= set(listed)


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


@pytest.mark.parametrize("port, message", [("99999", "--port: must be at most 65535 (got 99999)"),
                                           ("0", "--port: must be at least 1 (got 0)"),
                                           ("http", "--port: 'http' is not a whole number")])
def test_a_port_out_of_range_is_refused_before_the_app_starts(capsys, tmp_path, port, message):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", port, "--data-dir", str(tmp_path / "data")])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_an_api_token_needs_a_user(capsys, tmp_path):
    code, out, err = run_cli(capsys, "keys", "token", "create", "--user", " ", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and err.startswith("error: Say who: name a user.") and out == ""
    assert Store(Config.from_env(data_dir=tmp_path / "data").db_path).count("api_tokens") == 0


def test_a_refusal_of_a_100000_character_name_is_one_short_line_that_says_what_was_wrong(capsys, tmp_path):
    code, out, err = run_cli(capsys, "dataset", "show", "x" * 100_000, "--data-dir", str(tmp_path / "data"))
    assert code == 2 and out == "" and err.count("\n") == 1 and len(err) <= 1010
    assert err.startswith("error: No dataset 'xxx") and "characters left out" in err
    assert err.endswith("x': create it first (Datasets tab or `dataset create`).\n")


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    read, write = os.pipe()
    os.close(read)  # as `| head -1` does once it has its line
    with os.fdopen(write, "wb") as closed:
        done = subprocess.run([sys.executable, "-m", "masuka", "models", "list", "--data-dir", str(tmp_path)],
                              stdout=closed, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_jobs_cancel_stops_a_video_job_as_the_video_tab_does(capsys, studio):
    data = ["--data-dir", str(studio.config.data_dir)]
    job = studio.store.insert("jobs", {"kind": "video", "status": "queued", "provider": "openai", "title": "a fox"})
    code, out, err = run_cli(capsys, "jobs", "cancel", "--json", str(job), *data)  # options may come first
    assert code == 0, err
    assert json.loads(out) == {"job": job, "status": "cancelled"}
    assert studio.store.get("jobs", job)["status"] == "cancelled"
    code, out, err = run_cli(capsys, "jobs", "cancel", str(job), *data)
    assert code == 2 and err == f"error: Job {job} is already cancelled.\n" and out == ""
    code, _, err = run_cli(capsys, "jobs", "cancel", *data)
    assert code == 2 and err.startswith("error: `jobs cancel` takes the job's number")
    code, _, err = run_cli(capsys, "jobs", "cancel", "404", *data)
    assert code == 2 and err == "error: There is no video job 404.\n"


def test_sequence_of_a_missing_queue_job_names_the_job(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sequence", "--queue-job", "99", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and out == ""
    assert err == "error: There is no queued job 99 (see `queue list`).\n"


def test_history_params_reads_what_the_image_tab_reads(capsys, tmp_path):
    from PIL import Image

    from masuka.image.metadata import save_image

    text = "a red fox <lora:style:0.8>\nNegative prompt: blurry\nSteps: 4, Seed: 7, Size: 64x48, Model: flux-schnell"
    save_image(Image.new("RGB", (64, 48)), tmp_path / "fox.png", text)
    data = ["--data-dir", str(tmp_path / "data")]
    code, out, err = run_cli(capsys, "history", "params", str(tmp_path / "fox.png"), "--json", *data)
    assert code == 0, err
    result = json.loads(out)
    assert result["parameters"] == text
    assert result["fields"] | {"extra": {}} == {
        "prompt": "a red fox", "negative_prompt": "blurry", "steps": 4, "sampler": None, "guidance": None, "seed": 7,
        "width": 64, "height": 48, "model": "flux-schnell", "loras": [["style", 0.8]], "extra": {}, "unread": {}}
    assert run_cli(capsys, "history", "params", str(tmp_path / "fox.png"), *data)[1] == text + "\n"
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    code, out, err = run_cli(capsys, "history", "params", str(tmp_path / "plain.png"), *data)
    assert code == 2 and err == "error: plain.png carries no generation parameters.\n"
    code, out, err = run_cli(capsys, "history", "params", str(tmp_path / "gone.png"), *data)
    assert code == 2 and err.startswith("error: There is no image file")


def test_settings_aids_show_and_change_what_the_settings_tab_saves(capsys, tmp_path):
    from masuka.image.aid_settings import load_aid_settings

    data = ["--data-dir", str(tmp_path / "data")]
    code, out, _ = run_cli(capsys, "settings", "aids", "--json", *data)
    assert code == 0 and json.loads(out)["safety_action"] == "blur"
    code, out, err = run_cli(capsys, "settings", "aids", "--safety-action", "withhold", "--safety-threshold", "0.7",
                             "--safety-mandatory", "--safety-model", "someone/classifier", "--json", *data)
    assert code == 0, err
    saved = load_aid_settings(Config.from_env(data_dir=tmp_path / "data"))
    assert (saved.safety_action, saved.safety_threshold, saved.safety_mandatory, saved.safety_model) == (
        "withhold", 0.7, True, "someone/classifier")
    assert json.loads(out)["safety_mandatory"] is True
    code, out, err = run_cli(capsys, "settings", "aids", "--face-restore-model", str(tmp_path / "none.pth"), *data)
    assert code == 2 and err.startswith("error: The face restoration model") and out == ""
    assert run_cli(capsys, "settings", "aids", "--no-safety-mandatory", *data)[0] == 0
    assert load_aid_settings(Config.from_env(data_dir=tmp_path / "data")).safety_action == "withhold"


def test_settings_defaults_show_and_change_the_image_defaults(capsys, tmp_path):
    from masuka.image.defaults import load_defaults

    data = ["--data-dir", str(tmp_path / "data")]
    code, out, err = run_cli(capsys, "settings", "defaults", "--steps", "8", "--format", "WebP", "--json", *data)
    assert code == 0, err
    assert json.loads(out) == {"model": "", "steps": 8, "width": None, "height": None, "output_format": "WebP"}
    code, out, err = run_cli(capsys, "settings", "defaults", "--width", "100", *data)
    assert code == 2 and err.startswith("error: Default width must be a multiple of 16") and out == ""
    assert run_cli(capsys, "settings", "defaults", "--height", "512", *data)[0] == 0
    defaults = load_defaults(Config.from_env(data_dir=tmp_path / "data"))
    assert (defaults.steps, defaults.height, defaults.output_format) == (8, 512, "WebP")


def test_storage_measures_and_cleans_as_the_settings_tab_does(capsys, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    code, out, _ = run_cli(capsys, "storage", "--json", *data)
    assert code == 0 and {row["area"] for row in json.loads(out)["areas"]} >= {"outputs", "datasets", "tmp"}
    old = tmp_path / "data" / "tmp" / "old.bin"
    old.write_bytes(b"x" * 10)
    os.utime(old, (1, 1))
    (tmp_path / "data" / "tmp" / "new.bin").write_bytes(b"y")
    code, out, _ = run_cli(capsys, "storage", "clean-tmp", "--json", *data)
    assert code == 0 and json.loads(out) == {"removed": 1, "bytes": 10}
    assert not old.exists() and (tmp_path / "data" / "tmp" / "new.bin").exists()
    code, out, _ = run_cli(capsys, "storage", "clean-leftovers", *data)
    assert code == 0 and out.startswith("removed 0 item(s)")


def test_storage_clean_leftovers_removes_half_written_folders_once_they_are_an_hour_old(capsys, tmp_path):
    data = tmp_path / "data"
    run_cli(capsys, "storage", "--data-dir", str(data))
    half = data / "runs" / "run-1" / "checkpoint-000004.part"  # a checkpoint cut off by a full disk or a kill
    staging = data / "datasets" / "3" / "staging-0a1b2c3d"  # a zip unpacked by an earlier version, then killed
    fresh = data / "runs" / "run-2" / "checkpoint-000002.part"  # being written now
    for folder, age in ((half, 1), (staging, 1), (fresh, None)):
        folder.mkdir(parents=True)
        (folder / "lora.safetensors").write_bytes(b"x" * 10)
        if age:
            os.utime(folder / "lora.safetensors", (age, age))
            os.utime(folder, (age, age))
    code, out, _ = run_cli(capsys, "storage", "clean-leftovers", "--json", "--data-dir", str(data))
    assert code == 0 and json.loads(out) == {"removed": 2, "bytes": 20}
    assert not half.exists() and not staging.exists() and (fresh / "lora.safetensors").is_file()


def test_a_full_disk_sqlite_reports_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    import sqlite3

    import masuka.disk

    def full(studio):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(masuka.disk, "usage", full)
    code, out, err = run_cli(capsys, "storage", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and out == ""
    assert err == "error: The disk is full: free some disk space (old outputs, exports, models you no longer use) " \
                  "and try again.\n"


def test_jobs_resume_id_adopts_that_video_job_only(capsys, studio):
    data = ["--data-dir", str(studio.config.data_dir)]
    dead = {"kind": "video", "status": "running", "provider": "local", "title": "a fox", "pid": 2**22 + 1}
    first, second = studio.store.insert("jobs", dead), studio.store.insert("jobs", dead)
    code, _, err = run_cli(capsys, "jobs", "resume", str(second), *data)
    assert code == 2 and f"job {second} interrupted: The app stopped while this local video" in err
    assert [studio.store.get("jobs", job)["status"] for job in (first, second)] == ["running", "interrupted"]
    code, _, err = run_cli(capsys, "jobs", "resume", "404", *data)
    assert code == 2 and err == "error: There is no video job 404.\n"
    with pytest.raises(SystemExit) as refused:
        run_cli(capsys, "jobs", "list", "3", *data)
    assert refused.value.code == 2 and "unrecognized arguments: 3" in capsys.readouterr().err


def test_sequence_never_replaces_a_file_and_writes_only_mp4(capsys, tmp_path):
    """``--out`` naming the studio's own database, a picture or an existing video is refused with nothing
    written, and the studio still works afterwards."""
    from PIL import Image

    data = tmp_path / "data"
    frames = []
    for index in range(2):
        frames.append(tmp_path / f"frame-{index}.png")
        Image.new("RGB", (32, 32), (90 * index, 20, 200)).save(frames[-1])
    made = tmp_path / "made.mp4"
    code, out, err = run_cli(capsys, "sequence", *map(str, frames), "--out", str(made), "--data-dir", str(data))
    assert code == 0 and out == f"{made}\n", err
    kept = {path: path.read_bytes() for path in (frames[0], made)}  # the database: still one, below
    before = {folder: sorted(folder.iterdir()) for folder in (data, tmp_path)}
    for dest, message in [(data / "masuka.db", "masuka.db does not end in .mp4: give the video a name such as "
                                               "masuka.mp4."),
                          (frames[0], "frame-0.png does not end in .mp4: give the video a name such as frame-0.mp4."),
                          (made, f"{made} already exists: give the video a new file name (nothing is replaced).")]:
        code, out, err = run_cli(capsys, "sequence", *map(str, frames), "--out", str(dest), "--data-dir", str(data))
        assert (code, out, err) == (2, "", f"error: {message}\n")
    assert {path: path.read_bytes() for path in kept} == kept
    assert {folder: sorted(folder.iterdir()) for folder in (data, tmp_path)} == before, "no partial file is left"
    assert run_cli(capsys, "history", "list", "--data-dir", str(data))[0] == 0
    assert (data / "masuka.db").read_bytes().startswith(b"SQLite format 3\x00")


def test_every_command_group_takes_the_common_options_before_its_action(capsys, tmp_path):
    """``--data-dir`` and ``--json`` count wherever they come after the command, as the README says."""
    import argparse

    from masuka.cli import build_parser

    def parsers(parser, path=()):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from parsers(child, (*path, name))

    lacking = [" ".join(path) for path, parser in parsers(build_parser()) if path and path != ("serve",)
               and not {"--data-dir", "--json"} <= set(parser._option_string_actions)]
    assert lacking == []
    data = str(tmp_path / "data")
    for argv, key in ((["queue", "--data-dir", data, "--json", "list"], "jobs"),
                      (["compare", "--json", "--data-dir", data, "list"], "comparisons")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0 and json.loads(out) == {key: []}, err


def test_jobs_resume_json_prints_one_object_even_with_nothing_to_resume(capsys, tmp_path):
    code, out, err = run_cli(capsys, "jobs", "resume", "--json", "--data-dir", str(tmp_path / "data"))
    assert code == 0 and json.loads(out) == {"jobs": [], "interrupted": [], "queued": []}
    assert err == "resuming 0 video job(s)\n"


@pytest.mark.parametrize("given, message", [
    (["--steps", "5"], "does not take steps: only the local model does (leave it out)."),
    (["--fps", "24"], "does not take fps: only the local model does (leave it out)."),
    (["--seed", "7", "--steps", "5"], "does not take steps or seed: only the local model does (leave them out)."),
])
def test_a_remote_video_refuses_the_local_model_options(capsys, tmp_path, given, message):
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, "video", "--provider", "runway", "--model", "gen4.5", "--prompt", "a fox",
                             *given, "--data-dir", str(data))
    assert (code, out) == (2, "") and err == f"error: Runway {message}\n"
    assert not data.exists(), "refused before anything was recorded"


def test_json_listings_give_files_as_absolute_paths(capsys, studio):
    """``runs`` and ``jobs`` give a run's LoRA and a video as ``train --json`` and ``video --json`` do."""
    data = studio.config.data_dir
    studio.store.insert("jobs", {"kind": "train", "status": "completed", "title": "ink", "total": 10, "step": 10,
                                 "result": {"lora": "loras/ink.safetensors", "final_loss": 0.1}})
    studio.store.insert("jobs", {"kind": "video", "status": "completed", "provider": "runway", "title": "a fox",
                                 "result": {"video": "outputs/local/videos/fox.mp4", "generation_id": 3}})
    code, out, err = run_cli(capsys, "runs", "--json", "--data-dir", str(data))
    assert code == 0 and [r["lora"] for r in json.loads(out)["runs"]] == [str(data / "loras/ink.safetensors")], err
    code, out, err = run_cli(capsys, "jobs", "--json", "--data-dir", str(data))
    assert code == 0, err
    assert [job["result"] for job in json.loads(out)["jobs"]] == [
        {"video": str(data / "outputs/local/videos/fox.mp4"), "generation_id": 3},
        {"lora": str(data / "loras/ink.safetensors"), "final_loss": 0.1}]


def test_lora_import_and_delete_give_the_file_as_an_absolute_path(capsys, tmp_path):
    from masuka.models.synthetic import save_tiny_lora

    data = tmp_path / "data"
    lora = save_tiny_lora("flux", tmp_path / "ink.safetensors")
    code, out, err = run_cli(capsys, "models", "import-lora", "--file", str(lora), "--json", "--data-dir", str(data))
    assert code == 0, err
    path = json.loads(out)["path"]
    assert os.path.isabs(path) and os.path.isfile(path) and path.startswith(str(data))
    code, out, err = run_cli(capsys, "models", "loras", "--json", "--data-dir", str(data))  # the library, listed
    assert code == 0 and [(r["name"], r["architecture"], r["path"]) for r in json.loads(out)["loras"]] == [
        ("ink", "flux", path)]
    code, out, err = run_cli(capsys, "models", "loras", "--data-dir", str(data))
    assert code == 0 and " ink " in out and "flux" in out and out.rstrip().endswith("local")
    with pytest.raises(SystemExit) as refused:  # deleting asks for --yes
        main(["models", "delete-lora", "ink", "--json", "--data-dir", str(data)])
    assert refused.value.code == 2 and "--yes" in capsys.readouterr().err and os.path.isfile(path)
    code, out, err = run_cli(capsys, "models", "delete-lora", "ink", "--yes", "--json", "--data-dir", str(data))
    assert code == 0 and json.loads(out)["path"] == path and not os.path.exists(path), err


def test_history_show_leaves_out_the_runner_s_pid_and_holder_token(capsys, studio):
    """``history show`` hides the columns the History tab and exports hide: the runner's process id and its private
    holder token (text and JSON)."""
    data = str(studio.config.data_dir)
    studio.store.insert("jobs", {"kind": "image", "status": "running", "title": "a fox", "pid": 4321,
                                 "holder": "secret-runner-token"})
    code, out, err = run_cli(capsys, "history", "show", "j1", "--data-dir", data)
    assert code == 0 and "title: a fox" in out, err
    assert "secret-runner-token" not in out and "holder" not in out and "4321" not in out
    code, out, err = run_cli(capsys, "history", "show", "j1", "--json", "--data-dir", data)
    shown = json.loads(out)
    assert code == 0 and shown["title"] == "a fox" and not {"pid", "holder"} & shown.keys(), err


@pytest.mark.parametrize("argv", [["dataset", "create", "cats", "--trigger", "zorp"], ["dataset", "list"],
                                  ["character", "list"], ["history", "list"], ["models", "delete-lora", "x", "--yes"],
                                  ["keys", "token", "create"]])
def test_a_user_who_cannot_sign_in_is_refused_by_every_user_option_before_anything_is_written(capsys, tmp_path,
                                                                                             monkeypatch, argv):
    """``--user`` names someone on the sign-in list read from MASUKA_AUTH, as for a token; without sign-in only the
    local user (every command's default) is anyone. Nothing is written for a refused name, not even the data dir."""
    data = tmp_path / "data"
    monkeypatch.delenv("MASUKA_AUTH", raising=False)
    code, out, err = run_cli(capsys, *argv, "--user", "alice", "--data-dir", str(data))
    assert (code, out) == (2, "") and err.startswith("error: This studio has no sign-in") and err.count("\n") == 1
    assert "nobody can sign in as 'alice'" in err
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")
    code, out, err = run_cli(capsys, *argv, "--user", "carol", "--data-dir", str(data))
    assert (code, out) == (2, "") and err.startswith("error: 'carol' is not on the sign-in list")
    assert not data.exists()


def test_the_local_user_and_users_on_the_sign_in_list_are_accepted(capsys, tmp_path, monkeypatch):
    data = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.delenv("MASUKA_AUTH", raising=False)
    assert run_cli(capsys, "dataset", "list", "--user", "local", *data)[:2] == (0, "no datasets yet\n")
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")
    assert run_cli(capsys, "dataset", "list", "--user", "alice", *data)[:2] == (0, "no datasets yet\n")
    assert run_cli(capsys, "dataset", "list", *data)[0] == 0, "no --user: the local user, as every command acts"


@pytest.mark.parametrize("auth", [None, "bob:pw"])
def test_a_user_taken_off_the_sign_in_list_keeps_their_data_reachable_and_a_typo_writes_nothing(capsys, tmp_path,
                                                                                               monkeypatch, auth):
    """``--user`` may name someone who owns something in the data dir though nobody can sign in as them any more
    (their datasets can still be listed and deleted); a name that neither signs in nor owns anything is refused,
    and the data dir is left as it was."""
    data = tmp_path / "data"
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")
    assert run_cli(capsys, "dataset", "create", "cats", "--trigger", "zorp", "--user", "alice",
                   "--data-dir", str(data))[0] == 0
    if auth is None:
        monkeypatch.delenv("MASUKA_AUTH")
    else:
        monkeypatch.setenv("MASUKA_AUTH", auth)
    code, out, err = run_cli(capsys, "dataset", "list", "--json", "--user", "alice", "--data-dir", str(data))
    assert code == 0 and [row["name"] for row in json.loads(out)["datasets"]] == ["cats"], err
    code, out, err = run_cli(capsys, "keys", "token", "create", "--user", "alice", "--data-dir", str(data))
    assert (code, out) == (2, "") and "nobody can sign in as" in err, "a token only for someone who can sign in"

    def made():  # SQLite's WAL files come and go with the connections earlier commands left open
        return sorted(path for path in data.rglob("*") if not path.name.startswith("masuka.db-"))

    before = made()
    code, out, err = run_cli(capsys, "dataset", "create", "dogs", "--trigger", "zorp", "--user", "alcie",
                             "--data-dir", str(data))
    assert (code, out) == (2, "") and f"Nor does 'alcie' own anything in {data}." in err and err.count("\n") == 1
    assert made() == before, "no file nor folder made"
    assert run_cli(capsys, "dataset", "delete", "cats", "--yes", "--user", "alice", "--data-dir", str(data))[0] == 0
    code, out, err = run_cli(capsys, "dataset", "list", "--user", "alice", "--data-dir", str(data))
    assert (code, out) == (2, "") and "Nor does 'alice' own anything" in err, "she owns nothing any more"


@pytest.mark.parametrize("command", [["queue", "add"], ["compare", "create"]])
def test_a_prompt_and_a_prompts_file_together_are_refused(capsys, tmp_path, command):
    """The file's prompts would silently replace ``--prompt``: one or the other."""
    (tmp_path / "prompts.txt").write_text("a fox\n")
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, *command, "--data-dir", str(data), "--model", "nobody/nothing", "--prompt", "x",
                             "--prompts-file", str(tmp_path / "prompts.txt"))
    assert (code, out, err) == (2, "", "error: Give --prompt or --prompts-file (one of them, not both).\n")
    assert not data.exists()


@pytest.mark.parametrize("prompt", ["", "  "])
def test_edit_refuses_an_empty_instruction_as_generate_does(capsys, tmp_path, prompt):
    code, out, err = run_cli(capsys, "edit", "--data-dir", str(tmp_path / "data"), "--model", "nobody/nothing",
                             "--image", str(tmp_path / "x.png"), "--prompt", prompt)
    assert (code, out, err) == (2, "", "error: The prompt is empty: describe the image you want.\n")


def test_a_lora_file_with_a_weight_that_is_not_a_number_says_so(capsys, tmp_path):
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"x")
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(tmp_path / "data"), "--model", "nobody/nothing",
                             "--prompt", "x", "--lora", f"{lora}:abc")
    assert (code, out) == (2, "")
    assert err == f"error: The weight of LoRA {str(lora)!r} is not a number ('abc'): write it as {lora}:0.8.\n"


def test_a_sequence_of_a_missing_image_says_it_does_not_exist(capsys, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "p9.png")
    code, out, err = run_cli(capsys, "sequence", str(tmp_path / "p9.png"), str(tmp_path / "missing.png"), "--out",
                             str(tmp_path / "s.mp4"), "--data-dir", str(tmp_path / "data"))
    assert (code, out, err) == (2, "", "error: The image 'missing.png' does not exist.\n")
    assert not (tmp_path / "s.mp4").exists()


def test_an_a_b_test_of_no_seeds_says_the_seed_count_is_wrong(capsys, tmp_path):
    code, out, err = run_cli(capsys, "compare", "create", "--data-dir", str(tmp_path / "data"), "--model",
                             "nobody/nothing", "--prompt", "a fox", "--a", "style", "--seeds", "0")
    assert (code, out, err) == (2, "", "error: The seed count must be between 1 and 200 (got 0).\n")


READ_ONLY_BIND = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def read_only(folder) -> list[str] | None:
    """How to run a command that finds ``folder`` read-only: its folders and files without write permission (for a
    user who is not root), or a read-only bind of it in a mount namespace of the command's own (root, whom
    permissions do not stop); None where neither can be made (root without the right to mount)."""
    if os.geteuid() != 0:
        for path in (folder, *folder.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)
        return []
    probe = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY_BIND, str(folder), "true"], capture_output=True)
    return ["unshare", "-m", "sh", "-c", READ_ONLY_BIND, str(folder)] if probe.returncode == 0 else None


@pytest.mark.parametrize("argv", [["generate", "--model", "nobody/nothing", "--prompt", "x"],
                                  ["queue", "add", "--model", "nobody/nothing", "--prompt", "a __colour__ fox"]],
                         ids=["generate", "queue-add"])
def test_a_data_dir_that_cannot_be_written_is_refused_at_start_up_in_one_line(tmp_path, argv):
    """An existing data dir on a read-only file system (or not the user's to write) opens and reads: each command
    would then fail on its first write with a raw error (a traceback in the CLI). It is refused at once instead,
    as a data dir that cannot be made is."""
    from masuka.studio import Studio

    data = tmp_path / "data"
    Studio.open(Config.from_env(data_dir=data)).close()
    (data / "wildcards").mkdir()
    (data / "wildcards" / "colour.txt").write_text("red\n", encoding="utf-8")
    held = sqlite3.connect(data / "masuka.db")  # another process of the studio: its -wal and -shm files exist
    held.execute("select count(*) from generations").fetchone()
    prefix = read_only(data)
    try:
        if prefix is None:  # no way to make it read-only here (root, no right to mount): the probe it would trip
            held.close()
            assert_the_database_probe_refuses(data)
            return
        done = subprocess.run([*prefix, sys.executable, "-m", "masuka", *argv, "--data-dir", str(data)],
                              capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    finally:
        held.close()
        for path in (data, *data.rglob("*")):
            path.chmod(0o700 if path.is_dir() else 0o600)
    assert done.returncode == 2, done.stderr
    assert done.stderr in (f"error: The data dir {data} cannot be used: attempt to write a readonly database.\n",
                           f"error: The data dir {data} cannot be used: Read-only file system.\n",
                           f"error: The data dir {data} cannot be used: Permission denied.\n")


def test_the_database_probe_refuses_a_database_that_opens_read_only(tmp_path):
    """The database's own probe (a read-only database file in a writable folder: SQLite opens it, and reads)."""
    assert_the_database_probe_refuses(tmp_path)


def test_a_data_dir_refused_for_its_read_only_database_is_left_as_it_was(tmp_path, monkeypatch):
    """The database is checked before the folders are made and the data dir closed to others (0700): a refused
    data dir keeps its folders and mode. The file is made read-only by its mode, or as root by the immutable flag
    (root writes through a mode); as root without ``chattr`` the probe's own refusal stands in."""
    import shutil

    import masuka.studio
    from masuka.errors import InvalidInput
    from masuka.studio import Studio

    data = tmp_path / "data"
    config = Config.from_env(data_dir=data)
    Studio.open(config).close()
    for folder in data.iterdir():
        if folder.is_dir() and folder.name != "locks":
            shutil.rmtree(folder)
    data.chmod(0o755)
    before = sorted(path.name for path in data.iterdir() if not path.name.startswith("masuka.db"))
    undo = ["chattr", "-i", str(config.db_path)]
    if os.geteuid() != 0:
        config.db_path.chmod(0o444)
    elif not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(config.db_path)]).returncode != 0:
        def refused(store, config):
            raise InvalidInput(f"The data dir {data} cannot be used: attempt to write a readonly database.")

        monkeypatch.setattr(masuka.studio, "check_writable", refused)
        undo = ["true"]
    try:
        with pytest.raises(InvalidInput, match="readonly database"):
            Studio.open(config)
    finally:
        subprocess.run(undo)
        config.db_path.chmod(0o644)
    assert sorted(path.name for path in data.iterdir() if not path.name.startswith("masuka.db")) == before
    assert data.stat().st_mode & 0o777 == 0o755


def assert_the_database_probe_refuses(data) -> None:
    import sqlite_utils

    from masuka.errors import InvalidInput
    from masuka.studio import Studio, check_writable

    config = Config.from_env(data_dir=data)
    studio = Studio.open(config)
    try:
        check_writable(studio.store, config)  # a writable one passes
        studio.store.db.conn.close()
        studio.store.db = sqlite_utils.Database(sqlite3.connect(f"{config.db_path.as_uri()}?mode=ro", uri=True,
                                                                isolation_level=None))
        with pytest.raises(InvalidInput, match=f"^The data dir {data} cannot be used: attempt to write a "
                                               "readonly database"):
            check_writable(studio.store, config)
    finally:
        studio.close()


@pytest.mark.parametrize("error, line", [
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/d/wildcards/colour.txt"),
     "error: /d/wildcards/colour.txt cannot be written (Read-only file system): choose another place.\n"),
    (OSError(errno.EACCES, os.strerror(errno.EACCES), "/d/outputs"),
     "error: /d/outputs cannot be written (Permission denied): choose another place.\n"),
    (OSError(errno.EPERM, os.strerror(errno.EPERM), "/d/masuka.db"),
     "error: /d/masuka.db cannot be written (Operation not permitted): choose another place.\n"),
    (sqlite3.OperationalError("attempt to write a readonly database"),
     "error: The database cannot be written (attempt to write a readonly database): choose another data dir "
     "(--data-dir or MASUKA_DATA_DIR), or make this one writable.\n"),
], ids=["EROFS", "EACCES", "EPERM", "readonly-database"])
def test_a_write_the_system_refuses_is_one_line_and_exit_2(capsys, monkeypatch, error, line):
    """Whatever command meets a read-only place after start-up (the file system remounted read-only) says so in one
    line, as for a full disk, with no traceback."""
    import masuka.commands.doctor

    def refused(args):
        raise error

    monkeypatch.setattr(masuka.commands.doctor, "run", refused)
    assert run_cli(capsys, "doctor") == (2, "", line)


def test_a_database_another_process_keeps_locked_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """A write lock another process holds past the store's busy timeout (30 s): SQLite's real "database is
    locked", met here without the wait, is one line and exit 2, not a traceback."""
    import masuka.commands.doctor

    path = tmp_path / "masuka.db"
    held = sqlite3.connect(path, isolation_level=None)
    held.execute("create table t (x)")
    held.execute("begin exclusive")
    other = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("insert into t values (1)")
    finally:
        other.close()
        held.close()

    def busy(args):
        raise locked.value

    monkeypatch.setattr(masuka.commands.doctor, "run", busy)
    assert run_cli(capsys, "doctor") == (
        2, "", "error: The database is busy: another MASUKA process is writing; try again.\n")


@pytest.mark.parametrize(("flag", "value", "what"), [("--reference", "{pic}:abc", "reference image"),
                                                     ("--control", "canny:{pic}:abc", "control image")])
def test_a_picture_with_a_weight_that_is_not_a_number_says_so_as_a_lora_does(capsys, tmp_path, flag, value, what):
    """One parser reads ``REF:WEIGHT`` for LoRAs and pictures: a weight that is not a number is refused as such,
    not looked for as a file named ``r0.png:abc``."""
    pic = tmp_path / "pics" / "r0.png"
    code, out, err = run_cli(capsys, "generate", "--data-dir", str(tmp_path / "data"), "--model", "nobody/nothing",
                             "--prompt", "x", flag, value.format(pic=pic))
    assert (code, out) == (2, "")
    assert err == f"error: The weight of {what} {str(pic)!r} is not a number ('abc'): write it as {pic}:0.8.\n"
    assert not (tmp_path / "data").exists()


def test_an_existing_picture_whose_name_has_a_colon_after_a_dot_is_taken_whole(tmp_path):
    """``photo.v2:final.png`` names a file: it is no ``photo.v2`` weighted ``final.png``; one that does not exist
    is still refused for its weight."""
    from masuka.errors import InvalidInput
    from masuka.validation import has_suffix, weighted

    pic = tmp_path / "photo.v2:final.png"
    pic.write_bytes(b"")
    assert weighted(str(pic), "reference image", has_suffix) == (str(pic), None)
    assert weighted(f"{pic}:0.5", "reference image", has_suffix) == (str(pic), 0.5)
    with pytest.raises(InvalidInput, match="The weight of reference image .*r0.png' is not a number"):
        weighted(str(tmp_path / "r0.png:abc"), "reference image", has_suffix)

def test_sequence_ids_take_history_keys_and_say_so(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sequence", "--ids", "g1,j1", "--data-dir", str(tmp_path / "data"))
    assert (code, out) == (2, "")
    assert err == ("error: --ids takes History images' keys (g12) or ids (12) separated by commas, such as "
                   "g12,g13,g14 (got 'g1,j1').\n")
    assert not (tmp_path / "data").exists()


def test_a_token_for_a_user_off_the_sign_in_list_is_refused_for_that_alone(capsys, tmp_path, monkeypatch):
    """Owning something in the data dir lets other commands' ``--user`` through, never ``keys token create``: its
    refusal says so, not that the user owns nothing."""
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")
    code, out, err = run_cli(capsys, "keys", "token", "create", "--user", "carol", "--data-dir",
                             str(tmp_path / "data"))
    assert (code, out) == (2, "") and err.startswith("error: 'carol' is not on the sign-in list")
    assert "Nor does" not in err and err.endswith("An API token is made only for a user on the sign-in list.\n")


def test_keys_test_without_a_key_names_the_command_that_saves_it(capsys, tmp_path, monkeypatch):
    from masuka.keys import service

    monkeypatch.delenv(service("openai").key_env[0], raising=False)
    code, out, _ = run_cli(capsys, "keys", "test", "openai", "--data-dir", str(tmp_path / "data"))
    assert code == 1 and "paste it here" not in out
    assert out.startswith("No OpenAI key is set: save it with `python -m masuka keys set openai` or set ")


def test_a_completed_job_is_listed_as_done_whatever_progress_it_recorded(capsys, studio):
    studio.store.insert("jobs", {"kind": "caption", "status": "completed", "title": "nothing to caption",
                                 "progress": 0.0})
    code, out, _ = run_cli(capsys, "jobs", "--data-dir", str(studio.config.data_dir))
    assert code == 0 and " completed     100% " in out


def test_listings_print_one_json_object(capsys, tmp_path, monkeypatch):
    """``--json`` prints one object: the lists of keys, models, token owners and tokens are wrapped."""
    monkeypatch.setenv("MASUKA_AUTH", "alice:pw")
    data = ["--data-dir", str(tmp_path / "data"), "--json"]
    assert run_cli(capsys, "keys", "token", "create", "--user", "alice", *data)[0] == 0
    listings = {"keys": ["keys", "list"], "models": ["models", "list"], "users": ["keys", "token", "users"],
                "tokens": ["keys", "token", "list", "--user", "alice"]}
    for field, argv in listings.items():
        code, out, err = run_cli(capsys, *argv, *data)
        printed = json.loads(out)
        assert code == 0 and list(printed) == [field] and printed[field], (argv, err)
    assert printed["tokens"][0]["name"] == "token-1"


def test_queue_run_exits_2_and_counts_the_jobs_that_did_not_complete(capsys, studio, tmp_path):
    from PIL import Image

    from masuka.image.upscale.request import UpscaleRequest
    from masuka.queue.jobs import queue_upscale

    queued = []
    for n in range(2):  # two pictures: each job keeps its own copy
        picture = tmp_path / f"small-{n}.png"
        Image.new("RGB", (40, 30), (10, 120 + n, 200)).save(picture)
        queued.append(queue_upscale(studio, UpscaleRequest(picture, scale=2)))
    done, broken = queued
    studio.config.absolute(studio.store.get("queue", broken)["params"]["request"]["image"]).unlink()
    code, out, err = run_cli(capsys, "queue", "run", "--data-dir", str(studio.config.data_dir))
    assert code == 2 and out == "worked 2 jobs: 1 completed, 1 failed; nothing waits now\n", err
    assert f"job {done} completed" in err and f"job {broken} failed" in err


def test_queue_run_counts_a_job_a_busy_database_interrupted_once_with_its_last_status(capsys, studio, monkeypatch):
    from masuka.queue import tasks
    from masuka.queue.jobs import add_job

    with studio.store.transaction():
        job_id = add_job(studio, "local", "flaky", "one job", "m", {"items": [{}]})
    runs = []

    def flaky(studio_, job, ctx):
        runs.append(job["id"])
        if len(runs) == 1:
            raise sqlite3.OperationalError("database is locked")  # another process held it: the job waits again

    monkeypatch.setitem(tasks.TASKS, "flaky", flaky)
    code, out, err = run_cli(capsys, "queue", "run", "--json", "--data-dir", str(studio.config.data_dir))
    assert (code, json.loads(out), runs) == (0, {"jobs": [{"id": job_id, "status": "completed"}]}, [job_id] * 2), err


def test_a_command_builds_only_its_own_parser_and_a_mistyped_one_lists_them_all(capsys, tmp_path):
    """A run parses with its command's options alone: the other commands' are not built, nor the modules they
    import (a light command starts sooner); a command name that is none of them is refused listing every one."""
    listing = ("import sys; from masuka.cli import main; main(sys.argv[1:]); "
               "print(sorted(m for m in sys.modules if m.startswith('masuka.commands.')))")
    done = subprocess.run([sys.executable, "-c", listing, "history", "list", "--data-dir", str(tmp_path / "data")],
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "['masuka.commands.history']", done.stderr
    with pytest.raises(SystemExit) as refused:
        main(["histroy", "list"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "invalid choice: 'histroy'" in err
    assert all(f"'{name}'" in err for name in ("generate", "history", "train", "video", "storage"))


NOISE = """
import logging, sys, warnings
from masuka.cli import main
main(["history", "list", "--data-dir", sys.argv[1]])
logging.getLogger("kernels._internals.hf_hub").warning("trust check noise")
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("gemm noise")
warnings.warn_explicit("symlinks noise", UserWarning, "_validators.py", 205, module="huggingface_hub.utils._validators")
logging.getLogger("masuka.jobs").warning("own warning")
"""


@pytest.mark.parametrize("level", ["", "DEBUG"])
def test_the_libraries_notices_are_kept_to_errors_unless_debugging(tmp_path, level):
    """kernels' and bitsandbytes' log records and the libraries' Python warnings printed on every model load;
    MASUKA's own warnings stay."""
    env = {**os.environ, "MASUKA_LOG_LEVEL": level, "PYTHONPATH": str(ROOT)}
    err = subprocess.run([sys.executable, "-c", NOISE, str(tmp_path / "data")], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stderr
    assert "own warning" in err
    assert all((noise in err) == bool(level) for noise in ("trust check noise", "gemm noise", "symlinks noise"))


def test_a_blank_data_dir_is_refused_not_taken_as_dot_data(capsys, tmp_path, monkeypatch):
    """``--data-dir "$DIR"`` with DIR unset made ./data (a new database) wherever the command ran."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["history", "list", "--data-dir", ""])
    assert stopped.value.code == 2 and "argument --data-dir: is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_resume_0_is_looked_up_not_taken_for_no_resume(capsys, tmp_path):
    code, _out, err = run_cli(capsys, "train", "--data-dir", str(tmp_path / "data"), "--resume", "0")
    assert code == 2 and err == "error: Training run 0 does not exist.\n"
