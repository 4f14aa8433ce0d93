"""Settings tab: API keys (masked, with a check), your tokens for MASUKA's REST APIs, defaults for new images,
disk use with clean-up, and the forgetting of users taken off the sign-in list."""

from __future__ import annotations

import gradio as gr

from masuka.api.auth import create_token, list_tokens, revoke_token
from masuka.disk import clean_leftovers, clean_tmp, usage, usage_by_user
from masuka.errors import InvalidInput, MasukaError
from masuka.forget_user import described, forget_user
from masuka.image.defaults import FORMATS, load_defaults, save_defaults, space_note
from masuka.image.generate import image_spec
from masuka.keys import check_key, key_labels, key_renewed, key_table, save_key
from masuka.models.catalog import image_models
from masuka.off_list import former_users
from masuka.studio import Studio
from masuka.ui import wildcards
from masuka.ui.aids import build_settings as build_aid_settings
from masuka.ui.common import UIContext, bind, friendly, is_admin, user_of

KEY_COLUMNS = ["key", "set from", "value", "environment variable"]
STORAGE_COLUMNS = ["area", "folder", "files", "GB"]
USERS_STORAGE_COLUMNS = ["user", "files", "GB"]
TOKEN_COLUMNS = ["id", "name", "starts with", "made", "last used"]
SIGN_IN_COLUMNS = ["kind", "name", "failed sign-ins", "locked for (s)"]
#: the defaults that pre-fill the Image tab's fields of the same names when the page opens
IMAGE_FIELDS = ("model", "steps", "guidance", "width", "height")
#: what a user who is not an admin sees above the studio's own settings
ADMINS_ONLY = "**Admins only.** These are the studio's settings: only its admins see and change them."


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    with gr.Tabs():
        with gr.Tab("API keys"):
            _api_keys(ctx)
        with gr.Tab("API tokens"):
            _api_tokens(ctx)
        with gr.Tab("Defaults"):
            _defaults(ctx)
        with gr.Tab("Storage"):
            _storage(ctx)
        with gr.Tab("Sign-ins"):
            gr.Markdown("Failed sign-ins per account and per address (admins only). After "
                        f"{studio.config.login_attempts} in a row, each waits {studio.config.login_lockout_s:g} s "
                        "per further try.")
            sign_ins_table = gr.Dataframe(headers=SIGN_IN_COLUMNS, interactive=False, label="Failed sign-ins",
                                          show_label=False)
            sign_ins = gr.Button("Refresh")
            _admins_only(ctx, sign_ins)
        with gr.Tab("Generation aids"):
            _admins_only(ctx, *build_aid_settings(ctx, bind(require_admin, studio)))
        with gr.Tab("Wildcards") as wildcards_tab:
            _admins_only(ctx, *wildcards.build(ctx, wildcards_tab))
    sign_ins.click(bind(sign_ins_view, studio), None, sign_ins_table, api_name="sign_ins")


def _api_keys(ctx: UIContext) -> None:
    studio = ctx.studio
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
    _admins_only(ctx, name, value, save, test)
    save.click(bind(save_api_key, studio), [name, value], [key_message, value, keys_table], api_name="save_key",
               show_progress_on=key_message)  # a refusal marks the message, not the table
    test.click(bind(test_api_key, studio), name, key_message, api_name="test_key")
    ctx.on_page_load(bind(keys_view, studio), keys_table)


def _api_tokens(ctx: UIContext) -> None:
    studio = ctx.studio
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
    token_message = gr.Markdown(label="Message")
    refused_here = {"show_progress_on": token_message}  # a refusal marks the message, not the table or the boxes
    make_token.click(bind(create_api_token, studio), token_name, [new_token, token_name, tokens_table],
                     api_name="create_api_token", **refused_here)
    drop_token.click(bind(revoke_api_token, studio), token_ref, [token_message, token_ref, new_token, tokens_table],
                     api_name="revoke_api_token", **refused_here)
    ctx.on_page_load(bind(tokens_view, studio), tokens_table)


def _defaults(ctx: UIContext) -> None:
    """Defaults for new images; they also pre-fill the Image tab when the page opens."""
    studio, models = ctx.studio, image_models()
    default_model = gr.Dropdown([("(the model's own)", "")] + [(m["name"], k) for k, m in models.items()],
                                allow_custom_value=True, label="Model")
    with gr.Row():
        # whole numbers without precision: Gradio would round a fraction, which the handlers refuse instead
        steps = gr.Number(label="Steps (0 = the model's)")
        width = gr.Number(label="Width (0 = the model's)")
        height = gr.Number(label="Height (0 = the model's)")
    image_format = gr.Radio(list(FORMATS), value="PNG", label="Image file format (parameters kept in "
                            "the PNG text chunk or the WebP/JPEG EXIF UserComment)")
    save_defaults_button = gr.Button("Save defaults", variant="primary")
    defaults_message = gr.Markdown(label="Message")
    _admins_only(ctx, save_defaults_button)
    fields = [default_model, steps, width, height, image_format]
    save_defaults_button.click(bind(store_defaults, studio), fields, defaults_message, api_name="save_defaults")
    ctx.on_page_load(bind(defaults_view, studio), fields)

    def prefill_image_tab() -> None:
        image = ctx.forms.get("image")
        if image is not None:
            ctx.on_page_load(bind(image_defaults, studio), image.pick(IMAGE_FIELDS))

    ctx.once_built(prefill_image_tab)


def _storage(ctx: UIContext) -> None:
    studio = ctx.studio
    storage_table = gr.Dataframe(headers=STORAGE_COLUMNS, interactive=False, label="Storage", show_label=False)
    with gr.Row():
        measure = gr.Button("Measure")
        leftovers = gr.Button("Remove leftovers (half-written files, failed outputs, orphans, exports)")
        tmp = gr.Button("Empty tmp/ (files older than an hour)")
    storage_message = gr.Markdown(label="Message")
    users_table = gr.Dataframe(headers=USERS_STORAGE_COLUMNS, interactive=False, label="Per user")
    measure.click(bind(storage_view, studio), None, storage_table, api_name="storage").then(
        bind(storage_by_user_view, studio), None, users_table, api_name="storage_by_user")
    leftovers.click(bind(remove_leftovers, studio), None, [storage_message, storage_table],
                    show_progress_on=storage_message,
                    api_name="clean_leftovers")
    tmp.click(bind(empty_tmp, studio), None, [storage_message, storage_table], api_name="clean_tmp",
              show_progress_on=storage_message)
    _admins_only(ctx, measure, leftovers, tmp, *_former_users(ctx))


def _former_users(ctx: UIContext) -> tuple[gr.Dropdown, gr.Button]:
    """Users taken off the sign-in list who still own things, and their forgetting, confirmed first; returns the
    controls only admins use."""
    studio = ctx.studio
    with gr.Accordion("Former users", open=False, visible=studio.config.multi_user):  # none without sign-in
        gr.Markdown("Users taken off the sign-in list who still own things. A person added back under one of these "
                    "names would see them: **Forget** deletes everything the user owns (History with its files, "
                    "training runs, datasets, LoRAs, characters, A/B tests, queue jobs, API tokens).")
        with gr.Row():
            former = gr.Dropdown([], value=None, label="Former user", allow_custom_value=True, scale=4)
            refresh = gr.Button("↻", scale=0, min_width=40)
            forget = gr.Button("Forget this user…", variant="stop", scale=1)
        with gr.Group(visible=False) as confirm:
            confirm_text = gr.Markdown()
            named = gr.State(None)  # the user the confirmation names (None for API callers)
            with gr.Row():
                really = gr.Button("Yes, delete everything they own", variant="stop")
                cancel = gr.Button("Cancel")
        message = gr.Markdown(label="Message")
    private, listed = {"api_visibility": "private"}, bind(former_users_view, studio)
    hide = lambda: gr.Group(visible=False)  # noqa: E731
    forget.click(bind(ask_forget, studio), former, [confirm, confirm_text, named], **private)
    cancel.click(hide, None, confirm, **private)
    former.change(hide, None, confirm, **private)  # the confirmation names the user it was asked for
    really.click(bind(confirm_forget, studio), [former, named], message, api_name="forget_user",
                 show_progress_on=message).then(hide, None, confirm, **private).then(listed, None, former, **private)
    ctx.picker(listed, former, refresh)
    return former, forget


def _admins_only(ctx: UIContext, *controls: gr.components.Component) -> None:
    """The :data:`ADMINS_ONLY` note, shown to a user who is not an admin when the page opens, with ``controls``
    (of the studio's settings) disabled for them."""
    note = gr.Markdown(ADMINS_ONLY, visible=False)
    ctx.on_page_load(bind(admin_panel, ctx.studio, len(controls)), [note, *controls])


def admin_panel(studio: Studio, controls: int, request: gr.Request) -> list:
    """The note's visibility and the ``controls`` usable, for this user: the note for a non-admin only."""
    admin = is_admin(studio, request)
    return [gr.update(visible=not admin), *[gr.update(interactive=admin)] * controls]


def require_admin(studio: Studio, request: gr.Request, what: str = "change studio settings") -> None:
    """:class:`InvalidInput` unless the user is an admin; ``what``: what they asked to do."""
    if not is_admin(studio, request):
        raise InvalidInput(f"Only an admin can {what} when several people share the studio.")


def keys_view(studio: Studio, request: gr.Request):
    """The keys, masked, for admins; nobody else sees even the masked form."""
    if not is_admin(studio, request):
        return []
    return [[row["label"], row["source"], row["masked"], row["env"]] for row in key_table(studio.keys)]


@friendly
def save_api_key(studio: Studio, name: str, value: str, request: gr.Request):
    """Save (or forget) an API key; the answer shows it masked."""
    require_admin(studio, request)
    message = save_key(studio.keys, name, value)
    key_renewed(studio.store, studio.keys, name)  # models its provider refused to this key are asked for again
    return message, "", keys_view(studio, request)


@friendly
def test_api_key(studio: Studio, name: str, request: gr.Request):
    """Make one cheap authenticated request with the key and report the outcome."""
    require_admin(studio, request)
    ok, message = check_key(studio.keys, name)
    key_renewed(studio.store, studio.keys, name)  # models its provider refused to this key are asked for again
    return ("✅ " if ok else "❌ ") + message


def tokens_view(studio: Studio, request: gr.Request):
    rows = list_tokens(studio, user_of(request))
    return [[r["id"], r["name"], r["prefix"] + "…", r["created_at"][:16], (r["last_used_at"] or "never")[:16]]
            for r in rows]


@friendly
def create_api_token(studio: Studio, name: str, request: gr.Request):
    """Make an API token for the signed-in user; it is shown this once."""
    return create_token(studio, user_of(request), name), "", tokens_view(studio, request)


@friendly
def revoke_api_token(studio: Studio, ref: str, request: gr.Request):
    """Revoke one of the signed-in user's API tokens by id or name, saying which; the new-token box is emptied."""
    row = revoke_token(studio, user_of(request), ref)
    return f"Revoked token {row['id']} ({row['name']}).", "", "", tokens_view(studio, request)


def defaults_view(studio: Studio):
    saved = load_defaults(studio.config)
    return saved.model, saved.steps, saved.width, saved.height, saved.output_format


def image_defaults(studio: Studio, request: gr.Request = None):
    """The Image tab's :data:`IMAGE_FIELDS` on a page load: a saved default model with its own steps, guidance and
    size wherever no default of those is saved (the page's opening model's would stay otherwise); without a saved
    model (or one the user may not use), the saved values alone, the rest left as it is."""
    saved = vars(load_defaults(studio.config))
    own: dict[str, object] = {}
    if saved["model"]:
        try:
            spec = image_spec(studio, user_of(request), saved["model"])
            own = {"steps": spec.steps, "guidance": spec.guidance, "width": spec.width, "height": spec.height}
        except MasukaError:
            pass
    values = {field: saved.get(field) or own.get(field) for field in IMAGE_FIELDS}
    values["guidance"] = own.get("guidance")  # 0 is a model's own guidance (CFG off), not "none saved"
    return [gr.skip() if value is None else value for value in values.values()]


@friendly
def store_defaults(studio: Studio, model: str, steps: float | None = None, width: float | None = None,
                   height: float | None = None, image_format: str = "PNG", request: gr.Request = None):
    """Check and save the defaults for new images."""
    require_admin(studio, request)
    saved = save_defaults(studio.config, model or "", steps, width, height, image_format)
    return " ".join(filter(None, ["Defaults saved: new images use them from the next page load.", space_note(saved)]))


@friendly
def storage_view(studio: Studio, request: gr.Request):
    """Disk use per area (absolute folders, every user's files): admins only."""
    require_admin(studio, request, "see the studio's disk use")
    return [[row["area"], row["path"], row["files"], round(row["bytes"] / 2**30, 3)] for row in usage(studio)]


def former_users_view(studio: Studio, request: gr.Request):
    """The users off the sign-in list who still own things, with how many, for admins (nobody else sees them)."""
    owned = former_users(studio) if is_admin(studio, request) else {}
    return gr.Dropdown(choices=[(f"{user} ({count} item(s))", user) for user, count in owned.items()], value=None)


@friendly
def ask_forget(studio: Studio, user: str, request: gr.Request):
    """The confirmation shown, its question, and the user it names (whom Yes forgets)."""
    require_admin(studio, request, "forget a user")
    count = former_users(studio).get(user or "")
    if count is None:
        raise InvalidInput("Pick a user off the sign-in list who still owns things (↻ lists them)." if not user else
                           f"{user!r} owns nothing here or is on the sign-in list: there is nothing to forget.")
    return gr.Group(visible=True), (f"Delete everything **{user}** owns ({count} item(s)) with its files? This "
                                    "cannot be undone."), user


@friendly
def confirm_forget(studio: Studio, user: str, named: str | None = None, request: gr.Request = None) -> str:
    """Forget ``user``: delete everything they own. ``named`` (the page's confirmation: the user it asked about) is
    forgotten only while the picker still shows them."""
    require_admin(studio, request, "forget a user")
    if named is not None and named != user:
        raise InvalidInput(f"This confirmation was for {named!r}, who is no longer picked: nothing was deleted. "
                           "Pick the user and click “Forget this user…” again.")
    if not user:
        raise InvalidInput("Pick the user to forget.")
    gone = forget_user(studio, user)
    return f"Forgot **{user}**: deleted {described(gone)}."


@friendly
def storage_by_user_view(studio: Studio, request: gr.Request):
    """Disk use per owner of users' files (those taken off the sign-in list too): admins only."""
    require_admin(studio, request, "see the studio's disk use")
    return [[row["user"], row["files"], round(row["bytes"] / 2**30, 3)] for row in usage_by_user(studio)]


@friendly
def sign_ins_view(studio: Studio, request: gr.Request):
    """Accounts and addresses with recent failed sign-ins, and how long each is still locked out."""
    require_admin(studio, request, "see failed sign-ins")
    return [[row["kind"], row["name"], row["failures"], row["locked_for_s"]] for row in studio.logins.status()]


@friendly
def remove_leftovers(studio: Studio, request: gr.Request):
    """Delete outputs of failed generations, and half-written files, unrecorded images and exports untouched for
    an hour (newer ones may belong to work in progress)."""
    require_admin(studio, request)
    removed, freed = clean_leftovers(studio)
    return f"Removed {removed} file(s), {freed / 2**20:.1f} MB.", storage_view(studio, request)


@friendly
def empty_tmp(studio: Studio, request: gr.Request):
    """Delete what has been in tmp/ for more than an hour."""
    require_admin(studio, request)
    removed, freed = clean_tmp(studio)
    return f"Removed {removed} item(s), {freed / 2**20:.1f} MB.", storage_view(studio, request)
