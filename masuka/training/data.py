"""Training data: a dataset's images and captions, aspect-ratio buckets, and the latents/embeddings cache.

Images are resized and centre-cropped to the nearest bucket (about ``resolution²`` pixels, sides a multiple of
what the model needs), encoded by the VAE once, and the captions by the text encoders once, before the loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER
from masuka.studio import Studio

if TYPE_CHECKING:
    from masuka.jobs import JobRow


@dataclass(frozen=True)
class TrainingSet:
    """A dataset as training sees it: image files and final captions (trigger word applied)."""

    id: int | None
    name: str
    trigger: str
    items: list[tuple[Path, str]]
    hash: str = field(default="", compare=False)
    """Content hash of images and captions (tells whether two runs saw the same data), of the files when the set
    is made unless given. A run trains on its cache of the data and records the hash of exactly the bytes it
    cached (:attr:`Cache.hash`): checkpoints and the export never read the files again (an image deleted or
    edited mid-run changes nothing of what the run saved)."""

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", content_hash(self.items))


def content_hash(items: list[tuple[Path, str]]) -> str:
    """Hash of the image files' bytes and the captions, 16 hex digits."""
    return _combined([(path, hashlib.sha256(_image_bytes(path)).digest(), caption) for path, caption in items])


def _combined(digests: list[tuple[Path, bytes, str]]) -> str:
    """The dataset hash from each image's path, SHA-256 of its bytes and caption, in path order."""
    digest = hashlib.sha256()
    for _path, image, caption in sorted(digests, key=lambda item: str(item[0])):
        digest.update(image)
        digest.update(caption.encode("utf-8"))
    return digest.hexdigest()[:16]


def _image_bytes(path: Path) -> bytes:
    """A dataset image's bytes; one deleted since the dataset was checked is told in words."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"The dataset image {path.name} was deleted while the run started: process the dataset "
                           "again, then start or resume the run.") from None


def dataset_for_training(studio: Studio, name: str, owner: str = LOCAL_USER, run: JobRow | None = None
                         ) -> TrainingSet:
    """The named dataset (or its numeric id) of ``owner``, flipped copies included, checked to be trainable:
    images exist and every one has a caption (its own, or the trigger word alone). For an existing ``run``, the
    dataset it recorded, else :class:`NotFound`: never one made since (a namesake, or a new row given its id)."""
    from masuka.datasets.library import dataset_images, final_caption, find_dataset

    dataset_id = run.state.get("dataset_id") if run else None
    if run is None or dataset_id is None:
        dataset = find_dataset(studio, name, owner)
    else:
        recorded = studio.store.get("datasets", dataset_id)
        if recorded is None or recorded["owner"] != owner or recorded["created_at"] > run.created_at:
            raise NotFound(f"The dataset this run trained on ({name!r}) was deleted: start a new run on another "
                           "dataset.")
        dataset = recorded
    images = [row for row in dataset_images(studio, dataset["id"], augmented=True) if row.get("processed_path")]
    if not images:
        raise InvalidInput(f"Dataset {dataset['name']!r} has no images: add photos to it in the Datasets tab.")
    for row in images:
        row["caption"] = final_caption(row, dataset).strip()
    uncaptioned = [row["file"].name for row in images if not row["caption"]]
    if uncaptioned:
        raise InvalidInput(f"Dataset {dataset['name']!r} has {len(uncaptioned)} image(s) without a caption "
                           f"({', '.join(uncaptioned[:3])}…): caption them in the Datasets tab first.")
    missing = [row["file"].name for row in images if not row["file"].is_file()]
    if missing:
        raise InvalidInput(f"Dataset {dataset['name']!r} is missing {len(missing)} image file(s) "
                           f"({', '.join(missing[:3])}): process the dataset again.")
    items = [(row["file"], row["caption"]) for row in images]
    return TrainingSet(dataset["id"], dataset["name"], dataset.get("trigger") or "", items)


def bucket_for(width: int, height: int, resolution: int, multiple: int) -> tuple[int, int]:
    """(height, width) of the bucket nearest the image's aspect ratio, about ``resolution²`` pixels."""
    from diffusers.training_utils import find_nearest_bucket, generate_aspect_ratio_buckets

    buckets = generate_aspect_ratio_buckets(resolution, divisibility=multiple)
    return buckets[find_nearest_bucket(height, width, buckets)]


def load_pixels(source: Path | bytes, resolution: int, multiple: int) -> tuple[Any, tuple[int, int]]:
    """Image (a file, or its bytes) as a ``[-1, 1]`` tensor (1, 3, H, W) resized and centre-cropped to its bucket;
    also the original size."""
    import io

    import numpy as np
    import torch
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    original = (image.height, image.width)
    height, width = bucket_for(image.width, image.height, resolution, multiple)
    image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0), original


@dataclass
class Cache:
    """Latents per image, text embeddings per caption, the empty caption's (for dropout) and sample prompts'; the
    dataset hash (:func:`content_hash`) of exactly the image bytes the latents were made from."""

    latents: list[Any]
    sizes: list[tuple[int, int]]
    captions: list[str]
    hash: str = ""
    texts: list[dict[str, Any]] = field(default_factory=list)
    empty: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def buckets(self) -> dict[tuple[int, int], list[int]]:
        """Item indices grouped by latent shape: a batch never mixes shapes."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index, latent in enumerate(self.latents):
            groups.setdefault(tuple(latent.shape[-2:]), []).append(index)
        return groups


def build_cache(arch: Any, pipe: Any, items: list[tuple[Path, str]], resolution: int, sample_prompts: list[str],
                device: Any, encode_texts: bool = True) -> Cache:
    """Encode every image once with the VAE and (unless the text encoder trains: then they are encoded as they
    are used) every caption, the empty caption and the sample prompts once. Each file is read once: the bytes
    decoded are the bytes hashed (:attr:`Cache.hash`), whatever the file holds before or after."""
    import torch

    latents, sizes, digests = [], [], []
    with torch.no_grad():
        for path, caption in items:
            data = _image_bytes(path)
            digests.append((path, hashlib.sha256(data).digest(), caption))
            pixels, original = load_pixels(data, resolution, arch.size_multiple)
            latents.append(arch.encode_image(pipe, pixels.to(device, pipe.vae.dtype)).cpu())
            sizes.append(original)
        cache = Cache(latents, sizes, [caption for _path, caption in items], _combined(digests))
        if encode_texts:
            cache.texts = [arch.encode_text(pipe, [caption], device) for caption in cache.captions]
            cache.empty = arch.encode_text(pipe, [""], device)
            cache.samples = [arch.encode_text(pipe, [prompt], device) for prompt in sample_prompts]
    return cache


class BatchOrder:
    """Which items make each micro-batch: shuffled per epoch from the seed, same-bucket batches, one share a process.

    A pure function of the micro-batch counter, so a resumed run sees the batches the first run would have.
    """

    def __init__(self, cache: Cache, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.groups = list(cache.buckets().values())
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self._epoch: tuple[int, list[list[int]]] | None = None

    def _batches(self, epoch: int) -> list[list[int]]:
        import torch

        if self._epoch is None or self._epoch[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1009 + epoch)
            batches = []
            for group in self.groups:
                order = [group[i] for i in torch.randperm(len(group), generator=generator).tolist()]
                batches += [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
            share = batches[self.rank::self.world] or [batches[self.rank % len(batches)]]
            self._epoch = (epoch, share)
        return self._epoch[1]

    def batch(self, counter: int) -> list[int]:
        per_epoch = len(self._batches(0))
        return self._batches(counter // per_epoch)[counter % per_epoch]


def dataset_choices(studio: Studio, owner: str = LOCAL_USER) -> list[tuple[str, str]]:
    """(label, name) of the datasets :func:`dataset_for_training` takes for ``owner`` (their own), newest first,
    labelled with the image count the Datasets tab shows (flipped copies not counted)."""
    from masuka.datasets.library import list_datasets

    return [(f"{row['name']} ({row['images']} images)", row["name"]) for row in list_datasets(studio, owner)]
