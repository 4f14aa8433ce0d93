"""Launching the app: local, a Gradio share link, or an ngrok tunnel; auth on the UI and the API."""

from __future__ import annotations

import copy
import gc
import hmac
import ipaddress
import json
import logging
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masuka.config import Config, names_auth_file, on_space, public_space, server_host
from masuka.errors import InvalidInput, reason

log = logging.getLogger(__name__)


def check_login(config: Config):
    """Gradio auth callback comparing in constant time."""

    def login(user: str, password: str) -> bool:
        expected = config.users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    return login


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.x, ``::1``); a name that is not an address is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def public_warning(config: Config, host: str, share: bool, ngrok: bool) -> str | None:
    """What to warn about an app others can reach without signing in; on a Hugging Face Space (public on the
    internet, every visitor the studio's admin) :class:`InvalidInput` unless ``MASUKA_PUBLIC_SPACE=1`` says so."""
    if config.users:
        return None
    if on_space():
        if not public_space():
            raise InvalidInput("This Space has no sign-in, so every visitor would be its admin: add the secret "
                               "MASUKA_AUTH (user:password) in the Space's settings (or MASUKA_PUBLIC_SPACE=1 for a "
                               "deliberately public demo).")
        return ("WARNING: MASUKA_PUBLIC_SPACE=1: this Space is open to everyone on the internet without a password. "
                "Every visitor shares one studio as its admin: sees all History, can save or replace API keys, change "
                "defaults and clean storage. Set the MASUKA_AUTH secret to require sign-in.")
    if config.api_open:
        return ("WARNING: --api-open without --auth: anyone who can reach this app can use its REST APIs "
                "(/sdapi/v1, /v1/images) and your GPU. Set --auth user:password or MASUKA_AUTH.")
    if share or ngrok:
        return ("WARNING: this app is reachable from the internet without a password. Anyone with the link can "
                "use your GPU and see your images. Set --auth user:password or MASUKA_AUTH.")
    if not is_loopback(host):
        return (f"WARNING: listening on {host or 'all interfaces'} without auth: anyone who can reach this address "
                "(your network, or more) can use this app. Set --auth user:password or MASUKA_AUTH.")
    return None


def sign_in_line(config: Config) -> str | None:
    """How many accounts may sign in, for the start-up log: a password with a comma split into an account nobody
    meant (``alice:pa,ss:word`` is two) shows in the count; names are not logged (``ss`` is part of a password)."""
    if not config.users:
        return None
    return f"Sign-in for {len(config.users)} user(s)."


def admin_warning(config: Config) -> str | None:
    """A warning for a studio with users and no admin: nobody can use the admin parts of Settings."""
    if not config.users or config.admins:
        return None
    return ("WARNING: no admin: API keys, storage, sign-ins and studio defaults in Settings are unavailable to "
            "everyone. Name one with MASUKA_ADMINS=user (a user of MASUKA_AUTH), or call a user 'admin'.")


def sign_in_message(config: Config) -> str:
    """The sign-in page's text, with the lockout rule: Gradio's page says only "incorrect credentials" for a try
    refused by :class:`~masuka.guards.ThrottledLogin`, even one with the right password."""
    return (f"MASUKA: sign in. After {config.login_attempts} wrong passwords in a row, the account and the address "
            f"wait {config.login_lockout_s:g} s before the next try, which until then is refused as incorrect "
            "even with the right password.")


def command_line_auth_warning(spec: str | None) -> str | None:
    """A warning when passwords were typed on the command line, where ``ps`` shows them to every local user (a
    file's name, or anything without a ``:``, holds none)."""
    if not spec or names_auth_file(spec) or ":" not in spec:
        return None
    return ("WARNING: passwords given with --auth user:password are visible to everyone on this machine (ps, "
            "shell history). Put one user:password a line in a file readable only by you and use --auth @file, "
            "or set MASUKA_AUTH.")


def ngrok_token(config: Config) -> str:
    """The ngrok token from NGROK_AUTHTOKEN or the Settings key store, else a clear error."""
    from masuka.key_store import KeyStore
    from masuka.services import NGROK

    token = KeyStore(config.data_dir).get(NGROK)
    if not token:
        raise InvalidInput("--ngrok needs an ngrok auth token: set NGROK_AUTHTOKEN (free at "
                           "https://dashboard.ngrok.com/get-started/your-authtoken) or save it in Settings.")
    return token


def open_ngrok_tunnel(token: str, port: int, folder: Path) -> str:
    """Open a pyngrok tunnel to the local ``port`` and return its public URL; :class:`InvalidInput` when it cannot
    open (ngrok not installable offline, a refused token, a binary that does not run).

    The token never goes on ngrok's command line (``ps`` shows that to every local user): it is in a config file
    readable only by us (in ``folder``), removed once ngrok has started. ngrok's own log lines (which can quote
    the token) are not logged."""
    from pyngrok import conf, ngrok
    from pyngrok.exception import PyngrokError

    logging.getLogger("pyngrok").setLevel(logging.CRITICAL)
    handle, path = tempfile.mkstemp(prefix="ngrok-", suffix=".yml", dir=folder)  # 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(f'version: "3"\nagent:\n  authtoken: {json.dumps(token)}\n')
        settings = copy.copy(conf.get_default())
        settings.config_path, settings.auth_token = path, None  # None: not even NGROK_AUTHTOKEN as --authtoken
        return ngrok.connect(port, "http", pyngrok_config=settings).public_url
    except (PyngrokError, OSError) as error:
        raise InvalidInput(f"the ngrok tunnel could not open: {str(error).replace(token, '<token>')}") from None
    finally:
        os.unlink(path)


def check_share_link(share: bool, share_url: str | None) -> None:
    """:class:`InvalidInput` when a share link was asked for and none came back (Gradio says why on stderr and
    serves on): an app nobody outside can reach, which would distrust this computer's own API calls as a
    tunnel's."""
    if share and not share_url:
        raise InvalidInput("the share link could not open (no internet?): see Gradio's message above, or start "
                           "without --share (or with --ngrok).")


def cannot_listen(host: str, port: int, error: OSError) -> InvalidInput:
    """The one line for an address the app cannot listen on, with the system's reason."""
    return InvalidInput(f"cannot listen on {host}:{port} ({reason(error)})")


def check_listen(host: str, port: int) -> None:
    """:class:`InvalidInput` when the app could not listen on ``host``:``port`` (a port in use, a host that is not
    an address of this machine; the command line has checked the port's range): said before anything starts, and
    at once (the server would wait 5 s to give up on a host it cannot bind)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]") or None, port,
                                                             type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket
            probe.bind(address)
    except OSError as error:
        raise cannot_listen(host, port, error) from None


@dataclass
class Running:
    """A served app: its Blocks, its studio, its local URL and its queue worker."""

    demo: Any
    studio: Any
    url: str
    worker: Any

    def close(self) -> None:
        """Stop serving, then the queue worker (its running job is left ``interrupted``, as a restart finds it),
        then the studio: an app launched again in this process resumes the job."""
        self.demo.close()
        self.worker.stop()
        self.studio.close()


def launch(config: Config, host: str = "127.0.0.1", port: int = 7860, share: bool = False, ngrok: bool = False,
           block: bool = True) -> Running:
    """Build the UI and serve it; blocks until stopped unless ``block`` is False.

    A blocking launch owns its process (an embedded one, in tests or a notebook, leaves the host's garbage
    collection alone), so what exists before and after the UI is built (modules, the studio, the
    UI) is moved out of the garbage collector's reach (``gc.freeze``): it lives as long as the server, and a full
    collection then walks only newer objects: on a 2-core machine 8 ms instead of about 70 ms, a pause that fell
    on the first page and then on random requests. Work that loads models (queued jobs, the Space's model)
    starts after that, so no model is frozen.

    What can refuse the start (an address it cannot listen on, a Space without sign-in, ``--ngrok`` without a
    token) is checked before Gradio is imported, and the warnings printed: a refusal comes in a second, not after
    the seconds that import takes."""
    check_listen(host, port)
    for line in (public_warning(config, host, share, ngrok), sign_in_line(config), admin_warning(config)):
        if line:
            print(line, file=sys.stderr)
    token = ngrok_token(config) if ngrok else None  # a missing token fails before the server starts
    import gradio as gr
    from starlette.middleware import Middleware

    from masuka.api import mount_api
    from masuka.guards import (
        OwnFilesOnly,
        OwnSessions,
        ReadableJoins,
        SessionOwners,
        ThrottledLogin,
        guard_queue,
        proxies_in_front,
    )
    from masuka.image.space_model import prepare_space
    from masuka.off_list import retire_off_list
    from masuka.page_compression import CompressedPages
    from masuka.queue.worker import QueueWorker
    from masuka.studio import Studio
    from masuka.ui.app import build_app

    studio = Studio.open(config)
    retire_off_list(studio)  # before any worker or runner takes up their queued work, or the API their tokens
    if block:
        gc.freeze()
    demo = build_app(studio)
    if block:  # before any model loads: a frozen model would never be collected once evicted (cycles)
        gc.freeze()
    worker = QueueWorker(studio).start()  # works queued image jobs in the background (masuka.queue)
    prepare_space(studio)  # on ZeroGPU: the Space's model placed at start-up (a no-op elsewhere)
    # video jobs a gone process left are taken up (now and every few seconds); training runs, local videos and
    # downloads left queued by the last start run now
    studio.runner().adopt()
    gr.set_static_paths(config.served_dirs)
    proxies = proxies_in_front(config, tunnel=share or ngrok)
    owners = SessionOwners()  # of sessions and events: the middleware checks what the queue records
    try:
        server_app, local_url, share_url = demo.launch(
            server_name=host, server_port=port, share=share, auth=check_login(config) if config.users else None,
            auth_message=sign_in_message(config), allowed_paths=list(map(str, config.served_dirs)),
            prevent_thread_lock=True, show_error=True, quiet=True, footer_links=["api", "gradio"],
            max_file_size=config.max_upload_mb * 2**20,
            enable_monitoring=False,  # Gradio's /monitoring counts every user's calls, for anyone signed in to see
            app_kwargs={"middleware": [Middleware(ThrottledLogin, throttle=studio.logins, proxies=proxies),
                                       Middleware(OwnFilesOnly, studio=studio),
                                       Middleware(OwnSessions, config=config, owners=owners),
                                       Middleware(ReadableJoins), Middleware(CompressedPages)]},
        )
    except OSError as error:  # the port taken since check_listen (another app starting at the same time)
        Running(demo, studio, "", worker).close()
        raise cannot_listen(host, port, error) from None
    try:
        check_share_link(share, share_url)
    except InvalidInput:
        Running(demo, studio, "", worker).close()
        raise
    guard_queue(demo, config, studio.stops, owners)
    mount_api(server_app, studio, proxies, trust_loopback=not (share or ngrok))
    print(f"* MASUKA is running on {local_url}", flush=True)  # Gradio's own lines would hint at share=True
    if share_url:
        print(f"* Public link: {share_url}", flush=True)
    running = Running(demo, studio, local_url, worker)
    if token:
        try:
            print(f"ngrok tunnel: {open_ngrok_tunnel(token, port, config.tmp_dir)}", flush=True)
        except InvalidInput:
            running.close()
            raise
    if not (share or ngrok or on_space()):  # a Space has its own public address
        print("* For a public link, start MASUKA with --share (or --ngrok).", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            worker.stop()
            studio.close()
    return running


def default_host() -> str:
    return server_host()
