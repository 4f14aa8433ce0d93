"""Face detail: a real face (scikit-image's astronaut) pasted into a generated picture is found, repainted with the
tiny inpaint pipeline and blended back; nothing outside the dilated face region changes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.aid_settings import AidSettings, save_aid_settings
from masuka.image.face_detail import DETECTOR, DILATE, FEATHER, find_faces
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.tasks import InitImage

SIZE = 256


@pytest.fixture(scope="module")
def portrait(tiny_model, tmp_path_factory):
    """A generated 256 px picture with the astronaut's portrait pasted in its top-left, and a mask that repaints
    only a band at the right edge, so the inpainted result still shows the face exactly. Made once, in a studio
    of its own: the tests only read the two files, each repainting in its own studio."""
    from skimage.data import astronaut

    from masuka.config import Config
    from masuka.studio import Studio

    model = tiny_model("sdxl")
    tmp_path = tmp_path_factory.mktemp("portrait")
    maker = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=""))
    try:
        background = generate_images(maker, ImageRequest(prompt="a wall", model=str(model), steps=1, seed=1,
                                                         width=SIZE, height=SIZE))[0]
    finally:
        maker.close()
    picture = Image.open(background.path).convert("RGB")
    picture.paste(Image.fromarray(astronaut()).resize((192, 192), Image.LANCZOS), (0, 0))
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (SIZE - 24, 0, SIZE, SIZE))
    picture.save(tmp_path / "portrait.png")
    mask.save(tmp_path / "band.png")
    return model, tmp_path / "portrait.png", tmp_path / "band.png"


def repaint(studio, model, picture, mask, **kw):
    request = ImageRequest(prompt="a portrait of an astronaut", model=str(model), steps=2, seed=7,
                           init=InitImage(picture, strength=1.0, mask=mask, mask_blur=0), **kw)
    return generate_images(studio, request)[0]


def test_face_detail_changes_only_the_face(studio, portrait):
    model, picture, mask = portrait
    [face] = find_faces(Image.open(picture))
    plain = repaint(studio, model, picture, mask)
    detailed = repaint(studio, model, picture, mask, face_detail=True, face_strength=0.5)

    before = np.asarray(Image.open(plain.path).convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(detailed.path).convert("RGB"), dtype=np.int16)
    changed = np.abs(after - before).max(axis=2) > 0
    left, top, right, bottom = face
    reach = round((right - left) * (DILATE + 3 * FEATHER))
    region = np.zeros_like(changed)
    region[max(0, top - reach):bottom + reach, max(0, left - reach):right + reach] = True
    assert not changed[~region].any(), "pixels outside the dilated face region are untouched"
    assert changed[top:bottom, left:right].mean() > 0.5, "the face itself is repainted"

    row = studio.store.get("generations", detailed.id)
    assert row["params"]["face_detail"] == {"detector": DETECTOR, "strength": 0.5, "faces": [list(face)]}
    extra = parse_parameters(read_parameters(detailed.path)).extra
    assert extra["ADetailer model"] == DETECTOR and extra["ADetailer denoising strength"] == "0.5"


def test_no_face_no_change(studio, tiny_model):
    model = str(tiny_model("sdxl"))
    values = dict(prompt="a wall", model=model, steps=1, seed=2, width=128, height=128)
    plain = generate_images(studio, ImageRequest(**values))[0]
    detailed = generate_images(studio, ImageRequest(**values, face_detail=True))[0]
    assert np.array_equal(np.asarray(Image.open(plain.path)), np.asarray(Image.open(detailed.path)))
    assert studio.store.get("generations", detailed.id)["params"]["face_detail"]["faces"] == []


def test_bad_face_detail_requests_are_refused(studio, tiny_model):
    model = str(tiny_model("sdxl"))
    with pytest.raises(InvalidInput, match="face detail strength"):
        generate_images(studio, ImageRequest(prompt="x", model=model, face_detail=True, face_strength=0))
    with pytest.raises(InvalidInput, match="turn Fast off"):
        generate_images(studio, ImageRequest(prompt="x", model=model, face_detail=True, fast=True))


def test_cli_face_detail(studio, portrait, capsys):
    model, picture, mask = portrait
    code = main(["generate", "--data-dir", str(studio.config.data_dir), "--model", str(model), "--prompt", "a face",
                 "--steps", "2", "--seed", "7", "--init-image", str(picture), "--mask", str(mask),
                 "--mask-blur", "0", "--face-detail", "--face-strength", "0.3"])
    assert code == 0
    row = studio.store.find("generations", order_by="id desc", limit=1)[0]
    assert row["params"]["face_detail"]["strength"] == 0.3 and len(row["params"]["face_detail"]["faces"]) == 1


def test_a_file_that_is_no_face_restoration_model_is_refused_in_settings(config, tmp_path):
    """Refused when saved, not after each face detail's diffusion: a file spandrel cannot read, and an upscaler."""
    from masuka.testing.upscalers import write_esrgan

    weights = tmp_path / "GFPGANv1.4.pth"
    weights.write_bytes(b"not a model")
    with pytest.raises(InvalidInput, match="spandrel could not read the face restoration model GFPGANv1.4.pth"):
        save_aid_settings(config, AidSettings(face_restore_model=str(weights)))
    upscaler = write_esrgan(tmp_path / "tiny4x.pth", 4)
    with pytest.raises(InvalidInput, match="tiny4x.pth is not a face restoration model .*SR model"):
        save_aid_settings(config, AidSettings(face_restore_model=str(upscaler)))
    assert not (config.data_dir / "aids.json").exists()


def test_face_restoration_imports_spandrel_without_torchvision(tmp_path):
    """spandrel installed with --no-deps, as the README says, and no upscale run before: face restoration imports
    it as the upscalers do, and reads the file (here an upscaler, which it then refuses), not "skipped"."""
    import subprocess
    import sys
    import textwrap

    from masuka.testing.upscalers import write_esrgan
    from tests.conftest import ROOT

    broken = tmp_path / "site" / "torchvision"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ModuleNotFoundError("No module named torchvision", '
                                        'name="torchvision")\n')
    upscaler = write_esrgan(tmp_path / "tiny4x.pth", 4)
    script = textwrap.dedent(f"""
        from masuka.config import Config
        from masuka.errors import InvalidInput
        from masuka.image.face_restore import face_restorer
        from masuka.studio import Studio
        studio = Studio.open(Config.from_env(data_dir={str(tmp_path / "data")!r}, auth=""))
        try:
            print(face_restorer(studio, {str(upscaler)!r})[1])
        except InvalidInput as error:
            print(error)
        finally:
            studio.close()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("tiny4x.pth is not a face restoration model"), done.stdout


def test_a_missing_restoration_file_is_refused_in_settings(config):
    with pytest.raises(InvalidInput, match="is not a file"):
        save_aid_settings(config, AidSettings(face_restore_model="/nowhere/gfpgan.pth"))
