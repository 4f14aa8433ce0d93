"""The interface every remote video provider implements, and what they share: keys, clients, downloads.

A provider turns one clip request into a provider job (:meth:`Provider.submit`), reports its state
(:meth:`Provider.poll`), fetches the finished MP4 (:meth:`Provider.download`) and cancels it where the API
can (:meth:`Provider.cancel`). Prices are catalog data (:mod:`masuka.video.catalog`), so a plan is priced
without a key or a client. The identifiers a provider needs later live in a small ``ref`` dict that the
job row keeps, so polling resumes in another process.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from masuka.errors import ProviderError
from masuka.remote.http import KEY_REFUSED, CutShort, ServiceClient, save_stream
from masuka.video.catalog import provider_entry
from masuka.video.media import BrokenVideo, NotMP4, check_mp4

MAX_REDIRECTS = 5


class LinkRefused(ProviderError):
    """A download refused (401, 403) by a host other than the provider's API, which never saw the key: the link
    expired or is not valid; not a refused key (its status is None, so no job waits for another key)."""


@dataclass
class Clip:
    """One provider request: a clip of ``seconds`` at ``size``, optionally from a first frame."""

    model: str
    prompt: str
    seconds: int
    size: str
    image: Path | None = None
    negative_prompt: str = ""
    entry: dict = field(default_factory=dict)  # the model's catalog entry
    last_frame: Path | None = None
    references: list[Path] = field(default_factory=list)
    source_video: Path | None = None
    audio: bool | None = None
    extend: str | None = None  # the provider's reference to its own earlier clip, to continue it (Veo 3.1)


@dataclass
class Status:
    """A provider job's state: ``queued``, ``running``, ``completed``, ``failed`` or ``cancelled``."""

    state: str
    progress: float | None = None  # 0..1 when the provider says
    output: str | None = None  # what :meth:`Provider.download` needs once completed (usually a URL)
    error: str | None = None
    note: str = ""  # "queue position 3", "throttled", ...
    poll_after: float | None = None  # seconds the provider asks us to wait


class Provider(ServiceClient, ABC):
    """Base of the remote providers; a subclass declares its :class:`~masuka.services.Service` (label, key
    variables, base URL, headers, key check) as ``service`` and defines the operations. Its module is named
    after the provider id, which is the service's name and the catalog's provider key."""

    #: the API takes a first frame only at the video's own size (Sora: "Inpaint image must match the requested
    #: width and height"): it is sent fitted to it (:func:`~masuka.image.copies.fitted_copy`)
    frame_at_size = False

    @classmethod
    def key_env(cls) -> str:
        return cls.service.key_env[0]

    @classmethod
    def display_name(cls) -> str:
        return provider_entry(cls.name)["name"]

    # -- what each provider defines -------------------------------------------------------------------
    @abstractmethod
    def submit(self, clip: Clip) -> dict:
        """Send the create request once; returns the ``ref`` (``{"id": ..., ...}``) needed to poll it."""

    @abstractmethod
    def poll(self, ref: dict) -> Status:
        """The job's status at the provider."""

    def cancel(self, ref: dict) -> bool:
        """Ask the provider to stop; False when its API has no way to."""
        return False

    # -- shared ---------------------------------------------------------------------------------------
    def default_poll_s(self) -> float:
        if self.settings.poll_s is not None:
            return self.settings.poll_s
        return float(provider_entry(self.name)["poll_s"])

    def download(self, output: str, dest: Path) -> Path:
        """Stream the video to ``dest`` atomically and check it plays; a broken transfer is fetched again, an answer
        that is no video at all (a web page) is the provider's fault and is not."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        error: Exception | None = None
        for _attempt in range(self.settings.attempts):
            try:
                self._fetch(output, partial)
                check_mp4(partial)
            except NotMP4 as failure:
                partial.unlink(missing_ok=True)
                name = self.display_name()
                raise ProviderError(f"{name} answered the download of the video with {failure.looks}, not an MP4 "
                                    f"video: the fault is {name}'s, not the network's.") from None
            except (BrokenVideo, CutShort, httpx.TransportError) as failure:
                error = failure
                partial.unlink(missing_ok=True)
                continue
            except BaseException:  # a full disk, say: no half file is left behind
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, dest)
            return dest
        raise ProviderError(f"The video from {self.name} could not be downloaded whole: {error}")

    def _fetch(self, url: str, partial: Path) -> None:
        for _hop in range(MAX_REDIRECTS):
            keyed = self._same_origin(url)
            try:
                response = self.caller.send(self.client if keyed else self.bare, "GET", url, stream=True)
            except ProviderError as error:
                if keyed or error.status not in KEY_REFUSED:
                    raise
                # a host that never saw the key (storage behind a presigned URL) refused the link: it expired, or
                # is not for this download; the key is not at fault, so no job waits for another one
                raise LinkRefused(f"The video's link on {urlsplit(url).netloc} was refused (HTTP {error.status}): "
                                  f"it has expired or is no longer valid ({error}).") from error
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    continue
                save_stream(response, partial)
                return
            finally:
                response.close()
        raise ProviderError(f"{self.name}: too many redirects while downloading the video.")

    def _same_origin(self, url: str) -> bool:
        if not urlsplit(url).scheme:
            return True
        ours, theirs = urlsplit(self.base_url), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)


def image_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` (or ``data:video/mp4;...``) for APIs that take inline files."""
    mime, b64 = image_base64(path)
    return f"data:{mime};base64,{b64}"


def image_base64(path: Path) -> tuple[str, str]:
    return image_mime(path), base64.b64encode(path.read_bytes()).decode("ascii")


def image_mime(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "image/png"
