"""HEIC photos are read where MASUKA takes a picture (without pi-heif, the refusal says what to install); the
metadata a file carries is taken out losslessly."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from masuka.picture_formats import MISSING
from tests.conftest import ROOT
from tests.photos import SIDEWAYS_HEIC, difference, upright

WITHOUT_PI_HEIF = """
import sys
sys.modules["pi_heif"] = None  # as if it were not installed
from pathlib import Path
from masuka.datasets.ingest import Refused, decode
from masuka.datasets.preprocess import PrepOptions
from masuka.errors import InvalidInput
from masuka.image.tasks import open_picture
for path in sys.argv[1:]:
    try:
        decode(Path(path), PrepOptions())
    except Refused as refused:
        print("dataset:", refused)
    try:
        open_picture(path, "init image")
    except InvalidInput as refused:
        print("picture:", refused)
"""


def test_a_heic_photo_opens_upright_as_a_starting_picture():
    from masuka.image.tasks import open_picture

    picture = open_picture(SIDEWAYS_HEIC, "init image")
    assert picture.size == (288, 384) and difference(picture, upright()) < 8


def test_without_pi_heif_a_heic_photo_is_refused_naming_the_package_and_other_files_as_before(tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    done = subprocess.run([sys.executable, "-c", WITHOUT_PI_HEIF, str(SIDEWAYS_HEIC), str(notes)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    heic, jpg = done.stdout.strip().split("\n")[:2], done.stdout.strip().split("\n")[2:]
    assert heic == [f"dataset: {MISSING}", f"picture: The init image is {MISSING}."]
    assert jpg[0] == "dataset: not an image (or a format MASUKA cannot read)"
    assert jpg[1].startswith("picture: The init image is not a readable image (cannot identify image file")


def test_a_webp_loses_its_exif_and_xmp_and_keeps_its_pixels_and_colour_profile():
    """Its EXIF and XMP chunks (where a photo was taken) go, and the extended header no longer announces them; the
    compressed picture and the ICC profile are the same bytes. A WebP of neither (a plain one) is unchanged."""
    import io

    from PIL import ImageCms

    from masuka.picture_formats import without_metadata

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Phone"  # Make
    buffer = io.BytesIO()
    upright().save(buffer, "WEBP", quality=80, exif=exif, xmp=b"<x:xmpmeta>48.85N 2.35E</x:xmpmeta>", icc_profile=icc)
    stripped = without_metadata(buffer.getvalue(), "WEBP")
    assert b"48.85N" in buffer.getvalue() and b"48.85N" not in stripped and b"Phone" not in stripped
    with Image.open(io.BytesIO(stripped)) as kept, Image.open(buffer) as given:
        assert not kept.getexif() and "xmp" not in kept.info and kept.info["icc_profile"] == icc
        assert kept.tobytes() == given.tobytes()
        assert kept.size == given.size
    plain = io.BytesIO()
    upright().save(plain, "WEBP", quality=80)
    assert without_metadata(plain.getvalue(), "WEBP") == plain.getvalue()
