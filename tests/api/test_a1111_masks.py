"""A1111 img2img masks through the real `webuiapi` client: an inverted mask is kept as sent with its mask mode, and a
mask drawn on transparency as the white-means-repaint mask it stands for, so History's Reuse repaints the same part;
the inpaint options are recorded in the row and written in A1111's infotext fields."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from masuka.history.actions import reuse_parameters
from masuka.image.generate import generate_images
from masuka.image.metadata import parse_parameters
from masuka.ui.image import GENERATE_FIELDS, image_request
from masuka.ui.image_modes import INPAINT_FIELDS, reuse_fields
from tests.api.test_a1111 import client


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"), dtype=np.int16)


def repainted_only(picture: Image.Image, original: Image.Image, repaint: np.ndarray) -> bool:
    """Whether ``picture`` is ``original`` exactly outside ``repaint`` (a boolean mask) and changed inside it."""
    out, before = pixels(picture), pixels(original)
    return np.array_equal(out[~repaint], before[~repaint]) and np.abs(out[repaint] - before[repaint]).mean() > 5


def last_id(app) -> int:
    return max((row["id"] for row in app.studio.store.find("generations", limit=1)), default=0)


def rows_since(app, last: int) -> list[dict]:
    """The history rows made after row ``last``, oldest first."""
    return app.studio.store.find("generations", "id > ?", [last], order_by="id")


def test_an_inverted_mask_is_kept_with_its_mask_mode_and_reuse_repaints_the_same_part(shared_app, tiny_model, photo,
                                                                                    square_mask):
    """``inpainting_mask_invert: 1`` repaints outside the white square; the row keeps the mask as sent and the mask
    mode, so Reuse fills "Inpaint not masked" and Generate repaints outside again; the infotext says so as A1111
    does, with the only-masked padding and the fill, which the row records and Reuse fills too."""
    app = shared_app()  # the module's one app: each test reads the rows made since it started
    last = last_id(app)
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("flux"))})
    result = api.img2img(images=[photo], mask_image=square_mask, inpainting_mask_invert=1, mask_blur=0,
                         denoising_strength=1.0, inpainting_fill=0, inpaint_full_res=True, inpaint_full_res_padding=6,
                         prompt="a cat", steps=2, width=64, height=64, seed=8)
    outside = np.asarray(square_mask) == 0
    assert repainted_only(result.image, photo, outside)
    (row,) = rows_since(app, last)
    params = row["params"]
    kept = Image.open(app.studio.config.absolute(params["mask"]))
    assert np.array_equal(np.asarray(kept.convert("L")), np.asarray(square_mask)), "the mask kept is the one sent"
    assert params["invert_mask"] is True and params["only_masked_padding"] == 6 and params["fill_masked"] is True
    extra = parse_parameters(result.info["infotexts"][0]).extra
    assert extra["Mask mode"] == "Inpaint not masked" and extra["Masked content"] == "fill"
    assert extra["Inpaint area"] == "Only masked" and extra["Masked area padding"] == "6"

    fields = reuse_fields(reuse_parameters(app.studio, "local", False, f"g{row['id']}")[1])
    assert [fields[name] for name in INPAINT_FIELDS] == ["Inpaint not masked", "fill", "Only masked", 6]
    again = generate_images(app.studio, image_request("local", *[fields.get(name) for name in GENERATE_FIELDS]))[0]
    assert repainted_only(Image.open(again.path), photo, outside), "Reuse repaints the same part"

    plain = api.img2img(images=[photo], mask_image=square_mask, mask_blur=0, denoising_strength=1.0,
                        inpainting_fill=1, inpaint_full_res=False, prompt="a cat", steps=2, width=64, height=64,
                        seed=8)  # not inverted, the original under the mask, the whole picture
    assert repainted_only(plain.image, photo, ~outside)
    extra = parse_parameters(plain.info["infotexts"][0]).extra
    assert not {"Mask mode", "Masked content", "Inpaint area", "Masked area padding"} & set(extra)
    params = rows_since(app, last)[-1]["params"]
    assert not {"invert_mask", "only_masked_padding", "fill_masked"} & set(params)


def test_a_mask_drawn_on_transparency_is_read_by_its_alpha(shared_app, tiny_model, photo, square_mask):
    """Opaque red strokes on a transparent white background (A1111 reads such a mask by its alpha): only the
    strokes are repainted, and the mask kept is that of the strokes, so Reuse repaints them again."""
    app = shared_app()
    last = last_id(app)
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("flux"))})
    strokes = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    ImageDraw.Draw(strokes).rectangle((20, 20, 43, 43), fill=(255, 0, 0, 255))
    result = api.img2img(images=[photo], mask_image=strokes, mask_blur=0, denoising_strength=1.0, inpainting_fill=1,
                         inpaint_full_res=False, prompt="a cat", steps=2, width=64, height=64, seed=8)
    inside = np.asarray(square_mask) > 0
    assert repainted_only(result.image, photo, inside)
    (row,) = rows_since(app, last)
    kept = Image.open(app.studio.config.absolute(row["params"]["mask"]))
    assert np.array_equal(np.asarray(kept.convert("L")), np.asarray(square_mask)), "the strokes' mask is kept"

    fields = reuse_fields(reuse_parameters(app.studio, "local", False, f"g{row['id']}")[1])
    again = generate_images(app.studio, image_request("local", *[fields.get(name) for name in GENERATE_FIELDS]))[0]
    assert repainted_only(Image.open(again.path), photo, inside)

    inverted = api.img2img(images=[photo], mask_image=strokes, inpainting_mask_invert=1, mask_blur=0,
                           denoising_strength=1.0, inpainting_fill=1, inpaint_full_res=False, prompt="a cat", steps=2,
                           width=64, height=64, seed=8)  # by the alpha, then inverted, as A1111 does
    assert repainted_only(inverted.image, photo, ~inside)


def test_a_mask_with_nothing_opaque_is_refused_as_transparent_not_as_black(shared_app, tiny_model, photo):
    """A fully transparent mask (read by its alpha) is refused saying it is transparent and that opaque means
    repaint, not as an all-black mask its sender never drew; inverted, it repaints the whole picture, as in A1111.
    A mask opaque enough everywhere, inverted, is refused in the same terms."""
    import base64
    import io

    import requests

    app = shared_app()
    last = last_id(app)
    url = app.url.rstrip("/") + "/sdapi/v1/img2img"

    def encoded(picture: Image.Image) -> str:
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    def post(mask: Image.Image, **fields):
        return requests.post(url, timeout=300, json={
            "init_images": [encoded(photo)], "mask": encoded(mask), "mask_blur": 0, "denoising_strength": 1.0,
            "inpainting_fill": 1, "prompt": "a cat", "steps": 1, "width": 64, "height": 64, "seed": 8,
            "override_settings": {"sd_model_checkpoint": str(tiny_model("flux"))}, **fields})

    clear = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    refused = post(clear)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "fully transparent" in detail and "opaque means repaint" in detail and "all black" not in detail
    faint = Image.new("RGBA", (64, 64), (255, 255, 255, 100))  # below half opaque everywhere
    refused = post(faint)
    assert refused.status_code == 422 and "nowhere more than half opaque" in refused.json()["detail"]
    solid = Image.new("RGBA", (64, 64), (0, 0, 0, 200))  # more than half opaque everywhere, not fully
    refused = post(solid, inpainting_mask_invert=1)
    assert refused.status_code == 422 and "opaque everywhere" in refused.json()["detail"]
    assert not rows_since(app, last)

    everything = post(clear, inpainting_mask_invert=1)  # transparent everywhere, inverted: all of it repainted
    assert everything.status_code == 200, everything.text
    out = Image.open(io.BytesIO(base64.b64decode(everything.json()["images"][0])))
    assert repainted_only(out, photo, np.ones((64, 64), bool))


def test_a_mask_of_another_shape_is_stretched_to_the_picture_and_the_pictures_sent_come_back_only_when_asked(
        shared_app, tiny_model, photo):
    """A1111 resizes the mask to the picture's size whatever its shape: a 128x32 mask whose left half is white
    repaints the picture's left half (it was refused as of another shape). The answer's ``parameters`` carry the
    init images and mask only with ``include_init_images`` (they doubled every answer), and ``images`` holds the
    results alone either way, as A1111 answers."""
    app = shared_app()
    api = client(app)
    api.set_options({"sd_model_checkpoint": str(tiny_model("flux"))})
    mask = Image.new("L", (128, 32), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 63, 31), fill=255)
    common = dict(images=[photo], mask_image=mask, mask_blur=0, denoising_strength=1.0, inpainting_fill=1,
                  inpaint_full_res=False, prompt="a stretched mask", steps=2, width=64, height=64, seed=8)
    result = api.img2img(**common)
    out, before = pixels(result.image), pixels(photo)
    assert len(result.images) == 1
    assert np.array_equal(out[:, 34:], before[:, 34:]), "the right half is kept (the stretched edge aside)"
    assert np.abs(out[:, :30] - before[:, :30]).mean() > 5, "the left half is repainted"
    assert result.parameters["init_images"] is None and result.parameters["mask"] is None
    kept = api.img2img(include_init_images=True, **common)
    assert len(kept.images) == 1 and len(kept.parameters["init_images"]) == 1 and kept.parameters["mask"]
