"""What becomes of the work of a user taken off the sign-in list: as the app starts, their API tokens go and their
work no provider bills is cancelled (:func:`retire_off_list`); what they still own is listed (:func:`former_users`)
until an admin forgets them (:mod:`masuka.forget_user`)."""

from __future__ import annotations

import logging

from masuka import jobs
from masuka.api.auth import delete_tokens_off_list
from masuka.jobs import JobRow
from masuka.queue import jobs as queue
from masuka.store import now
from masuka.studio import Studio
from masuka.users import OFF_LIST, on_sign_in_list

log = logging.getLogger(__name__)
#: the background jobs (``jobs`` rows) that may be cancelled: waiting, interrupted, or left ``running`` by a gone
#: process (a remote video that a gone app was sending, which the next adoption would send again)
UNENDED = ("queued", "running", "interrupted")


def retire_off_list(studio: Studio) -> None:
    """As the app starts with sign-in: the users no longer on the sign-in list lose their API tokens (a user added
    back under the same name is a new account) and the work they left that has not started at a provider is
    cancelled (:func:`cancel_off_list_jobs`); the log says how much, and who still owns things
    (:func:`former_users`, whom an admin may forget: :mod:`masuka.forget_user`). Nothing without sign-in.

    The app's start only, not every command's: a command may read another ``MASUKA_AUTH`` than the app's."""
    if not studio.config.multi_user:
        return
    queue.recover(studio)  # queue jobs a gone worker left running are interrupted ones: waiting again
    tokens = delete_tokens_off_list(studio)
    cancelled = cancel_off_list_jobs(studio)
    if tokens or any(cancelled.values()):
        log.warning("users no longer on the sign-in list: %d API token(s) deleted, %d queued image job(s) %s and "
                    "%d background job(s) %s cancelled", tokens, len(cancelled["queue"]), cancelled["queue"],
                    len(cancelled["jobs"]), cancelled["jobs"])
    if former := former_users(studio):
        log.warning("users no longer on the sign-in list still own things (a user added back under the name would "
                    "see them): %s; Settings -> Storage -> Former users, or `python -m masuka storage forget-user "
                    "NAME --yes`, deletes them", ", ".join(f"{user} ({count})" for user, count in former.items()))


def cancel_off_list_jobs(studio: Studio, owner: str | None = None) -> dict[str, list[int]]:
    """Cancel, with the reason :data:`~masuka.users.OFF_LIST`, the work of owners not on the sign-in list (of
    ``owner`` only, when given) that no one runs: image queue jobs queued, paused or interrupted (but for one
    waiting for the live worker that last ran it, :func:`~masuka.queue.jobs.in_hand`), and background jobs (training
    runs, videos, caption passes, downloads) queued, interrupted or left by a gone process. A remote video or
    training run a provider has accepted, and charges for, is left to finish, so that what it makes is collected;
    work a live process has in hand is left to it. Returns the ids cancelled by table (``queue``, ``jobs``); none
    without sign-in."""
    config, store = studio.config, studio.store
    cancelled: dict[str, list[int]] = {"queue": [], "jobs": []}
    if not config.multi_user:
        return cancelled
    def off_list(who: str) -> bool:
        return not on_sign_in_list(config, who) and owner in (None, who)

    with store.transaction():  # the same cancel as a user's Cancel of a job no worker holds
        for row in queue.idle_jobs(studio):  # one a live ``queue run`` will take again is left to it
            if off_list(row["owner"]) and not queue.in_hand(row):
                queue.finish(studio, row["id"], "cancelled", OFF_LIST)
                cancelled["queue"].append(row["id"])
        runner = studio.runner()
        for job in jobs.find(store, f"status in ({','.join('?' * len(UNENDED))})", UNENDED, order_by="id"):
            if not off_list(job.owner) or runner.alive(job) or accepted_remotely(job):
                continue
            jobs.finish(store, job.id, "cancelled", OFF_LIST, finished_at=job.finished_at or now())
            cancelled["jobs"].append(job.id)
    return cancelled


def accepted_remotely(job: JobRow) -> bool:
    """Whether a provider has accepted a background job's remote work (a video's clip, a training run's job), or may
    have (its request went out without an answer): work it charges for, which only following it collects."""
    state = job.state
    segments = state.get("segments")
    return bool(job.external_id or state.get("ref") or state.get("submitting") or (isinstance(segments, list) and any(
        isinstance(segment, dict) and (segment.get("ref") or segment.get("submitting")) for segment in segments)))


def former_users(studio: Studio) -> dict[str, int]:
    """With sign-in: each owner who is not on the sign-in list (nor the shared ``local``) and still owns rows, with
    how many (History entries, queue jobs, datasets, LoRAs, characters, A/B tests, API tokens). Empty without
    sign-in."""
    if not studio.config.multi_user:
        return {}
    return {owner: count for owner, count in sorted(studio.store.owned_rows().items())
            if not on_sign_in_list(studio.config, owner)}
