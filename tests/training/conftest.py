"""A small generated dataset, inserted the way the Datasets tab records one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masuka.store import LOCAL_USER


def add_dataset(studio, name: str = "fox", images: int = 3, trigger: str = "sks", sizes=None,
                captions=None, owner: str = LOCAL_USER) -> int:
    """Insert a dataset of coloured 64 px images (``sizes`` per image) with captions; returns its id."""
    dataset_id = studio.store.insert("datasets", {"owner": owner, "name": name, "trigger": trigger,
                                                  "template": "{trigger}, {caption}", "options": {}})
    folder = studio.config.datasets_dir / name / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(dataset_id)
    for index in range(images):
        width, height = (sizes or [(64, 64)] * images)[index]
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        pixels[: height // 2] = (200, 40 * index, 30)
        path = folder / f"{index:03d}.png"
        Image.fromarray(pixels).save(path)
        caption = (captions or [f"{trigger}, a red fox number {index}"] * images)[index]
        studio.store.insert("dataset_images", {"dataset_id": dataset_id, "file_name": path.name,
                                               "processed_path": studio.config.relative(path), "caption": caption,
                                               "width": width, "height": height})
    return dataset_id


@pytest.fixture
def dataset(studio):
    add_dataset(studio)
    return "fox"
