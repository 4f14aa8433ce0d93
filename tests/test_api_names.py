"""Every public Gradio endpoint is documented as a client sees it: ``view_api()`` against the README's API tables.

A table row reads ``| `/name` | `required, names`, optionally `optional, names` | `Output one`, `Output two` |``
(``—`` when there are none); the parameter names are the CLI's flags where the CLI has the same action.
"""

from __future__ import annotations

import argparse
import re

import pytest

from tests.conftest import ROOT

ROW = re.compile(r"^\| `/([a-z0-9_]+)` \| (.*?) \| (.*?) \|$", re.MULTILINE)
#: endpoint -> the CLI command that does the same
CLI_TWINS = {"/generate_image": ("generate",), "/edit_image": ("edit",), "/upscale_image": ("upscale",),
             "/grid": ("grid",), "/generate_video": ("video",), "/create_dataset": ("dataset", "create"),
             "/add_images": ("dataset", "add"), "/caption_dataset": ("dataset", "caption"),
             "/export_dataset": ("dataset", "export"), "/start_training": ("train",)}
#: API parameter -> CLI destination, where a list takes a repeatable flag or the CLI names a positional argument
CLI_NAMES = {"dataset": "name", "loras": "lora", "sample_prompts": "sample_prompt", "dedupe": "no_dedupe",
             "files": "paths", "allow_large": "yes", "images": "image", "references": "reference", "sound": "audio",
             "canvas": "mask", "reference_image": "reference", "reference_weight": "reference",
             **{f"control_{part}": "control" for part in ("kind", "image", "weight", "start", "end")},
             "mask_mode": "invert_mask", "masked_content": "fill_masked", "inpaint_area": "only_masked",
             "only_masked_padding": "only_masked"}
#: parameters that take any text although the UI offers a list (paths, repo ids, names made at run time)
FREE_TEXT = {"/generate_image": ("model", "loras"), "/grid": ("model", "loras"), "/start_training": ("dataset",),
             "/add_images": ("dataset",), "/caption_dataset": ("dataset",), "/export_dataset": ("dataset",),
             "/training_status": ("run_id",), "/history": ("kinds", "model", "lora", "status"),
             "/download_model": ("model",), "/generate_video": ("model",), "/forget_user": ("user",)}


def readme_endpoints() -> dict[str, dict[str, list[str]]]:
    """``{"/name": {"required": [...], "optional": [...], "returns": [...]}}`` from every API table row."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    endpoints = {}
    for name, parameters, returns in ROW.findall(readme):
        optional = re.search(r"optionally `([^`]+)`", parameters)
        required = re.match(r"`([^`]+)`", parameters)
        row = {"required": _names(required), "optional": _names(optional),
               "returns": re.findall(r"`([^`]+)`", returns)}
        assert endpoints.setdefault(f"/{name}", row) == row, f"two README rows disagree on /{name}"
    return endpoints


def _names(match: re.Match | None) -> list[str]:
    return [name.strip() for name in match[1].split(",")] if match else []


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from gradio_client import Client

    from masuka.config import Config
    from masuka.server import launch
    from tests.conftest import free_port

    config = Config.from_env(data_dir=tmp_path_factory.mktemp("api") / "data", auth="")
    running = launch(config, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield Client(running.url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]
    finally:
        running.close()


def test_every_public_endpoint_has_a_readme_row_and_every_row_an_endpoint(api):
    documented = readme_endpoints()
    assert sorted(set(api) - set(documented)) == [], "endpoints missing from the README's API tables"
    assert sorted(set(documented) - set(api)) == [], "README rows for endpoints the app does not have"


def test_parameter_names_and_optional_flags_match_the_readme(api):
    for endpoint, row in readme_endpoints().items():
        parameters = api[endpoint]["parameters"]
        assert [p["parameter_name"] for p in parameters] == row["required"] + row["optional"], endpoint
        optional = [p["parameter_name"] for p in parameters if p["parameter_has_default"]]
        assert optional == row["optional"], f"{endpoint}: optional parameters differ from the README"


def test_outputs_are_named_as_in_the_readme_without_generated_or_repeated_names(api):
    for endpoint, info in api.items():
        names = [r["label"] for r in info["returns"]]
        generated = [n for n in names if re.fullmatch(r"value_\d+|\d+(st|nd|rd|th)", n)]
        assert generated == [], f"{endpoint} has unnamed outputs"
        assert len(set(names)) == len(names), f"{endpoint} repeats an output name: {names}"
        assert names == readme_endpoints()[endpoint]["returns"], endpoint


def test_free_text_inputs_are_not_typed_as_a_closed_list(api):
    for endpoint, info in api.items():
        for p in info["parameters"]:
            assert "Literal[]" not in p["python_type"]["type"], f"{endpoint} {p['parameter_name']}"
    for endpoint, names in FREE_TEXT.items():
        types = {p["parameter_name"]: p["python_type"]["type"] for p in api[endpoint]["parameters"]}
        for name in names:
            assert "Literal" not in types[name] and "str" in types[name], f"{endpoint} {name}: {types[name]}"
    model = next(p for p in api["/generate_image"]["parameters"] if p["parameter_name"] == "model")
    assert "'flux-schnell'" in model["python_type"]["description"]  # the catalog is still shown, as examples


def test_choices_among_numbers_are_typed_as_numbers(api):
    types = {(endpoint, p["parameter_name"]): (p["python_type"]["type"], p["type"].get("type"))
             for endpoint, info in api.items() for p in info["parameters"]}
    assert types["/history_dashboard", "days"] == ("Literal[7, 30, 365, 0]", "integer")
    assert types["/history", "per_page"] == ("Literal[24, 48, 96, 200]", "integer")
    assert types["/upscale_image", "scale"] == ("Literal[2, 4]", "integer")
    assert types["/create_dataset", "size"] == ("int", "integer")  # any size, the usual ones as examples


def test_parameter_names_are_the_cli_flags(api):
    from masuka.cli import build_parser

    for endpoint, command in CLI_TWINS.items():
        parser = build_parser()
        for name in command:
            parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        flags = {action.dest for action in parser._actions}
        unknown = [p["parameter_name"] for p in api[endpoint]["parameters"]
                   if p["parameter_name"] not in flags and CLI_NAMES.get(p["parameter_name"]) not in flags]
        assert unknown == [], f"{endpoint} parameters without a `{' '.join(command)}` flag"
