"""``python -m masuka settings``: show or change the Settings tab's studio-wide settings (the local user is the
admin): ``settings aids`` (generation aids) and ``settings defaults`` (defaults for new images)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace

from masuka.cli import emit, local_or_named, open_studio

#: ``settings aids`` options and the :class:`masuka.image.aid_settings.AidSettings` field each sets
AID_OPTIONS = {"prompt_llm": "local instruct LLM of the prompt optimizer (repo id or folder)",
               "prompt_llm_url": "OpenAI-compatible chat endpoint's base URL ('' = the local LLM)",
               "prompt_llm_model": "model name sent to the chat endpoint",
               "safety_model": "image classifier of the safety check (repo id or folder)",
               "face_restore_model": "GFPGAN-class model file run after face detail ('' = none)"}
#: ``settings defaults`` options and the :func:`masuka.image.defaults.save_defaults` argument each sets
DEFAULT_OPTIONS = {"model": "model id ('' = none)", "steps": "steps (0 = the model's)",
                   "width": "width in px (0 = the model's)", "height": "height in px (0 = the model's)"}


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.image.aid_settings import SAFETY_ACTIONS
    from masuka.image.defaults import FORMATS

    parser = sub.add_parser("settings", parents=[common], help="studio settings")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    aids = actions.add_parser("aids", parents=[common], help="show the generation aids' settings; options change them",
                              description="Without options: show. With options: change those, check and save.")
    for name, text in AID_OPTIONS.items():
        aids.add_argument(f"--{name.replace('_', '-')}", dest=name, help=text)
    aids.add_argument("--safety-action", choices=list(SAFETY_ACTIONS), help="what happens to a flagged image")
    aids.add_argument("--safety-threshold", type=float, help="an image is flagged when its nsfw score reaches this "
                                                             "(above 0, at most 1)")
    aids.add_argument("--safety-mandatory", action=argparse.BooleanOptionalAction,
                      help="check every image of every user, whatever the request says")
    aids.set_defaults(handler=run_aids)

    defaults = actions.add_parser("defaults", parents=[common], help="show the defaults for new images; options "
                                  "change them", description="Without options: show. With options: change those, "
                                                             "check and save.")
    defaults.add_argument("--model", type=local_or_named, help=DEFAULT_OPTIONS["model"])
    for name in ("steps", "width", "height"):
        defaults.add_argument(f"--{name}", type=int, help=DEFAULT_OPTIONS[name])
    defaults.add_argument("--format", dest="output_format", choices=FORMATS, help="file format of new images")
    defaults.set_defaults(handler=run_defaults)


def _given(args: argparse.Namespace, names) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run_aids(args: argparse.Namespace) -> int:
    from masuka.image.aid_settings import load_aid_settings, save_aid_settings

    config = open_studio(args).config
    settings = load_aid_settings(config)
    changes = _given(args, [*AID_OPTIONS, "safety_action", "safety_threshold", "safety_mandatory"])
    if changes:
        settings = save_aid_settings(config, replace(settings, **changes))
    shown = asdict(settings)
    emit(args, shown, ("saved; they apply to the next image\n" if changes else "")
         + "\n".join(f"{k}: {v}" for k, v in shown.items()))
    return 0


def run_defaults(args: argparse.Namespace) -> int:
    from masuka.image.defaults import load_defaults, save_defaults, space_note

    config = open_studio(args).config
    defaults = load_defaults(config)
    changes = _given(args, [*DEFAULT_OPTIONS, "output_format"])
    if changes:
        defaults = save_defaults(config, **(asdict(defaults) | changes))
    shown = asdict(defaults)
    saved = ["saved", space_note(defaults)] if changes else []  # the note: "" off ZeroGPU
    lines = [f"{k}: {v if v not in (None, '') else '-'}" for k, v in shown.items()]
    emit(args, shown, "\n".join(filter(None, [*saved, *lines])))
    return 0
