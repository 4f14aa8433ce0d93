"""A HEIC photo as an iPhone saves one: stored sideways, with the turn that shows it upright in its header.

``astronaut-sideways.heic`` is scikit-image's astronaut portrait (the character tests' face) cropped to 384x512,
brought to 288x384 (:func:`upright`), turned a quarter to the left, and saved with EXIF orientation 6 ("turn a
quarter right to show it"), which the encoder writes as the HEIF ``irot`` property that decoders apply. It was made
once with pillow-heif 1.9 (an encoder; MASUKA installs only the decoder, pi-heif)::

    exif = Image.Exif(); exif[0x0112] = 6
    upright().rotate(90, expand=True).save("astronaut-sideways.heic", quality=50, exif=exif.tobytes())
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIDEWAYS_HEIC = Path(__file__).with_name("astronaut-sideways.heic")


def upright() -> Image.Image:
    """The photo in the HEIC file as it should be seen (288x384, portrait)."""
    from skimage import data

    return Image.fromarray(data.astronaut()).crop((64, 0, 448, 512)).resize((288, 384), Image.Resampling.LANCZOS)


def difference(picture: Image.Image, expected: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) of two pictures, the first brought to the second's size."""
    resized = picture.convert("RGB").resize(expected.size, Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(resized, np.float64) - np.asarray(expected.convert("RGB"), np.float64)).mean())
