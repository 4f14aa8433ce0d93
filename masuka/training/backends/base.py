"""The interface of a remote training service, and what the services share: the dataset zip, the client with
retries (the same :class:`~masuka.remote.http.Caller` the video providers use), and the weights download.

A trainer checks what the job needs at the service (:meth:`RemoteTrainer.prepare`), uploads the dataset zip
(:meth:`RemoteTrainer.upload`), submits the job once (:meth:`RemoteTrainer.submit`, returning the ``ref`` the run
row keeps), reports its state and log lines (:meth:`RemoteTrainer.poll`), cancels it (:meth:`RemoteTrainer.cancel`)
and turns the downloaded output into one ``.safetensors`` file (:meth:`RemoteTrainer.lora_file`).
"""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from masuka.datasets.formats import caption_line
from masuka.errors import ProviderError
from masuka.remote.http import CutShort, ServiceClient, save_stream
from masuka.training.data import TrainingSet


@dataclass
class TrainRequest:
    """What a remote trainer is asked to do."""

    entry: dict  # the catalog entry of the trainer
    data_url: str  # where the uploaded dataset zip lives
    trigger: str
    steps: int
    rank: int
    lr: float | None
    resolution: int | None
    destination: str = ""  # Replicate: the owner/model that receives the trained version


@dataclass
class TrainStatus:
    """A remote training job's state: ``queued``, ``running``, ``completed``, ``failed`` or ``cancelled``."""

    state: str
    logs: list[str] = field(default_factory=list)  # every log line so far
    output: str | None = None  # URL of the weights once completed
    error: str | None = None
    note: str = ""


class RemoteTrainer(ServiceClient, ABC):
    """Base of the remote trainers; a subclass declares its ``service`` and defines the operations."""

    #: the run options (:class:`~masuka.training.options.TrainOptions` fields) its trainer takes, beyond the
    #: dataset and the steps; any other option set to a value of its own is refused
    takes: tuple[str, ...] = ()
    #: the trained LoRA goes to a model of the user's at the service (Replicate), named as the run's destination
    needs_destination: bool = False

    def prepare(self, destination: str) -> None:
        """Check, before the dataset goes up, what the job needs at the service (nothing, unless a subclass
        says so)."""

    @abstractmethod
    def upload(self, archive: Path) -> str:
        """Put the dataset zip where the service can read it; returns its URL."""

    @abstractmethod
    def submit(self, request: TrainRequest) -> dict:
        """Send the create request once; returns the ``ref`` (``{"id": ...}``) needed to poll it."""

    @abstractmethod
    def poll(self, ref: dict) -> TrainStatus:
        """The job's state at the service, with its log lines."""

    @abstractmethod
    def cancel(self, ref: dict) -> None:
        """Ask the service to stop the job."""

    def lora_file(self, downloaded: Path, folder: Path) -> Path:
        """The ``.safetensors`` LoRA in what was downloaded (the file itself, unless a subclass unpacks it)."""
        return downloaded

    def download(self, url: str, dest: Path) -> Path:
        """Fetch the weights to ``dest`` through a ``.part`` file; a cut transfer is fetched again."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        error: Exception | None = None
        for _attempt in range(self.settings.attempts):
            response = self.caller.send(self.bare, "GET", url, stream=True)
            try:
                save_stream(response, partial)
            except (CutShort, httpx.TransportError) as failure:
                error = failure
                partial.unlink(missing_ok=True)
                continue
            finally:
                response.close()
            os.replace(partial, dest)
            return dest
        raise ProviderError(f"The LoRA from {self.service.label} could not be downloaded whole: {error}")


def dataset_zip(data: TrainingSet, path: Path) -> Path:
    """The dataset as trainers take it: each image with a same-name one-line ``.txt`` caption (as a kohya export
    writes it), in one zip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (image, caption) in enumerate(data.items):
            stem = f"{index:04d}"
            archive.write(image, f"{stem}{image.suffix.lower()}")
            archive.writestr(f"{stem}.txt", caption_line(caption))
    return path
