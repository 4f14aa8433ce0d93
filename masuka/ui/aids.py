"""The generation aids in the UI: their options on the Image tab, what they did shown with the result, and their
studio settings (a Settings sub-tab, admins only)."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from masuka.history.browse import generation_params
from masuka.image.aid_settings import SAFETY_ACTIONS, AidSettings, load_aid_settings, save_aid_settings
from masuka.image.face_detail import MIN_FACE_STRENGTH
from masuka.image.generate import ImageResult, used_prompt
from masuka.image.safety import flag_note
from masuka.studio import Studio
from masuka.ui.common import UIContext, bind, friendly, is_admin


class AidsForm:
    """The Image tab's "Generation aids" options."""

    def __init__(self) -> None:
        with gr.Accordion("Generation aids (prompt optimizer, safety check, face detail)", open=False):
            with gr.Row():
                self.optimize_prompt = gr.Checkbox(False, label="Optimize prompt",
                                                   info="An LLM rewrites the prompt in detail first (Settings)")
                self.safety_check = gr.Checkbox(False, label="Safety check",
                                                info="Flagged images are blurred or withheld (Settings)")
                self.face_detail = gr.Checkbox(False, label="Face detail",
                                               info="Repaint each face at higher resolution")
            self.face_strength = gr.Slider(MIN_FACE_STRENGTH, 1, value=0.4, step=MIN_FACE_STRENGTH,
                                           label="Face detail strength",
                                           info="How far a face may change")


def aid_caption(studio: Studio, result: ImageResult) -> str:
    """What the safety check did to one image, for its gallery caption."""
    note = flag_note(generation_params(studio, result.id).get("safety"))
    return f" · {note}" if note else ""


def aid_summary(studio: Studio, results: list[ImageResult]) -> str:
    """The optimized prompt and the faces detailed, for the status line under the gallery."""
    if not results:
        return ""
    params = generation_params(studio, results[0].id)
    lines = []
    if "original_prompt" in params:
        lines.append(f"**Optimized prompt** ({params['prompt_optimizer']}): {used_prompt(results[0])}")
    if "face_detail" in params:
        faces = sum(len(generation_params(studio, r.id).get("face_detail", {}).get("faces", [])) for r in results)
        restoration = params["face_detail"].get("restoration")
        lines.append(f"Face detail: {faces} face(s) repainted" + (f" (restoration {restoration})." if restoration
                                                                  else "."))
    return "".join(f"\n\n{line}" for line in lines)


def build_settings(ctx: UIContext, require_admin: Callable[[gr.Request], None]) -> list[gr.components.Component]:
    """The "Generation aids" settings (inside the Settings tab), filled when the page opens; returns its fields
    and Save button (only admins use them)."""
    studio = ctx.studio
    gr.Markdown("The prompt optimizer uses an OpenAI-compatible chat endpoint when a URL is set (its key: "
                "**API keys → Prompt optimizer**), else the local LLM. The safety check's classifier is downloaded on "
                "first use.")
    with gr.Row():
        llm = gr.Textbox(label="Local LLM (repo id or folder)", scale=2)
        url = gr.Textbox(label="Chat endpoint URL (empty = the local LLM)", placeholder="https://api.openai.com/v1",
                         scale=2)
        endpoint_model = gr.Textbox(label="Endpoint model", scale=1)
    with gr.Row():
        safety_model = gr.Textbox(label="Safety classifier (repo id or folder)", scale=2)
        threshold = gr.Slider(0.05, 1, step=0.05, label="Flag at score", scale=1)
        action = gr.Radio([(text, name) for name, text in SAFETY_ACTIONS.items()], label="A flagged image", scale=2)
        mandatory = gr.Checkbox(label="Check every image of every user", scale=1,
                                info="For public links: nobody can turn the safety check off")
    restore_model = gr.Textbox("", label="Face restoration model file (GFPGAN-class, used by face detail through "
                                     "spandrel; empty = none)")
    save = gr.Button("Save generation aids", variant="primary")
    message = gr.Markdown(label="Message")
    fields = [llm, url, endpoint_model, safety_model, action, threshold, mandatory, restore_model]  # API order

    save.click(bind(store, studio, require_admin), fields, message, api_name="save_aid_settings")
    ctx.on_page_load(bind(view, studio), fields)
    return [*fields, save]


def view(studio: Studio, request: gr.Request = None):
    """The saved aid settings, in the order of the form, for admins; nobody else sees them (the form stays as
    it is)."""
    saved = load_aid_settings(studio.config)
    values = (saved.prompt_llm, saved.prompt_llm_url, saved.prompt_llm_model, saved.safety_model,
              saved.safety_action, saved.safety_threshold, saved.safety_mandatory, saved.face_restore_model)
    return values if is_admin(studio, request) else tuple(gr.skip() for _value in values)


@friendly
def store(studio: Studio, require_admin: Callable[[gr.Request], None], llm: str, url: str, endpoint_model: str,
          safety_model: str, action: str, threshold: float, mandatory: bool, restore_model: str = "",
          request: gr.Request = None):
    """Check and save the generation aids' settings (admins only)."""
    require_admin(request)
    save_aid_settings(studio.config, AidSettings(llm or "", url or "", endpoint_model or "", safety_model or "",
                                                 float(threshold), action, bool(mandatory), restore_model or ""))
    return "Generation aids saved: they apply to the next image."
