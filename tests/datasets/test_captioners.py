"""Captioner families are declared once, in ``FAMILIES``: resolution, messages and help texts all follow it."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from masuka.cli import build_parser
from masuka.datasets import captioners
from masuka.datasets.captioners import CaptionerFamily, resolve_captioner
from masuka.errors import InvalidInput
from masuka.ui.datasets import _auto_caption

TINY = CaptionerFamily("tinycap", "TinyCap", "TinyCapForConditionalGeneration", "tiny-cap", "tinycap",
                       {"short": "<TINY>", "detailed": "<TINY>", "more_detailed": "<TINY>"})


@pytest.fixture
def third_family(monkeypatch):
    monkeypatch.setitem(captioners.FAMILIES, TINY.id, TINY)


def cli_help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes


def test_the_cli_help_names_every_declared_family(third_family, capsys):
    assert "auto-caption with Florence-2 or BLIP-2 or TinyCap" in cli_help(capsys, "dataset")
    caption = cli_help(capsys, "dataset", "caption")
    assert "florence2, blip2, tinycap, a catalog id" in caption
    assert "caption length (Florence-2 or TinyCap)" in caption  # BLIP-2 takes no length prompt
    assert "auto: Florence-2 when downloaded; none: the view prompts; or florence2, blip2, tinycap" in cli_help(
        capsys, "character", "create")


def test_the_datasets_tab_names_every_declared_family(third_family):
    with gr.Blocks():
        (captioner, mode, *_), *_ = _auto_caption()
    assert captioner.info == "Florence-2 or BLIP-2 or TinyCap: catalog, repo id (owner/name) or local folder"
    assert mode.label == "Caption length (Florence-2 or TinyCap)"


def test_a_declared_family_resolves_from_its_folders_and_repo_ids(third_family, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "tiny-cap"}))
    assert resolve_captioner(str(tmp_path)).family == "tinycap"
    assert resolve_captioner("acme/TinyCap-small").family == "tinycap"
    with pytest.raises(InvalidInput, match="use florence2, blip2, tinycap, .* a Florence-2 or BLIP-2 or TinyCap repo"):
        resolve_captioner("tinycap")  # a family without a catalog entry has no default model


def test_a_folder_of_an_undeclared_family_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "tiny-cap"}))
    with pytest.raises(InvalidInput, match=r"not a Florence-2 or BLIP-2 model folder \(model type 'tiny-cap'\)"):
        resolve_captioner(str(tmp_path))
