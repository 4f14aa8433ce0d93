"""History tab: recent generations with their parameters and files."""

from __future__ import annotations

import gradio as gr

from masuka.history import recent_generations
from masuka.ui.common import UIContext, is_admin, user_of

COLUMNS = ["id", "created", "status", "model", "prompt", "seed", "size", "steps", "guidance", "LoRAs", "error"]
PAGE = 48


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    with gr.Row():
        refresh = gr.Button("Refresh", scale=0)
        page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=0, min_width=100)
    gallery = gr.Gallery(label="Recent images", columns=6, height=320, interactive=False)
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True)

    def load(page_number: float, request: gr.Request):
        offset = (max(1, int(page_number or 1)) - 1) * PAGE
        rows = recent_generations(studio, user_of(request), is_admin(studio, request), limit=PAGE, offset=offset)
        images = [(str(r["file"]), f"#{r['id']} seed {r['seed']}") for r in rows if r["file"]]
        data = [[r["id"], (r["created_at"] or "")[:19].replace("T", " "), r["status"], r["model"], r["prompt"],
                 r["seed"], f"{r['width']}x{r['height']}", r["steps"], r["guidance"],
                 ", ".join(f"{x['name']}:{x['weight']:g}" for x in r["loras"] or []),
                 r["error"] or ("file missing" if r["output_path"] and not r["file"] else "")] for r in rows]
        return images, data

    refresh.click(load, page, [gallery, table], api_name="history")
    page.submit(load, page, [gallery, table], api_visibility="private")
    ctx.components["history_load"] = (load, page, [gallery, table])
