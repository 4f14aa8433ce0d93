"""Forgetting a user taken off the sign-in list, at an admin's request (:func:`forget_user`): everything they own is
deleted, so that a new person added later under the same name starts with nothing of theirs."""

from __future__ import annotations

import shutil

from masuka import jobs
from masuka.characters.library import being_made, delete_character, drop_abandoned
from masuka.datasets.library import delete_dataset
from masuka.errors import InvalidInput
from masuka.history.actions import delete_entries
from masuka.image.compare import delete_comparison
from masuka.loras.library import delete_lora, lora_folder
from masuka.off_list import cancel_off_list_jobs
from masuka.store import LOCAL_USER, QUEUE_UNFINISHED, UNFINISHED
from masuka.studio import Studio
from masuka.training.runs import still_runs_at
from masuka.users import on_sign_in_list, output_dir

#: what a user owns, by the key :func:`forget_user` counts it under: (one, several)
PARTS = {"queue_jobs": ("queue job", "queue jobs"), "ab_tests": ("A/B test", "A/B tests"),
         "characters": ("character", "characters"), "history_entries": ("History entry", "History entries"),
         "datasets": ("dataset", "datasets"), "loras": ("LoRA", "LoRAs"), "api_tokens": ("API token", "API tokens")}
#: the running work a refusal names, at most
NAMED = 10
#: History entries deleted per call (each call checks and deletes its entries in one go)
ENTRIES_AT_ONCE = 200


def forget_user(studio: Studio, user: str) -> dict[str, int]:
    """Delete everything ``user`` owns, a user taken off the sign-in list: their History entries with their files
    (training runs with their folders and LoRAs, videos with their clips), queue jobs, A/B tests, characters,
    datasets, LoRAs, API tokens and their folders in ``outputs/`` and ``loras/``. Returns how many of each went.

    Refused (:class:`InvalidInput`) without sign-in, for ``local`` and for a user on the list. Their work that no
    one runs is cancelled first, as the app's start does (:func:`~masuka.off_list.cancel_off_list_jobs`), but no one
    else's: a command's sign-in list may be older than the app's. While any of theirs still runs (in a live process,
    or at a provider that bills it) nothing is deleted and the refusal names it. Each part is deleted as its own tab
    deletes it, with the same checks: one that another user's running work holds (a LoRA an image being made uses)
    stops the deletion there, saying what went, and forgetting the user again once that work ends deletes the rest."""
    config, store = studio.config, studio.store
    if not config.multi_user:
        raise InvalidInput("Without sign-in everything belongs to the one owner: there is no user to forget (a "
                           "command reads the sign-in list from MASUKA_AUTH: set it as the app gets it).")
    if user == LOCAL_USER:
        raise InvalidInput(f"{LOCAL_USER!r} is the shared owner (what was made before sign-in, and what a command "
                           "without --user makes), not a user: delete its entries in their tabs.")
    if on_sign_in_list(config, user):
        raise InvalidInput(f"{user!r} is on the sign-in list: take them off it (MASUKA_AUTH) and restart the app "
                           "first.")
    cancel_off_list_jobs(studio, user)  # theirs only: a command's list may be older than the app's
    _refuse_running(studio, user)
    gone = dict.fromkeys(PARTS, 0)

    def ids(table: str) -> list[int]:
        return [row["id"] for row in store.find(table, "owner = ?", [user], order_by="id")]

    try:
        gone["queue_jobs"] = store.count("queue", "owner = ?", [user])
        store.delete_where("queue", "owner = ?", [user])  # all ended: their input copies go with the entries
        for comparison in ids("comparisons"):
            delete_comparison(studio, user, comparison)
            gone["ab_tests"] += 1
        for character in ids("characters"):
            delete_character(studio, character, user)
            gone["characters"] += 1
        keys = [f"j{job}" for job in ids("jobs")] + [f"g{generation}" for generation in ids("generations")]
        for start in range(0, len(keys), ENTRIES_AT_ONCE):
            some = keys[start:start + ENTRIES_AT_ONCE]
            delete_entries(studio, user, False, some)
            gone["history_entries"] += len(some)
        for dataset in ids("datasets"):
            delete_dataset(studio, dataset, user)
            gone["datasets"] += 1
        for lora in ids("loras"):
            delete_lora(studio, lora, user, False)
            gone["loras"] += 1
    except InvalidInput as refused:
        raise InvalidInput(f"{refused} Deleted so far: {described(gone)}. Forget {user!r} again when that is "
                           "done, for the rest.") from refused
    gone["api_tokens"] = store.count("api_tokens", "owner = ?", [user])
    store.delete_where("api_tokens", "owner = ?", [user])
    for folder in (output_dir(config, user), lora_folder(studio, user)):
        shutil.rmtree(folder, ignore_errors=True)  # input copies, exports, upscales' extras, half-made files
    return gone


def described(gone: dict[str, int]) -> str:
    """What :func:`forget_user` deleted, in words: ``2 History entries, 1 dataset``."""
    return ", ".join(f"{count} {PARTS[part][count != 1]}" for part, count in gone.items() if count) or "nothing"


def _refuse_running(studio: Studio, user: str) -> None:
    """:class:`InvalidInput` naming ``user``'s work that still runs, when any does."""
    store = studio.store
    marks = ",".join("?" * len(UNFINISHED))
    running = [f"g{row['id']}" for row in store.find("generations", f"owner = ? and status in ({marks})",
                                                     [user, *UNFINISHED], order_by="id")]
    for job in jobs.find(store, "owner = ?", [user], order_by="id"):
        if job.status in UNFINISHED or still_runs_at(job):
            running.append(f"j{job.id} ({job.kind})")
    running += [f"queue job {row['id']}" for row in store.find(
        "queue", f"owner = ? and status in ({','.join('?' * len(QUEUE_UNFINISHED))})", [user, *QUEUE_UNFINISHED],
        order_by="id")]
    drop_abandoned(studio)  # a character whose making was killed: what it made goes
    running += [f"character {row['name']!r} (being made)" for row in store.find("characters", "owner = ?", [user])
                if being_made(row)]
    if running:
        more = f" and {len(running) - NAMED} more" if len(running) > NAMED else ""
        raise InvalidInput(f"{user!r} still has work running: {', '.join(running[:NAMED])}{more}. Nothing was "
                           "deleted: stop it (or let it finish), then forget them.")
