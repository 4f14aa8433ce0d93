"""Defaults (output format with metadata), storage usage and clean-up."""

from __future__ import annotations

import pytest
from PIL import Image

from masuka.disk import clean_leftovers, clean_tmp, usage
from masuka.errors import InvalidInput
from masuka.image.defaults import Defaults, load_defaults, save_defaults
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters


def make(studio, model, **kw):
    values = dict(prompt="a paper boat", model=str(model), steps=2, width=64, height=64, seed=3)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))


@pytest.mark.parametrize("image_format, suffix", [("WebP", ".webp"), ("JPEG", ".jpg"), ("PNG", ".png")])
def test_output_format_is_used_and_keeps_the_parameters(studio, tiny_model, image_format, suffix):
    save_defaults(studio.config, output_format=image_format)
    result = make(studio, tiny_model("flux"))[0]
    assert result.path.suffix == suffix
    assert Image.open(result.path).format == image_format.upper()
    parsed = parse_parameters(read_parameters(result.path))
    assert (parsed.prompt, parsed.seed, parsed.steps) == ("a paper boat", 3, 2)


def test_defaults_are_checked_saved_and_survive_a_restart(config):
    assert load_defaults(config).output_format == "PNG"
    save_defaults(config, model="sdxl", steps=20, width=832, height=1216, output_format="WebP")
    from masuka.config import Config

    again = load_defaults(Config.from_env(data_dir=config.data_dir, auth=""))
    assert (again.model, again.steps, again.width, again.height, again.output_format) == ("sdxl", 20, 832, 1216,
                                                                                           "WebP")
    for bad, message in (({"output_format": "GIF"}, "Output format"), ({"steps": 999}, "steps"),
                         ({"width": 10}, "width"), ({"model": "nope"}, "Unknown model")):
        with pytest.raises(InvalidInput, match=message):
            save_defaults(config, **bad)
    assert load_defaults(config).steps == 20


def test_saved_defaults_today_s_checks_refuse_are_left_out_not_kept(config, caplog):
    """An older MASUKA saved a width of 520 (no multiple of 16 was asked then): loaded as it was, it made every
    Generate fail until typed again. Such a value is left out (the model's own serves); the others stay."""
    import json

    (config.data_dir / "settings.json").write_text(json.dumps({"defaults": {
        "model": "flux-dev", "steps": 20, "width": 520, "height": 1216, "output_format": "GIF"}}))
    loaded = load_defaults(config)
    assert (loaded.model, loaded.steps, loaded.width, loaded.height, loaded.output_format) == (
        "flux-dev", 20, None, 1216, "PNG")
    assert "saved default width left out" in caplog.text and "saved default output_format left out" in caplog.text
    caplog.clear()
    assert load_defaults(config) == loaded and not caplog.text  # told once, not for every image


def test_storage_usage_and_clean_up_remove_only_leftovers(studio, tiny_model, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    kept, failed = make(studio, tiny_model("flux"), batch=2)
    studio.store.update("generations", failed.id, status="failed")
    orphan = kept.path.with_name("999999-1.png")
    orphan.write_bytes(kept.path.read_bytes())
    partial = studio.config.loras_dir / "half.safetensors.part"
    partial.write_bytes(b"x" * 100)
    for old in (orphan, partial):  # left by a crash long ago (newer ones are kept: see the next test)
        os.utime(old, (0, 0))
    old_tmp = studio.config.tmp_dir / "old-import"
    old_tmp.mkdir()
    (old_tmp / "f.bin").write_bytes(b"y" * 10)
    os.utime(old_tmp, (0, 0))
    fresh_tmp = studio.config.tmp_dir / "fresh.bin"
    fresh_tmp.write_bytes(b"z")
    before = {row["area"]: row for row in usage(studio)}
    assert before["outputs"]["files"] == 3 and before["outputs"]["bytes"] > 0
    assert set(before) == {"outputs", "loras", "datasets", "runs", "characters", "models cache", "tmp"}
    assert clean_leftovers(studio)[0] == 3
    assert kept.path.is_file() and not failed.path.exists() and not orphan.exists() and not partial.exists()
    assert clean_tmp(studio) == (1, 10)
    assert fresh_tmp.exists() and not old_tmp.exists()


def test_leftovers_being_written_right_now_are_kept(studio, tiny_model, monkeypatch, tmp_path):
    """A transfer in progress (a model import, a remote run's LoRA download) and an image not yet recorded are
    newer than an hour: Remove leftovers leaves them alone, and removes them once they are old."""
    import os

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    kept = make(studio, tiny_model("flux"))[0]
    downloading = studio.config.runs_dir / "alice" / "run-7" / "lora.safetensors.part"
    downloading.parent.mkdir(parents=True)
    downloading.write_bytes(b"x" * 1000)
    importing = studio.config.loras_dir / "new.safetensors.part"
    importing.write_bytes(b"y" * 10)
    unrecorded = kept.path.with_name("999999-1.png")
    unrecorded.write_bytes(kept.path.read_bytes())
    assert clean_leftovers(studio) == (0, 0)
    assert downloading.exists() and importing.exists() and unrecorded.exists() and kept.path.exists()
    for path in (downloading, importing, unrecorded):
        os.utime(path, (0, 0))
    assert clean_leftovers(studio)[0] == 3 and kept.path.exists()


def test_broken_defaults_give_the_built_in_ones(config):
    """A settings.json edited by hand into something else never stops generation (which reads the format)."""
    path = config.data_dir / "settings.json"
    for text in ('{"defaults": null}', '{"defaults": [1]}', "[]", '"x"', "{", ""):
        path.write_text(text, encoding="utf-8")
        assert load_defaults(config) == Defaults()


@pytest.mark.parametrize("name", ["settings.json", "aids.json"])
def test_an_unreadable_settings_file_is_named_in_the_log_and_moved_aside_by_the_next_save(config, caplog, name):
    """A settings.json or aids.json cut short by a hand edit gave the built-in values silently, and the next save
    overwrote it: what it held was lost. It is named in the log (once, not for every image), and the next save
    moves it to NAME.bad, as the key file is."""
    from masuka.image.aid_settings import AidSettings, load_aid_settings, save_aid_settings

    load, save, blank = {"settings.json": (load_defaults, lambda: save_defaults(config, steps=4), Defaults()),
                         "aids.json": (load_aid_settings, lambda: save_aid_settings(config, AidSettings(
                             safety_action="withhold")), AidSettings())}[name]
    path = config.data_dir / name
    path.write_text('{"defaults": {"model": "", "steps": 5, ', encoding="utf-8")
    assert load(config) == blank and load(config) == blank
    told = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert told == [f"the settings file {path} cannot be read (it is not valid JSON): the built-in values serve "
                    f"until it is repaired, or the next save moves it aside to {name}.bad"]
    save()
    assert (config.data_dir / f"{name}.bad").read_text(encoding="utf-8") == '{"defaults": {"model": "", "steps": 5, '
    assert load(config) != blank


@pytest.mark.parametrize("bad, message", [
    ({"steps": float("nan")}, "Default steps must be a whole number"),
    ({"width": float("inf")}, "Default width must be a whole number"),
    ({"height": "tall"}, "Default height must be a whole number"),
    ({"width": 1000}, "Default width must be a multiple of 16, the step every model accepts .got 1000; try 992"),
    ({"model": "flux-dev", "height": 1000}, "Default height must be a multiple of 16 for flux-dev"),
    ({"model": "sdxl", "width": 1020}, "Default width must be a multiple of 8 for sdxl"),
])
def test_default_numbers_are_refused_as_an_image_would_refuse_them(config, bad, message):
    with pytest.raises(InvalidInput, match=message):
        save_defaults(config, **bad)
    assert load_defaults(config) == Defaults()


def test_a_default_size_is_a_multiple_the_model_accepts(config):
    assert save_defaults(config, model="sdxl", width=1000, height=1016).width == 1000
    assert save_defaults(config, width=1024, height=768).height == 768


def test_remove_leftovers_sweeps_input_copies_nothing_uses_and_old_extras(studio):
    """Copies in ``outputs/<user>/inputs`` that no row or queued job points at (a request refused before its work
    ran) go once they are an hour old, as do the A1111 extras upscales older versions kept; copies in use stay."""
    import os

    from masuka.image.copies import save_input

    picture = Image.new("RGB", (8, 8), "red")
    used, queued, orphan, fresh = (save_input(studio, "bob", picture, kind) for kind in ("init-image", "mask",
                                                                                         "init-image", "mask"))
    studio.store.insert("generations", {"kind": "image", "status": "completed", "owner": "bob",
                                        "params": {"init_image": str(used)}})
    studio.store.insert("queue", {"task": "image", "owner": "bob", "status": "queued",
                                  "params": {"mask": f"inputs/{queued.name}"}})
    extra = studio.config.outputs_dir / "bob" / "extras" / "upscaled-0123456789ab.png"
    extra.parent.mkdir(parents=True)
    picture.save(extra)
    for path in (used, queued, orphan, extra):
        os.utime(path, (0, 0))
    assert clean_leftovers(studio)[0] == 2
    assert used.exists() and queued.exists() and fresh.exists() and not orphan.exists() and not extra.exists()


def test_disk_use_per_user_names_whose_files_they_are_a_former_user_s_too(tmp_path, tiny_model, capsys):
    import json

    from masuka.cli import main
    from masuka.config import Config
    from masuka.datasets.adding import add_images
    from masuka.datasets.library import create_dataset
    from masuka.disk import NO_OWNER, usage_by_user
    from masuka.models.synthetic import save_tiny_lora
    from masuka.studio import Studio
    from tests.datasets import corpus

    data = tmp_path / "data"
    studio = Studio.open(Config.from_env(data_dir=data, auth="alice:a,bob:b,admin:c"))
    try:
        image = make(studio, tiny_model("flux"), owner="alice")[0].path
        dataset = create_dataset(studio, "faces", "bob")
        assert add_images(studio, dataset["id"], "bob", [corpus.photo(tmp_path / "photo.jpg", 1)]).added
        dropped = save_tiny_lora("flux", studio.config.loras_dir / "dropped.safetensors")  # in no one's folder
        (studio.config.tmp_dir / "import.bin").write_bytes(b"x" * 10)  # tmp/ is nobody's: not counted per user
        export = data / "outputs" / "alice" / "exports" / "faces.zip"  # files of no row, in alice's folders
        export.parent.mkdir(parents=True)
        export.write_bytes(b"z" * 7)
        leftover = studio.config.loras_dir / "alice" / "left.safetensors"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"l" * 5)
    finally:
        studio.close()
    bobs = sum(p.stat().st_size for p in (data / "datasets").rglob("*") if p.is_file())
    studio = Studio.open(Config.from_env(data_dir=data, auth="bob:b,admin:c"))  # alice taken off the list
    try:
        rows = usage_by_user(studio)
    finally:
        studio.close()
    bob_files = len([p for p in (data / "datasets").rglob("*") if p.is_file()])
    assert {row["user"]: (row["files"], row["bytes"]) for row in rows} == {
        "alice": (3, image.stat().st_size + 7 + 5), "bob": (bob_files, bobs), NO_OWNER: (1, dropped.stat().st_size)}
    assert [row["bytes"] for row in rows] == sorted((row["bytes"] for row in rows), reverse=True)
    capsys.readouterr()
    assert main(["storage", "--json", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == rows
