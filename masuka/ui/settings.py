"""Settings tab: API keys (masked, with a check), your tokens for MASUKA's REST APIs, defaults for new images,
and disk use with clean-up."""

from __future__ import annotations

import gradio as gr

from masuka.api.auth import create_token, list_tokens, revoke_token
from masuka.errors import InvalidInput
from masuka.models.catalog import image_models
from masuka.settings import FORMATS, check_key, key_labels, key_table, load_defaults, save_defaults, save_key
from masuka.storage import clean_leftovers, clean_tmp, usage
from masuka.ui import wildcards
from masuka.ui.aids import build_settings as build_aid_settings
from masuka.ui.common import UIContext, friendly, is_admin, user_of

KEY_COLUMNS = ["key", "set from", "value", "environment variable"]
STORAGE_COLUMNS = ["area", "folder", "files", "GB"]
TOKEN_COLUMNS = ["id", "name", "starts with", "made", "last used"]
SIGN_IN_COLUMNS = ["kind", "name", "failed sign-ins", "locked for (s)"]
#: the defaults that pre-fill the Image tab's fields of the same names when the page opens
IMAGE_FIELDS = ("model", "steps", "width", "height")


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    config = studio.config
    with gr.Tabs():
        with gr.Tab("API keys"):
            gr.Markdown("Keys are kept in `secrets.json` in the data dir, readable by its owner only, and shown "
                        "here masked. Environment variables win over saved keys.")
            keys_table = gr.Dataframe(headers=KEY_COLUMNS, interactive=False, label="Keys", show_label=False)
            with gr.Row():
                name = gr.Dropdown([(label, key) for key, label in key_labels().items()], value="huggingface",
                                   label="Key", scale=1)
                value = gr.Textbox("", label="New value (empty = forget)", type="password", scale=3)
                save = gr.Button("Save", variant="primary", scale=0)
                test = gr.Button("Test", scale=0)
            key_message = gr.Markdown(label="Message")
        with gr.Tab("API tokens"):
            gr.Markdown("Tokens let other tools use MASUKA's AUTOMATIC1111 (`/sdapi/v1`) and OpenAI (`/v1/images`) "
                        "APIs as you, with `Authorization: Bearer <token>`. A new token is shown once; only its "
                        "hash is kept.")
            tokens_table = gr.Dataframe(headers=TOKEN_COLUMNS, interactive=False, label="Tokens", show_label=False)
            with gr.Row():
                token_name = gr.Textbox(label="Name (e.g. laptop, krita)", scale=2)
                make_token = gr.Button("Create token", variant="primary", scale=0)
                token_ref = gr.Textbox(label="Token to revoke (id or name)", scale=2)
                drop_token = gr.Button("Revoke", variant="stop", scale=0)
            new_token = gr.Textbox(label="New token", info="Copy it now: it is not shown again", interactive=False,
                                   buttons=["copy"])
        with gr.Tab("Defaults"):
            models = image_models()
            default_model = gr.Dropdown([("(the model's own)", "")] + [(m["name"], k) for k, m in models.items()],
                                        allow_custom_value=True, label="Model")
            with gr.Row():
                steps = gr.Number(label="Steps (empty = the model's)", precision=0)
                width = gr.Number(label="Width", precision=0)
                height = gr.Number(label="Height", precision=0)
            image_format = gr.Radio(list(FORMATS), value="PNG", label="Image file format (parameters kept in "
                                    "the PNG text chunk or the WebP/JPEG EXIF UserComment)")
            save_defaults_button = gr.Button("Save defaults", variant="primary")
            defaults_message = gr.Markdown(label="Message")
        with gr.Tab("Storage"):
            storage_table = gr.Dataframe(headers=STORAGE_COLUMNS, interactive=False, label="Storage", show_label=False)
            with gr.Row():
                measure = gr.Button("Measure")
                leftovers = gr.Button("Remove leftovers (half-written files, failed outputs, orphans, exports)")
                tmp = gr.Button("Empty tmp/ (files older than an hour)")
            storage_message = gr.Markdown(label="Message")
        with gr.Tab("Sign-ins"):
            gr.Markdown("Failed sign-ins per account and per address (admins only). After "
                        f"{config.login_attempts} in a row, each waits {config.login_lockout_s:g} s per further try.")
            sign_ins_table = gr.Dataframe(headers=SIGN_IN_COLUMNS, interactive=False, label="Failed sign-ins",
                                          show_label=False)
            sign_ins = gr.Button("Refresh")
        with gr.Tab("Generation aids"):
            build_aid_settings(ctx, lambda request: require_admin(request))
        with gr.Tab("Wildcards") as wildcards_tab:
            wildcards.build(ctx, wildcards_tab)

    def require_admin(request: gr.Request) -> None:
        if not is_admin(studio, request):
            raise InvalidInput("Only an admin can change studio settings when several people share it.")

    def keys_view(request: gr.Request):
        """The keys, masked, for admins; nobody else sees even the masked form."""
        if not is_admin(studio, request):
            return []
        return [[row["label"], row["source"], row["masked"], row["env"]] for row in key_table(config)]

    @friendly
    def save_api_key(name: str, value: str, request: gr.Request):
        """Save (or forget) an API key; the answer shows it masked."""
        require_admin(request)
        return save_key(config, name, value), "", keys_view(request)

    @friendly
    def test_api_key(name: str, request: gr.Request):
        """Make one cheap authenticated request with the key and report the outcome."""
        require_admin(request)
        ok, message = check_key(config, name)
        return ("✅ " if ok else "❌ ") + message

    def tokens_view(request: gr.Request):
        rows = list_tokens(studio, user_of(request))
        return [[r["id"], r["name"], r["prefix"] + "…", r["created_at"][:16], (r["last_used_at"] or "never")[:16]]
                for r in rows]

    @friendly
    def create_api_token(name: str, request: gr.Request):
        """Make an API token for the signed-in user; it is shown this once."""
        return create_token(studio, user_of(request), name), "", tokens_view(request)

    @friendly
    def revoke_api_token(ref: str, request: gr.Request):
        """Revoke one of the signed-in user's API tokens by id or name."""
        revoke_token(studio, user_of(request), ref)
        return "", tokens_view(request)

    def defaults_view():
        saved = load_defaults(config)
        return saved.model, saved.steps, saved.width, saved.height, saved.output_format

    @friendly
    def store_defaults(model: str, steps: float | None = None, width: float | None = None,
                       height: float | None = None, image_format: str = "PNG", request: gr.Request = None):
        """Check and save the defaults for new images."""
        require_admin(request)
        save_defaults(config, model or "", steps, width, height, image_format)
        return "Defaults saved: new images use them from the next page load."

    @friendly
    def storage_view(request: gr.Request):
        """Disk use per area (absolute folders, every user's files): admins only."""
        require_admin(request)
        return [[row["area"], row["path"], row["files"], round(row["bytes"] / 2**30, 3)] for row in usage(studio)]

    @friendly
    def sign_ins_view(request: gr.Request):
        """Accounts and addresses with recent failed sign-ins, and how long each is still locked out."""
        require_admin(request)
        return [[row["kind"], row["name"], row["failures"], row["locked_for_s"]] for row in studio.logins.status()]

    @friendly
    def remove_leftovers(request: gr.Request):
        """Delete half-written files, outputs of failed generations, unrecorded images and old exports."""
        require_admin(request)
        removed, freed = clean_leftovers(studio)
        return f"Removed {removed} file(s), {freed / 2**20:.1f} MB.", storage_view(request)

    @friendly
    def empty_tmp(request: gr.Request):
        """Delete what has been in tmp/ for more than an hour."""
        require_admin(request)
        removed, freed = clean_tmp(studio)
        return f"Removed {removed} item(s), {freed / 2**20:.1f} MB.", storage_view(request)

    save.click(save_api_key, [name, value], [key_message, value, keys_table], api_name="save_key")
    test.click(test_api_key, name, key_message, api_name="test_key")
    save_defaults_button.click(store_defaults, [default_model, steps, width, height, image_format], defaults_message,
                               api_name="save_defaults")
    make_token.click(create_api_token, token_name, [new_token, token_name, tokens_table], api_name="create_api_token")
    drop_token.click(revoke_api_token, token_ref, [token_ref, tokens_table], api_name="revoke_api_token")
    measure.click(storage_view, None, storage_table, api_name="storage")
    leftovers.click(remove_leftovers, None, [storage_message, storage_table], api_name="clean_leftovers")
    tmp.click(empty_tmp, None, [storage_message, storage_table], api_name="clean_tmp")
    sign_ins.click(sign_ins_view, None, sign_ins_table, api_name="sign_ins")

    ctx.on_page_load(keys_view, keys_table)
    ctx.on_page_load(tokens_view, tokens_table)
    ctx.on_page_load(defaults_view, [default_model, steps, width, height, image_format])

    def image_defaults():
        saved = vars(load_defaults(config))
        return [saved[field] if saved[field] else gr.skip() for field in IMAGE_FIELDS]

    def prefill_image_tab() -> None:
        image = ctx.forms.get("image")
        if image is not None:
            ctx.on_page_load(image_defaults, image.pick(IMAGE_FIELDS))

    ctx.once_built(prefill_image_tab)
