"""Blind A/B: pairs share prompt and seed, the judge sees no side names, votes and the Wilson tally are stored."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.history.actions import delete_entries
from masuka.image import compare
from masuka.image.compare import create_ab, delete_comparison, next_pair, nothing_left, tally, vote
from masuka.image.generate import ImageRequest
from masuka.store import Store
from masuka.studio import Studio
from masuka.ui import compare as ui_compare
from masuka.ui.common import is_admin

HUGE = "99999999999999999999"


def test_pairs_votes_and_tally(studio, tiny_model, tiny_lora):
    lora = str(tiny_lora("flux"))
    base = ImageRequest(prompt="", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=20)
    comparison = create_ab(studio, base, [(lora, 1.0)], [], ["a red fox", "a blue bird"], seeds=2,
                           allow_any_path=True)
    pairs = studio.store.get("comparisons", comparison)["state"]["pairs"]
    assert [(p["prompt"], p["seed"]) for p in pairs] == [("a red fox", 20), ("a red fox", 21), ("a blue bird", 20),
                                                        ("a blue bird", 21)]
    for pair in pairs:
        a, b = studio.store.get("generations", pair["a"]), studio.store.get("generations", pair["b"])
        assert (a["seed"], a["prompt"]) == (b["seed"], b["prompt"]) and len(a["loras"]) == 1 and b["loras"] == []

    shown = next_pair(studio, "local", comparison)
    first = pairs[0]
    assert shown["index"] == 0 and shown["remaining"] == 4 and "lora" not in json.dumps(shown).lower()
    source = studio.config.absolute(studio.store.get("generations", first[first["left"]])["output_path"])
    with Image.open(shown["left"]) as copy, Image.open(source) as original:
        assert list(copy.getdata()) == list(original.getdata())
    result = vote(studio, "local", comparison, 0, "left")  # whichever side was on the left wins
    assert "sides" not in result and result["remaining"] == 3
    assert (tally(studio, "local", comparison)["a_wins"], tally(studio, "local", comparison)["b_wins"]
            ) == ((1, 0) if first["left"] == "a" else (0, 1))
    vote(studio, "local", comparison, 1, "tie")
    assert next_pair(studio, "local", comparison)["index"] == 2
    assert tally(studio, "local", comparison)["ties"] == 1
    with pytest.raises(InvalidInput):
        create_ab(studio, base, [], [], ["a fox"])


def test_tally_is_the_wilson_interval_over_decided_pairs(capsys, tmp_path):
    data = tmp_path / "data"
    comparison = _stored_in(data, ["a"] * 7 + ["b"] * 3 + ["tie"] * 2 + [None])
    assert main(["compare", "tally", str(comparison), "--data-dir", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["a_wins"], result["b_wins"], result["ties"], result["undecided"]) == (7, 3, 2, 1)
    assert result["a_win_rate"] == pytest.approx(0.7)
    assert result["interval"] == pytest.approx([0.3968, 0.8922], abs=1e-4)  # Wilson 95% for 7 of 10
    assert main(["compare", "vote", str(comparison), "12", "left", "--data-dir", str(data)]) == 0
    assert "A 8, B 3, ties 2, undecided 0; A wins 73%" in capsys.readouterr().out


def _stored_comparison(config: Config, store: Store, choices: list[str | None], owner: str = "local") -> int:
    """A comparison of ``owner`` stored directly, its pairs all made of the same two image rows (one file each)."""
    images = []
    for side in ("a", "b"):
        path = config.outputs_dir / f"{side}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(path)
        images.append(store.insert("generations", {"owner": "local", "kind": "image", "status": "done",
                                                   "output_path": str(path)}))
    comparison = store.insert("comparisons", {
        "owner": owner, "kind": "ab", "title": "x vs y", "params": {"sides": {"a": "x", "b": "y"}},
        "state": {"pairs": [{"prompt": "p", "seed": i, "a": images[0], "b": images[1], "left": "a", "choice": c}
                            for i, c in enumerate(choices)]}})
    return comparison


def _stored_in(data, choices: list[str | None]) -> int:
    """:func:`_stored_comparison` in the data dir ``data``, as the CLI will open it."""
    config = Config.from_env(data_dir=data)
    store = Store(config.db_path)
    try:
        return _stored_comparison(config, store, choices)
    finally:
        store.close()


def test_neither_row_ids_nor_judged_files_tell_the_sides(studio, tiny_model, tiny_lora, monkeypatch):
    """Render order is drawn per pair (here: always B first), and the judge gets neutral copies without the
    parameters chunk that would name the LoRA."""
    monkeypatch.setattr(compare.random, "sample", lambda items, k: list(reversed(items)))
    lora = str(tiny_lora("flux"))
    base = ImageRequest(prompt="", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=3)
    comparison = create_ab(studio, base, [(lora, 1.0)], [], ["a red fox"], seeds=2, allow_any_path=True)
    assert all(p["b"] < p["a"] for p in studio.store.get("comparisons", comparison)["state"]["pairs"])
    shown = next_pair(studio, "local", comparison)
    folder = studio.config.outputs_dir / "local" / "compare" / str(comparison)
    assert (shown["left"], shown["right"]) == (str(folder / "0-left.png"), str(folder / "0-right.png"))
    for path in (shown["left"], shown["right"]):
        with Image.open(path) as image:
            assert "parameters" not in image.info and "lora" not in json.dumps(image.info, default=str).lower()


def test_votes_hide_the_sides_and_counts_until_every_pair_is_judged(capsys, tmp_path):
    data = tmp_path / "data"
    comparison = _stored_in(data, [None, None])
    assert main(["compare", "vote", str(comparison), "0", "left", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 pairs left to judge" in out and "A =" not in out and "x" not in out.replace("x vs", "")
    assert main(["compare", "vote", str(comparison), "1", "right", "--data-dir", str(data), "--json"]) == 0
    assert "1 of 2" not in (out := capsys.readouterr().out) and json.loads(out)["a_wins"] == 1
    assert main(["compare", "tally", str(comparison), "--data-dir", str(data)]) == 0
    assert "A = x, B = y: A 1, B 1" in capsys.readouterr().out


def test_a_pair_with_a_deleted_image_is_skipped_and_cannot_be_voted(studio):
    comparison = _stored_comparison(studio.config, studio.store, [None, None])
    assert next_pair(studio, "local", comparison)["remaining"] == 2
    pairs = studio.store.get("comparisons", comparison)["state"]["pairs"]
    said = delete_entries(studio, "local", True, [f"g{pairs[0]['a']}"])  # both pairs use it
    assert f"A/B test(s) {comparison} had pairs not judged yet" in said
    assert next_pair(studio, "local", comparison) is None
    assert nothing_left(studio, "local", comparison) == (
        "No pair is left to judge: 2 pair(s) lost an image deleted from History and cannot be judged (the tally "
        "counts them undecided).")  # not "every pair is judged"
    with pytest.raises(InvalidInput, match="deleted"):
        vote(studio, "local", comparison, 0, "left")
    assert tally(studio, "local", comparison)["a_wins"] == 0


def test_an_id_too_big_for_sqlite_is_no_comparison(studio, capsys, tmp_path):
    with pytest.raises(NotFound):
        next_pair(studio, "local", int(HUGE))
    data = str(tmp_path / "data")
    for command in (["compare", "next", HUGE], ["compare", "vote", HUGE, "0", "left"], ["compare", "tally", HUGE]):
        assert main([*command, "--data-dir", data]) == 2
        assert f"no comparison {HUGE} of yours" in capsys.readouterr().err


def test_deleting_a_test_removes_its_blind_copies_and_keeps_the_images(studio, capsys, tmp_path):
    comparison = _stored_comparison(studio.config, studio.store, [None, None])
    copies = Path(next_pair(studio, "local", comparison)["left"]).parent
    assert copies.is_dir()
    with pytest.raises(NotFound):
        delete_comparison(studio, "bob", comparison)  # another user's test is not theirs to delete
    delete_comparison(studio, "local", comparison)
    assert studio.store.get("comparisons", comparison) is None and not copies.exists()
    assert studio.store.count("generations") == 2 and all(
        studio.config.absolute(r["output_path"]).is_file() for r in studio.store.find("generations"))
    data = tmp_path / "data"
    stored = _stored_in(data, [None])
    assert main(["compare", "delete", str(stored), "--data-dir", str(data)]) == 0
    assert f"comparison {stored} deleted; its images stay in History" in capsys.readouterr().out
    assert main(["compare", "delete", str(stored), "--data-dir", str(data)]) == 2
    assert f"no comparison {stored} of yours" in capsys.readouterr().err


def test_a_blind_test_is_judged_tallied_and_deleted_by_its_owner_alone(tmp_path, monkeypatch, capsys):
    """An admin's A/B picker lists their own tests only, and neither the Compare tab nor the command line lets
    anyone but the owner judge, see the tally (which names the sides) or delete a test; ``--user`` acts as one."""
    monkeypatch.setenv("MASUKA_ADMINS", "admin")
    config = Config.from_env(data_dir=tmp_path / "data", auth="admin:pw-admin,bob:pw-bob")
    studio = Studio.open(config)
    try:
        bobs = _stored_comparison(config, studio.store, [None, None], owner="bob")
        own = _stored_comparison(config, studio.store, [None], owner="admin")
        admin = gr.Request(username="admin")
        assert is_admin(studio, admin) and ui_compare.choices(studio, admin)[2].choices == [(f"{own}: x vs y", own)]
        for refused in (lambda: ui_compare.show(studio, bobs, admin),
                        lambda: ui_compare.judge(studio, "left", (bobs, 0), admin),
                        lambda: ui_compare.forget(studio, bobs, admin)):
            with pytest.raises(gr.Error, match=f"no comparison {bobs} of yours"):
                refused()
        assert [p["choice"] for p in studio.store.get("comparisons", bobs)["state"]["pairs"]] == [None, None]
    finally:
        studio.close()
    data = ["--data-dir", str(tmp_path / "data")]
    for command in (["next", bobs], ["vote", bobs, 0, "left"], ["tally", bobs], ["delete", bobs]):
        assert main(["compare", *map(str, command), *data]) == 2
        assert f"no comparison {bobs} of yours" in capsys.readouterr().err
    assert main(["compare", "list", "--json", *data]) == 0 and json.loads(capsys.readouterr().out)["comparisons"] == []
    assert main(["compare", "vote", str(bobs), "0", "left", "--user", "bob", *data]) == 0
    assert "1 of 2 pairs left to judge" in capsys.readouterr().out


def test_a_vote_is_for_the_pair_on_screen_not_the_test_chosen_since(studio):
    """The vote buttons judge what Load (or Render) put on screen: choosing another test in the picker without
    Load clears the view rather than voting on that test; with nothing shown a vote is refused."""
    request = gr.Request(session_hash="judge")
    first, second = (_stored_comparison(studio.config, studio.store, [None, None]) for _ in range(2))
    shown, caption, left, *_ = ui_compare.show(studio, first, request)
    assert shown == (first, 0) and caption.startswith("Pair 1") and left
    shown, *_ = ui_compare.judge(studio, "left", shown, request)  # the picker now says `second`: it plays no part
    assert shown == (first, 1)
    choices = {c: [p["choice"] for p in studio.store.get("comparisons", c)["state"]["pairs"]] for c in (first, second)}
    assert choices == {first: ["a", None], second: [None, None]}
    with pytest.raises(gr.Error, match="press Load first"):
        ui_compare.judge(studio, "left", None, request)
    assert ui_compare.show(studio, None, request) == (None, "", None, None, ""), "what choosing another test shows"
    ui_compare.judge(studio, "tie", shown, request)
    with pytest.raises(gr.Error, match=f"Every pair of A/B test {first} is judged"):
        ui_compare.judge(studio, "left", ui_compare.show(studio, first, request)[0], request)

    from masuka.ui.app import build_app

    events = build_app(studio).fns.values()
    assert {tuple(type(i).__name__ for i in fn.inputs) for fn in events if fn.name == "judge"} == {("State",)}
    cleared = [fn for fn in events if getattr(fn.fn, "__wrapped__", None) is ui_compare.show
               and [t for _id, t in fn.targets] == ["input"]]
    assert len(cleared) == 1 and cleared[0].inputs == [] and not cleared[0].queue, "choosing a test clears the view"


def test_render_pairs_keeps_the_sampler_and_its_stop_ends_the_test(studio, tiny_model, tiny_lora):
    from tests.image.test_grid import StopAfter

    request = gr.Request(session_hash="render")
    studio.config.loras_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_lora("flux"), studio.config.loras_dir / "style.safetensors")  # a LoRA of the library
    form = dict(prompt="a red fox", model=str(tiny_model("flux")), negative_prompt="", steps=2, guidance=1.0,
                width=64, height=64, seed=5, batch=1, loras=[], memory_plan="auto", fast=False, step_cache=0.0,
                a=["style"], b=[], lines="", count=3, sampler="Euler Karras", request=request)
    with pytest.raises(gr.Error, match=r"Stopped by the user after 1 of 3 pairs; the 1 finished pair\(s\) are A/B "
                                       r"test 1; the images made are kept in History"):
        ui_compare.make(studio, **form, progress=StopAfter(studio, ui_compare.TAB, request, images=3))
    made = studio.store.find("generations", "status = 'completed'")
    assert [r["params"]["sampler"] for r in made] == ["Euler Karras"] * 3
    [stored] = studio.store.find("comparisons")  # the finished pair can be judged; the lone third image cannot
    assert [sorted((p["a"], p["b"])) for p in stored["state"]["pairs"]] == [sorted(r["id"] for r in made)[:2]]
    with pytest.raises(gr.Error, match=r"after 0 of 3 pairs; no pair was finished, so no A/B test is stored"):
        ui_compare.make(studio, **form, progress=StopAfter(studio, ui_compare.TAB, request, images=1))
    assert studio.store.count("comparisons") == 1



def test_ctrl_c_on_compare_create_stores_the_finished_pairs_as_the_test(capsys, tmp_path, tiny_model, tiny_lora,
                                                                       monkeypatch):
    """README: stopping stores the pairs finished so far as the test; the CLI says which and exits 130."""
    import os
    import signal

    from masuka.commands import compare as command

    lines: list[str] = []

    def line(_args, text: str) -> None:
        lines.append(text)
        if len(lines) == 3:  # the first pair and one image of the second are saved: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(command, "progress_line", line)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = main(["compare", "create", "--data-dir", str(tmp_path), "--model", str(tiny_model("flux")),
                     "--prompt", "a red fox", "--steps", "2", "--width", "64", "--height", "64", "--a",
                     str(tiny_lora("flux")), "--seeds", "3", "--json"])
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    printed = json.loads(capsys.readouterr().out)
    assert code == 130 and printed["comparison"] == 1, lines
    assert lines[-1] == printed["stopped"] == ("Stopped by the user after 1 of 3 pairs; the 1 finished pair(s) are "
                                               "A/B test 1; the images made are kept in History.")
    stored = Store(Config.read_env(data_dir=tmp_path).db_path).get("comparisons", 1)
    assert len(stored["state"]["pairs"]) == 1


def test_more_seeds_per_prompt_than_a_batch_and_the_seed_range(studio, tiny_model, tiny_lora):
    """Each side makes one image a pair, so a prompt may have more seeds than a batch has images (up to the 200
    pairs); seeds that would run past the largest seed are refused before anything is made."""
    from masuka.image.generate import MAX_SEED

    lora = [(str(tiny_lora("flux")), 1.0)]
    base = ImageRequest(prompt="", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=20)
    comparison = create_ab(studio, base, lora, [], ["a red fox"], seeds=6, allow_any_path=True)
    pairs = studio.store.get("comparisons", comparison)["state"]["pairs"]
    assert [pair["seed"] for pair in pairs] == [20, 21, 22, 23, 24, 25]
    assert studio.store.count("generations", "status = 'completed'") == 12
    with pytest.raises(InvalidInput, match=f"Seed must be between 0 and {MAX_SEED - 5} \\(got {MAX_SEED - 4}\\)"):
        create_ab(studio, replace(base, seed=MAX_SEED - 4), lora, [], ["a fox"], seeds=6, allow_any_path=True)
    assert studio.store.count("generations") == 12
