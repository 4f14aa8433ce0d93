"""X/Y/Z grids on a tiny pipeline: cells, rows, labels, size, Reuse of a cell, and refused axes."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.history.actions import reuse_parameters
from masuka.image.generate import ImageRequest
from masuka.image.grid import parse_axis, plan_grid
from masuka.studio import Studio
from masuka.ui import grid
from masuka.ui.common import NOTHING_TO_STOP, stop_work


def test_grid_cells_rows_labels_and_reuse(capsys, tmp_path, tiny_model):
    data = tmp_path / "data"
    code = main(["grid", "--data-dir", str(data), "--model", str(tiny_model("flux")), "--prompt", "a red fox",
                 "--width", "64", "--height", "64", "--x", "steps=1,2,3", "--y", "guidance=1,3.5", "--seed", "9",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["images"]) == len(out["ids"]) == 6
    studio = Studio.open(Config.from_env(data_dir=data))
    try:
        rows = [studio.store.get("generations", row_id) for row_id in out["ids"]]
        assert [(r["steps"], r["guidance"], r["seed"]) for r in rows] == [
            (1, 1.0, 9), (2, 1.0, 9), (3, 1.0, 9), (1, 3.5, 9), (2, 3.5, 9), (3, 3.5, 9)]
        assert rows[4]["params"]["grid"] == {"steps": "2", "guidance": "3.5"}
        kind, fields = reuse_parameters(studio, "local", True, f"g{rows[4]['id']}")
        assert (kind, fields["steps"], fields["guidance"], fields["seed"]) == ("image", 2, 3.5, 9)
    finally:
        studio.close()

    grid = np.asarray(Image.open(out["grid"]).convert("L"))
    cell = np.asarray(Image.open(out["images"][0]).convert("L"))
    height, width = grid.shape
    assert height > 2 * 64 and width > 3 * 64  # two rows, three columns, and room for the labels
    assert any(np.array_equal(grid[y:y + 64, x:x + 64], cell) for y in range(height - 63) for x in range(width - 63)
               if grid[y, x] == cell[0, 0])  # the first cell's image is pasted whole
    heading = grid[: height - 2 * 64]
    assert (heading < 128).sum() > 50  # column labels are drawn in dark text above the cells


@pytest.mark.parametrize("axis, message", [
    ("clip_skip=1,2", "Unknown grid axis"),
    ("size=64x64,100x100", "multiple of 16"),
    ("steps=1,2,3,4,5,6,7,8,9", "confirm the large grid to make it (--yes on the command line"),
    ("steps=2,x", "not a value for the steps axis"),
])
def test_bad_axes_exit_2_with_one_line(capsys, tmp_path, tiny_model, axis, message):
    extra = ["--y", "seed=1,2,3,4,5,6,7,8"] if "yes" in message else []
    model = str(tiny_model("flux"))
    capsys.readouterr()  # what building the tiny model printed, when this test builds it first
    code = main(["grid", "--data-dir", str(tmp_path / "data"), "--model", model, "--prompt", "a fox", "--x", axis,
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_a_repeated_axis_flag_is_refused_not_cut_to_the_last(capsys, tmp_path, axis):
    """argparse would keep the last of two ``--x``: the grid refuses them in one line, before opening any studio."""
    data = tmp_path / "data"
    given = ["--x", "steps=1,2"] * (axis != "x") + [f"--{axis}", "guidance=1,2", f"--{axis}", "seed=1,2"]
    assert main(["grid", "--data-dir", str(data), "--model", "m", "--prompt", "a fox", *given]) == 2
    err = capsys.readouterr().err
    assert f"--{axis} is given 2 times (guidance=1,2; seed=1,2): a grid has one {axis.upper()} axis" in err
    assert len(err.strip().splitlines()) == 1 and not data.exists()


def test_lora_axis_with_none_and_a_weight_axis(studio, tiny_model, tiny_lora):
    lora = str(tiny_lora("flux"))
    base = ImageRequest(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=2)
    cells = plan_grid(studio, base, [parse_axis("lora_weight=0.5,1"), parse_axis(f"lora=none,{lora}")],
                      allow_any_path=True)
    assert [(c.position, c.request.loras) for c in cells] == [
        ((0, 0, 0), []), ((1, 0, 0), []), ((0, 1, 0), [(lora, 0.5)]), ((1, 1, 0), [(lora, 1.0)])]
    sr = plan_grid(studio, base, [parse_axis("prompt=red,green,blue")])
    assert [c.request.prompt for c in sr] == ["a red fox", "a green fox", "a blue fox"]


def test_a_lora_axis_sweeps_one_lora_over_the_others_given_and_a_weight_axis_reaches_tag_loras(studio, tiny_model,
                                                                                               tiny_lora):
    """The LoRAs given stay in every cell, the axis's LoRA is added to them (its own weight, else the weight it was
    given with, else 1), and a LoRA the axis sweeps is out of the ``none`` cell; ``<lora:...>`` tags are LoRAs of the
    cell for both axes."""
    fixed, swept, other = (str(tiny_lora("flux", seed=seed)) for seed in (0, 1, 2))
    base = ImageRequest(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=2,
                        loras=[(fixed, 0.3), (swept, 0.7)])
    cells = plan_grid(studio, base, [parse_axis(f"lora=none,{swept},{other},{other}:0.4")], allow_any_path=True)
    assert [c.request.loras for c in cells] == [[(fixed, 0.3)], [(fixed, 0.3), (swept, 0.7)],
                                                [(fixed, 0.3), (other, 1.0)], [(fixed, 0.3), (other, 0.4)]]
    tagged = replace(base, prompt=f"a red fox <lora:{fixed}:0.9>", loras=[])
    cells = plan_grid(studio, tagged, [parse_axis("lora_weight=0,0.5")], allow_any_path=True)
    assert [(c.request.prompt, c.request.loras) for c in cells] == [("a red fox", [(fixed, 0.0)]),
                                                                     ("a red fox", [(fixed, 0.5)])]
    with pytest.raises(InvalidInput, match="The lora_weight axis needs a LoRA: add --lora, a <lora:name:weight> tag"):
        plan_grid(studio, replace(base, loras=[]), [parse_axis("lora_weight=0,1")], allow_any_path=True)


def test_relative_model_and_lora_paths_are_made_absolute_for_a_queued_grid_and_job(studio, tmp_path, tiny_model,
                                                                                     tiny_lora, monkeypatch):
    """A queued job runs later, in the app's directory: the files and folders the command named relative to its own
    directory (``--model``, ``--lora``, a model or lora axis's values) are stored absolute."""
    import shutil

    here = tmp_path / "here"
    shutil.copytree(tiny_model("flux"), here / "m" / "flux")
    shutil.copytree(tiny_model("flux"), here / "m" / "flux2")
    shutil.copy(tiny_lora("flux"), here / "m" / "style.safetensors")
    monkeypatch.chdir(here)
    data = str(tmp_path / "data")
    flags = ["--data-dir", data, "--model", "m/flux", "--prompt", "a fox", "--width", "64", "--height", "64",
             "--steps", "1", "--seed", "3"]
    assert main(["queue", "add", *flags, "--lora", "m/style.safetensors:0.5"]) == 0
    assert main(["grid", *flags, "--queue", "--x", "model=m/flux,m/flux2", "--y",
                 "lora=none,m/style.safetensors,m/style.safetensors:0.4"]) == 0
    opened = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        job, grid_job = (row["params"] for row in opened.store.find("queue", order_by="id"))
    finally:
        opened.close()
    model, lora = str(here / "m" / "flux"), str(here / "m" / "style.safetensors")
    assert (job["request"]["model"], job["request"]["loras"]) == (model, [[lora, 0.5]])
    assert grid_job["request"]["model"] == model
    assert [values for _name, values in grid_job["axes"]] == [[model, f"{model}2"], ["none", lora, f"{lora}:0.4"]]


class StopAfter:
    """A ``gr.Progress`` stand-in that presses the tab's Stop (as its button does) once ``images`` are made."""

    def __init__(self, studio, tab: str, request, images: int):
        self.studio, self.tab, self.request, self.left = studio, tab, request, images

    def __call__(self, *_args, **_kwargs) -> None:
        self.left -= 1
        if self.left == 0:
            assert stop_work(self.studio, self.tab, "step", self.request) == "Stopping after the current step…"


def test_the_grid_tab_keeps_the_sampler_and_its_stop_ends_the_grid(studio, tiny_model):
    """The Image tab's Sampler reaches every cell; Stop (this session's) ends the grid after the cell being made,
    whose cells stay in History, and says how many were made."""
    request = gr.Request(session_hash="grid-session")
    form = dict(prompt="a red fox", model=str(tiny_model("flux")), steps=2, width=64, height=64, seed=4, x="seed=1,2,3",
                sampler="Euler Karras", request=request)
    assert stop_work(studio, grid.TAB, "step", request) == NOTHING_TO_STOP, "nothing of this session runs yet"
    with pytest.raises(gr.Error, match=r"Stopped by the user after 1 of 3 cells; the cells made are kept"):
        grid.make_grid(studio, **form, progress=StopAfter(studio, grid.TAB, request, images=1))
    made = studio.store.find("generations", "status = 'completed'")
    assert [(r["seed"], r["params"]["sampler"]) for r in made] == [(1, "Euler Karras")]
    grid.make_grid(studio, **form, progress=lambda *_a, **_k: None)  # a new grid is armed afresh: it runs to the end
    assert studio.store.count("generations", "status = 'completed'") == 4


def test_a_stop_while_the_grid_waits_for_the_gpu_says_it_stopped_before_it_started(studio, tiny_model):
    """A Stop while the grid waits for the GPU another job holds ends it before any cell, in the words of a Stop
    in the queue (not "after 0 of N cells"); nothing is made."""
    import threading
    import time

    request = gr.Request(session_hash="grid-waits")
    outcome: list[BaseException] = []

    def make() -> None:
        try:
            grid.make_grid(studio, prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                           x="seed=1,2", request=request, progress=lambda *_a, **_k: None)
        except gr.Error as error:
            outcome.append(error)

    with studio.hold_gpu("image generation for bob", "bob"):
        thread = threading.Thread(target=make)
        thread.start()
        deadline = time.monotonic() + 300
        while not studio.gpu.interactive_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stop_work(studio, grid.TAB, "step", request) == "Stopping after the current step…"
        thread.join()
    assert [error.message for error in outcome] == ["Stopped by the user before it started."]
    assert studio.store.count("generations") == 0


def test_a_stop_after_the_grid_has_ended_shows_nothing(studio, tiny_model):
    """The grid's stop flag lives as long as the grid: a Stop after it shows nothing and no flag is left behind."""
    request = gr.Request(session_hash="grid-done")
    grid.make_grid(studio, prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, x="seed=1,2",
                   request=request, progress=lambda *_a, **_k: None)
    assert stop_work(studio, grid.TAB, "step", request) == NOTHING_TO_STOP
    assert not studio.stops._flags


def test_every_tab_s_stop_skips_the_queue(studio):
    """The work of the Image tab (and its Upscale panel), Datasets (captions), Characters, Grid, Compare and
    checkpoint-compare tabs holds the GPU's queue slot: each Stop button answers at once, outside the queue."""
    from masuka.ui import characters, checkpoints, compare, datasets, upscale
    from masuka.ui.app import build_app
    from masuka.ui.common import IMAGE_TAB

    stops = [fn for fn in build_app(studio).fns.values() if fn.name == "stop_work"]
    tabs = [inspect.getclosurevars(fn.fn).nonlocals["bound"].args[1] for fn in stops]  # bind(stop_work, studio, tab)
    assert sorted(tabs) == sorted([grid.TAB, compare.TAB, checkpoints.TAB, IMAGE_TAB, upscale.PANEL,
                                   datasets.CAPTIONS, characters.TAB]) and not any(fn.queue for fn in stops)


def test_a_grid_has_at_most_1024_cells_even_confirmed(studio, tiny_model, monkeypatch):
    """20,000 cells took 35 s to plan and megabytes for every Queue poll: past the hard limit a grid is refused at
    once, before any cell is planned, whatever the confirmation."""
    from masuka.image import grid as grids

    base = ImageRequest(prompt="a castle", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=3)
    axes = [parse_axis(f"{name}=" + ",".join(map(str, values))) for name, values in (("seed", range(2000)),
                                                                                      ("steps", range(1, 11)))]
    monkeypatch.setattr(grids, "plan_request", lambda *_a, **_k: pytest.fail("a cell was planned"))
    with pytest.raises(InvalidInput, match="This grid has 20000 cells: a grid has at most 1024"):
        plan_grid(studio, base, axes, confirm_large=True)
    assert main(["grid", "--data-dir", str(studio.config.data_dir), "--model", base.model, "--prompt", "a fox",
                 "--x", "seed=" + ",".join(map(str, range(1025))), "--yes", "--queue"]) == 2
    assert studio.store.count("queue") == 0


def test_one_message_says_how_to_confirm_a_large_grid_everywhere(studio, tiny_model, tiny_lora, tmp_path):
    """The Grid tab and Compare checkpoints give the one message naming both yeses (the CLI's --yes, the app's
    "Allow more than 64 cells" box), and ticking the box lets a checkpoint comparison above 64 cells through."""
    from masuka.training.options import KIND
    from masuka.ui import checkpoints

    request = gr.Request(session_hash="large")
    form = dict(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, x="seed=1,2,3,4,5,6,7,8,9",
                y="steps=1,2,3,4,5,6,7,8", request=request)
    for make in (grid.make_grid, grid.add_grid):
        with pytest.raises(gr.Error, match=r"grid has 72 cells \(more than 64\): confirm the large grid to make "
                                           r"it \(--yes on the command line, the 'Allow more than 64 cells' box"):
            make(studio, **form)

    run_dir = studio.config.runs_dir / "run-00001"
    for step in range(100, 1000, 100):  # nine checkpoints by eight prompts: 72 cells
        folder = run_dir / f"checkpoint-{step:06d}"
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(json.dumps({"lora_file": "lora.safetensors"}))
        (folder / "lora.safetensors").write_bytes(tiny_lora("flux").read_bytes())
    run = studio.store.insert("jobs", {"kind": KIND, "owner": "local", "status": "completed", "state": {
        "run_dir": studio.config.relative(run_dir)}, "params": {
        "dataset": 1, "base": str(tiny_model("flux")), "sample_prompts": [f"a fox {i}" for i in range(8)]}})
    with pytest.raises(gr.Error, match="the 'Allow more than 64 cells' box in the app"):
        checkpoints.queue_checkpoints(studio, run, "", 3, 1, 64, 64, request=request)
    queued = checkpoints.queue_checkpoints(studio, run, "", 3, 1, 64, 64, allow_large=True, request=request)
    assert queued.startswith("Queued job") and studio.store.get("queue", 1)["total"] == 72
