"""First and last frame, reference images, a source video and sound: sent in each API's shape (checked against
the official google-genai and runwayml SDKs), refused up front where a model does not take them, kept with the
job and given back by History's Reuse."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from masuka.errors import InvalidInput
from masuka.history.actions import reuse_parameters
from masuka.store import LOCAL_USER
from masuka.testing.video import KEY
from masuka.video.jobs import estimate, start_video, wait_video
from masuka.video.request import VideoRequest
from tests.photos import SIDEWAYS_HEIC, difference, upright

PROMPT = "a lighthouse in a storm"


@pytest.fixture
def frames(tmp_path):
    paths = []
    for index, colour in enumerate(("navy", "gold", "teal", "plum")):
        path = tmp_path / f"frame{index}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def source_video(tmp_path, sample_mp4):
    path = tmp_path / "source.mp4"
    path.write_bytes(sample_mp4)
    return str(path)


def run(studio, **kw) -> dict:
    row = wait_video(studio, start_video(studio, VideoRequest(prompt=PROMPT, **kw)), timeout=60)
    assert row["status"] == "completed", row["error"]
    return row


def test_veo_gets_first_and_last_frame_or_references(studio, fake, frames):
    server = fake("gemini")
    run(studio, provider="gemini", model="veo-3.1-generate-001", image=frames[0], last_frame=frames[1], seconds=6)
    run(studio, provider="gemini", model="veo-3.1-generate-001", references=frames[1:4], seconds=8)
    framed, referenced = (job["payload"]["instances"][0] for job in server.jobs.values())
    assert framed["image"]["mimeType"] == framed["lastFrame"]["mimeType"] == "image/png"
    assert framed["image"]["bytesBase64Encoded"] != framed["lastFrame"]["bytesBase64Encoded"]
    assert [r["referenceType"] for r in referenced["referenceImages"]] == ["ASSET"] * 3
    assert all(r["image"]["bytesBase64Encoded"] for r in referenced["referenceImages"])


def test_an_iphone_heic_or_an_avif_frame_is_sent_as_a_jpeg_of_it_upright(studio, fake, tmp_path):
    server = fake("gemini")
    last = tmp_path / "last.avif"
    upright().save(last, quality=90)
    row = run(studio, provider="gemini", model="veo-3.1-generate-001", image=str(SIDEWAYS_HEIC), last_frame=str(last),
              seconds=6)
    [job] = server.jobs.values()
    sent = job["payload"]["instances"][0]
    kept_inputs = row["params"]["request"]
    for role, kept in (("image", kept_inputs["image"]), ("lastFrame", kept_inputs["last_frame"])):
        assert sent[role]["mimeType"] == "image/jpeg"
        data = base64.b64decode(sent[role]["bytesBase64Encoded"])
        assert studio.config.absolute(kept).read_bytes() == data, "the job keeps what it sent"
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.format == "JPEG" and difference(picture, upright()) < 8


def _exif(orientation: int) -> bytes:
    """A phone's EXIF: the camera, where the photo was taken, and how to turn it to show it."""
    return piexif.dump({"0th": {piexif.ImageIFD.Make: b"Phone", piexif.ImageIFD.Orientation: orientation},
                        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1),
                                                                                              (30, 1))}})


def test_pictures_go_to_a_provider_as_they_are_seen_and_without_their_metadata(studio, fake, tmp_path):
    server = fake("gemini")
    photo = upright()
    photo.rotate(90, expand=True).save(tmp_path / "sideways.jpg", quality=90, exif=_exif(6))
    photo.save(tmp_path / "placed.jpg", quality=90, exif=_exif(1), xmp=b"<x:xmpmeta>48.85N</x:xmpmeta>",
               comment=b"at home", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a secret prompt, Steps: 20")
    photo.save(tmp_path / "made.png", pnginfo=info)
    run(studio, provider="gemini", model="veo-3.1-generate-001", seconds=8,
        references=[str(tmp_path / name) for name in ("sideways.jpg", "placed.jpg", "made.png")])
    [job] = server.jobs.values()
    sent = [base64.b64decode(r["image"]["bytesBase64Encoded"])
            for r in job["payload"]["instances"][0]["referenceImages"]]
    pictures = [Image.open(io.BytesIO(data)) for data in sent]
    assert [p.format for p in pictures] == ["JPEG", "JPEG", "PNG"]
    assert all(not p.getexif() and not {"parameters", "xmp", "comment"} & set(p.info) for p in pictures), \
        "no camera, place, comment or prompt"
    assert pictures[1].info.get("icc_profile"), "the colour profile is kept"
    assert pictures[0].size == (288, 384) and difference(pictures[0], photo) < 8, "turned upright"
    with Image.open(tmp_path / "placed.jpg") as placed:  # upright already: its pixels untouched, not re-encoded
        assert np.array_equal(np.asarray(pictures[1]), np.asarray(placed))
    assert np.array_equal(np.asarray(pictures[2]), np.asarray(photo))


def test_a_picture_is_converted_once_for_every_check_and_again_when_it_changes(tmp_path, monkeypatch):
    """The form checks a request at each change, each fallback is checked, the job keeps a copy: all ask for the
    same sent copy, read and converted once (seconds for a 12 MP HEIC)."""
    from masuka.image import copies

    real, made = copies.open_picture, []
    monkeypatch.setattr(copies, "open_picture", lambda *args: made.append(args[0]) or real(*args))
    frame = tmp_path / "phone.heic"
    frame.write_bytes(SIDEWAYS_HEIC.read_bytes())
    job = VideoRequest(provider="gemini", model="veo-3.1-generate-001", prompt=PROMPT, image=str(frame), seconds=8)
    for _ in range(3):
        estimate(job)
    first = copies.plain_copy(frame)
    assert len(made) == 1 and first[0] == ".jpg"
    upright().save(frame, format="TIFF")  # another picture under the same name
    assert copies.plain_copy(frame)[0] == ".png" and len(made) == 2


def test_a_png_whose_text_pillow_will_not_read_is_sent_as_its_pixels(tmp_path):
    """A PNG with a text field past Pillow's 1 MB limit (a tool's workflow, say): the same pixels, no text."""
    from masuka.image.copies import plain_copy
    from tests.image.test_read_other_tools import big_ztxt

    suffix, data = plain_copy(Path(big_ztxt(tmp_path / "big.png")))
    with Image.open(io.BytesIO(data)) as sent:
        assert suffix == ".png" and sent.size == (64, 64) and not sent.info and len(data) < 2000


def test_a_frame_s_size_limit_applies_to_the_copy_that_is_sent(tmp_path):
    """A JPEG-compressed TIFF (lossless formats go as PNG) of 1.4 MP of noise: small as it is, 4 MB as a PNG."""
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    tiff = tmp_path / "scan.tif"
    Image.fromarray(noise).save(tiff, compression="jpeg", quality=50)
    assert tiff.stat().st_size < 3_500_000
    with pytest.raises(InvalidInput, match=r"too large for Runway \([4-5]\.\d MB as PNG; at most 3\.5 MB\)"):
        estimate(VideoRequest(provider="runway", model="gen4_turbo", prompt=PROMPT, image=str(tiff)))


@pytest.mark.parametrize("provider", ["openai", "comet"])
def test_sora_gets_its_first_frame_at_the_video_s_size_cropped_at_the_centre(studio, fake, tmp_path, provider):
    """Sora refuses a first frame of another size than the video's ("Inpaint image must match the requested width
    and height", as the stand-in answers too): a 12 MP phone photo goes cropped at the centre to the shape and
    scaled, a PNG as a PNG. The photo's byte size is no reason to refuse it: 11 MB of noise is not what is sent."""
    server = fake(provider)
    photo = Image.new("RGB", (4000, 3000), "red")
    photo.paste("blue", (0, 0, 4000, 375))  # a band at the top that a 16:9 crop at the centre leaves out
    photo.save(tmp_path / "photo.jpg", quality=90)
    photo.resize((400, 300)).save(tmp_path / "small.png")
    noise = np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.jpg", quality=97)
    assert (tmp_path / "noise.jpg").stat().st_size > 10_000_000  # more than OpenAI's limit for a picture as it is
    for name in ("photo.jpg", "small.png", "noise.jpg"):
        run(studio, provider=provider, model="sora-2", image=str(tmp_path / name), seconds=4, size="1280x720")
    sent = [job["payload"]["input_reference"] for job in server.jobs.values()]
    pictures = [Image.open(io.BytesIO(data)) for data in sent]
    assert [(p.format, p.size) for p in pictures] == [("JPEG", (1280, 720)), ("PNG", (1280, 720)),
                                                      ("JPEG", (1280, 720))]
    assert all(p.convert("RGB").getpixel((640, 10))[0] > 200 for p in pictures[:2]), "the blue band was cropped"


def test_a_size_left_out_follows_the_first_frame_s_shape(tmp_path):
    """From the CLI or the API with no size: a portrait phone photo (stored sideways) makes the model's portrait
    size, a landscape or square one its first; a size given stays."""
    Image.new("RGB", (400, 300)).save(tmp_path / "landscape.png")
    Image.new("RGB", (300, 300)).save(tmp_path / "square.png")
    veo = dict(provider="gemini", model="veo-3.1-generate-001", prompt=PROMPT)
    sizes = {name: estimate(VideoRequest(**veo, image=str(path))).size
             for name, path in (("phone", SIDEWAYS_HEIC), ("landscape", tmp_path / "landscape.png"),
                                ("square", tmp_path / "square.png"))}
    assert sizes == {"phone": "720x1280", "landscape": "1280x720", "square": "1280x720"}
    asked = VideoRequest(**veo, image=str(SIDEWAYS_HEIC), size="1280x720")
    assert estimate(asked).size == "1280x720"


def test_runway_aleph_restyles_a_source_video_of_its_own_length(studio, fake, source_video):
    server = fake("runway")
    plan = estimate(VideoRequest(provider="runway", model="aleph2", prompt=PROMPT, source_video=source_video))
    assert plan.seconds == 1 and plan.primary.cost_usd == 0.15
    row = run(studio, provider="runway", model="aleph2", source_video=source_video)
    sent = server.jobs["job1"]["payload"]
    assert sent["route"] == "/v1/video_to_video" and sent["videoUri"].startswith("data:video/mp4;base64,")
    assert (sent["model"], sent["ratio"], sent["promptText"]) == ("aleph2", "1280:720", PROMPT)
    assert "duration" not in sent
    kept = studio.config.absolute(row["params"]["request"]["source_video"])
    assert kept.is_relative_to(studio.config.outputs_dir) and kept.read_bytes() == open(source_video, "rb").read()


def test_zero_seconds_for_a_source_video_is_refused_not_taken_as_its_length(source_video):
    with pytest.raises(InvalidInput, match=r"from 1 to 60 \(got 0\)"):
        estimate(VideoRequest(provider="runway", model="aleph2", prompt=PROMPT, source_video=source_video, seconds=0))


NOT_MP4 = "is not an MP4 video: it looks like {}. Choose an MP4 clip."


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("content, words", [
    (_png(), NOT_MP4.format("a PNG image")),
    (b"\n<!DOCTYPE html><html><body>Not found</body></html>", NOT_MP4.format("an HTML page")),
    ("a clip I meant to attach – sorry\n".encode(), NOT_MP4.format("text")),
    (b'{"error": "expired"}', NOT_MP4.format("JSON text")),
    ("half", "is not a playable MP4: clip.mp4 is cut short (a box runs past the end of the file)."),
])
def test_a_source_video_that_is_no_mp4_says_what_it_is(tmp_path, sample_mp4, content, words):
    """Anything but an MP4 was "cut short (a box runs past the end of the file)": its first bytes read as a box."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(sample_mp4[:len(sample_mp4) // 2] if content == "half" else content)
    request = VideoRequest(provider="runway", model="aleph2", prompt=PROMPT, source_video=str(clip))
    with pytest.raises(InvalidInput) as refused:
        estimate(request)
    assert str(refused.value) == f"The source video 'clip.mp4' {words}"


def test_fal_gets_the_sound_choice(studio, fake):
    server = fake("fal")
    run(studio, provider="fal", model="fal-ai/veo3", audio=False, seconds=4)
    assert server.jobs["job1"]["payload"]["generate_audio"] is False


@pytest.mark.parametrize("change, words", [
    (dict(model="veo-3.1-generate-001", last_frame=1), "needs a first frame"),
    (dict(model="veo-3.1-generate-001", image=0, references=[1]), "cannot be combined"),
    (dict(model="veo-3.1-generate-001", references=[0, 1, 2, 3]), "takes 3 reference images"),
    (dict(model="veo-3.1-fast-generate-001", references=[0]), "takes no reference images"),
    (dict(model="veo-3.1-generate-001", image=0, last_frame=1, seconds=16), "^A last frame applies to one clip"),
    (dict(model="veo-3.1-generate-001", references=[0], seconds=16), "^Reference images apply to one clip"),
    (dict(model="veo-3.1-generate-001", audio=True), "no sound on/off choice"),
    (dict(model="veo-3.1-generate-001", source_video=True), "does not take a source video"),
    (dict(provider="runway", model="aleph2"), "give a source video"),
    (dict(provider="runway", model="aleph2", image=0, source_video=True),
     r"^Aleph 2 \(video to video\) takes no first frame: remove it, or choose a model that takes one\.$"),
    (dict(provider="runway", model="gen4.5", image=0, last_frame=1), "takes no last frame"),
])
def test_inputs_a_model_does_not_take_are_refused_before_anything_is_sent(frames, source_video, change, words):
    values = dict(provider="gemini", prompt=PROMPT)
    values.update(change)
    for name in ("image", "last_frame"):
        if name in values:
            values[name] = frames[values[name]]
    values["references"] = [frames[n] for n in values.get("references", [])]
    if values.get("source_video"):
        values["source_video"] = source_video
    with pytest.raises(InvalidInput, match=words):
        estimate(VideoRequest(**values))


def test_reuse_gives_back_the_frames_and_the_source_video(studio, fake, frames, source_video):
    fake("gemini")
    fake("runway")
    framed = run(studio, provider="gemini", model="veo-3.1-generate-001", image=frames[0], last_frame=frames[1])
    _kind, fields = reuse_parameters(studio, LOCAL_USER, True, f"g{framed['result']['generation_id']}")
    assert open(fields["last_frame"], "rb").read() == open(frames[1], "rb").read()
    assert open(fields["image"], "rb").read() == open(frames[0], "rb").read()
    edited = run(studio, provider="runway", model="aleph2", source_video=source_video)
    _kind, fields = reuse_parameters(studio, LOCAL_USER, True, f"g{edited['result']['generation_id']}")
    assert open(fields["source_video"], "rb").read() == open(source_video, "rb").read()


def test_veo_request_matches_google_genai(studio, fake, frames):
    from google import genai  # installed by requirements-test.txt: a broken SDK fails here, loudly
    server = fake("gemini")
    run(studio, provider="gemini", model="veo-3.1-generate-001", image=frames[0], last_frame=frames[1], seconds=6,
        negative_prompt="blurry")
    ours = server.requests_to(":predictLongRunning")[0]
    client = genai.Client(api_key=KEY, http_options=genai.types.HttpOptions(base_url=server.base))
    png = [open(path, "rb").read() for path in frames[:2]]
    client.models.generate_videos(
        model="veo-3.1-generate-001", prompt=PROMPT, image=genai.types.Image(image_bytes=png[0], mime_type="image/png"),
        config=genai.types.GenerateVideosConfig(
            last_frame=genai.types.Image(image_bytes=png[1], mime_type="image/png"), duration_seconds=6,
            aspect_ratio="16:9", resolution="720p", negative_prompt="blurry"))
    theirs = server.requests_to(":predictLongRunning")[1]
    assert ours.path == theirs.path and ours.headers["x-goog-api-key"] == theirs.headers["x-goog-api-key"]
    assert json.loads(ours.body) == json.loads(theirs.body)


def test_runway_video_to_video_matches_runwayml(studio, fake, source_video):
    import runwayml
    server = fake("runway")
    run(studio, provider="runway", model="aleph2", source_video=source_video)
    ours = server.requests_to("/v1/video_to_video")[0]
    client = runwayml.RunwayML(api_key=KEY, base_url=server.base, max_retries=0)
    client.video_to_video.create(model="aleph2", video_uri=json.loads(ours.body)["videoUri"], prompt_text=PROMPT,
                                 ratio="1280:720")
    theirs = server.requests_to("/v1/video_to_video")[1]
    assert json.loads(ours.body) == json.loads(theirs.body)
    for header in ("authorization", "x-runway-version"):
        assert ours.headers[header] == theirs.headers[header]


def test_each_user_may_reuse_the_inputs_kept_with_their_own_video(tmp_path, fake, frames):
    """On a shared studio the first and last frame and reference images copied with a job are its owner's (and
    admins'), so History's Reuse can put them back into the form; other users get nothing."""
    from masuka.access import file_owner, readable
    from masuka.config import Config
    from masuka.errors import NotFound
    from masuka.studio import Studio

    fake("gemini")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:1,bob:2"))
    try:
        framed = run(studio, provider="gemini", model="veo-3.1-generate-001", image=frames[0], last_frame=frames[1],
                     owner="alice")
        referenced = run(studio, provider="gemini", model="veo-3.1-generate-001", references=frames[2:4],
                         seconds=8, owner="alice")
        kept = [framed["params"]["request"][name] for name in ("image", "last_frame")]
        kept += referenced["params"]["request"]["references"]
        for stored in kept:
            path = studio.config.absolute(stored)
            assert file_owner(studio, path) == "alice" and readable(studio, "alice", path) == path.resolve()
            with pytest.raises(NotFound):
                readable(studio, "bob", path)
        again = run(studio, provider="gemini", model="veo-3.1-generate-001", image=str(readable(
            studio, "alice", studio.config.absolute(kept[0]))), owner="alice")
        assert again["status"] == "completed"
    finally:
        studio.close()


def _png_header_only(path, width: int, height: int) -> str:
    """A PNG that says it is ``width`` x ``height`` (what Pillow reads before refusing or loading it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return str(path)


@pytest.mark.parametrize("role", ["image", "last_frame", "references"])
@pytest.mark.parametrize("side", [9000, 20000])  # above the pixel cap; so large that Pillow calls it a bomb
def test_a_frame_of_too_many_pixels_is_refused_in_one_line(tmp_path, frames, role, side):
    huge = _png_header_only(tmp_path / "huge.png", side, side)
    values = dict(provider="gemini", model="veo-3.1-generate-001", prompt=PROMPT, image=frames[0])
    values.update({role: [huge] if role == "references" else huge})
    if role == "references":
        values.pop("image")
    with pytest.raises(InvalidInput, match="is too large.*megapixels"):
        estimate(VideoRequest(**values))


@pytest.mark.parametrize("change, words", [
    (dict(provider="runway", model="gen4.5"), "Gen-4.5 takes no negative prompt"),
    (dict(provider="openai", model="sora-2"), "Sora 2 takes no negative prompt"),
    (dict(provider="comet", model="veo3-fast"), r"Veo 3 Fast \(CometAPI\) takes no negative prompt"),
    (dict(provider="gemini", model="veo-3.1-generate-001", fallback=["runway:veo3.1"]),
     r"Veo 3.1 \(Runway\) takes no negative prompt"),
    (dict(provider="fal", model="fal-ai/veo3.1", image=0), "from text alone, not from a frame \\(a first frame\\)"),
    (dict(provider="fal", model="fal-ai/veo3.1/fast", seconds=16), "not from a frame \\(a chain of clips\\)"),
])
def test_a_negative_prompt_is_refused_where_the_model_would_drop_it(frames, change, words):
    """Runway, OpenAI and CometAPI send no negative prompt, nor fal's Veo 3.1 image route (also the one a chain's
    later clips take): refused before anything is sent, not recorded as sent and dropped."""
    values = dict(prompt=PROMPT, negative_prompt="no smoke, please", **change)
    if "image" in values:
        values["image"] = frames[values["image"]]
    with pytest.raises(InvalidInput, match=words):
        estimate(VideoRequest(**values))
    assert estimate(VideoRequest(**{**values, "negative_prompt": " "})).request.negative_prompt == ""


def _takes_negative() -> list[tuple[str, str]]:
    from masuka.video.catalog import REMOTE_PROVIDERS, video_catalog
    from masuka.video.request import negative_prompt_use

    return [(provider, model) for provider in REMOTE_PROVIDERS
            for model, entry in video_catalog()[provider]["models"].items() if negative_prompt_use(provider, entry)]


@pytest.mark.parametrize("provider, model", _takes_negative())
def test_every_model_that_takes_a_negative_prompt_sends_it(studio, fake, frames, provider, model):
    """The catalog flag is a promise: each flagged model's provider module puts the negative prompt in the request,
    from text and (unless the flag says text alone) from a first frame."""
    from masuka.video.catalog import model_entry
    from masuka.video.request import negative_prompt_use

    server = fake(provider)
    entry = model_entry(provider, model)
    ways = ([{}] if entry.get("text", True) else []) + (
        [{"image": frames[0]}] if entry.get("image") and negative_prompt_use(provider, entry) is True else [])
    for extra in ways:
        run(studio, provider=provider, model=model, negative_prompt="no smoke, please",
            seconds=min(entry["durations"]), size=entry["sizes"][0], **extra)
    assert len(server.jobs) == len(ways) >= 1
    assert all("no smoke, please" in json.dumps(job["payload"]) for job in server.jobs.values())


def test_a_source_video_sets_the_length_and_another_length_is_refused(tmp_path):
    """Aleph's output is as long as its source clip: priced and recorded at that length, never at another."""
    from masuka.testing.video import make_mp4

    clip = str(make_mp4(tmp_path / "three.mp4", frames=24))  # 3 s at 8 fps
    values = dict(provider="runway", model="aleph2", prompt=PROMPT, source_video=clip)
    assert estimate(VideoRequest(**values)).seconds == estimate(VideoRequest(**values, seconds=3)).seconds == 3
    with pytest.raises(InvalidInput, match=r"as long as its source video, 3 s \(got 5\)"):
        estimate(VideoRequest(**values, seconds=5))


def test_a_source_video_is_probed_once_until_it_changes(tmp_path, monkeypatch):
    """One change of the Video form asks for the source clip's length several times: ffmpeg reads it once."""
    import imageio_ffmpeg

    from masuka.testing.video import make_mp4
    from masuka.video.request import source_seconds

    probes = []
    count = imageio_ffmpeg.count_frames_and_secs
    monkeypatch.setattr(imageio_ffmpeg, "count_frames_and_secs", lambda path: probes.append(path) or count(path))
    clip = make_mp4(tmp_path / "clip.mp4", frames=16)  # 2 s at 8 fps
    assert [source_seconds("runway", str(clip)) for _ in range(3)] == [2, 2, 2] and len(probes) == 1
    make_mp4(clip, frames=24)  # the same file made again, longer: probed again
    assert source_seconds("runway", str(clip)) == 3 and len(probes) == 2
    clip.unlink()
    with pytest.raises(InvalidInput, match="'clip.mp4' was not found"):
        source_seconds("runway", str(clip))


def test_deleting_a_video_job_entry_keeps_its_inputs_the_owners(tmp_path, fake, frames):
    """The video a job made still uses the job's input copies once the job's History entry is deleted: they stay
    its owner's (Reuse gives them back), not admins' only."""
    from masuka.access import file_owner, readable
    from masuka.config import Config
    from masuka.history.actions import delete_entries
    from masuka.studio import Studio

    fake("gemini")
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:1,bob:2"))
    try:
        row = run(studio, provider="gemini", model="veo-3.1-generate-001", image=frames[0], owner="alice")
        kept = studio.config.absolute(row["params"]["request"]["image"])
        delete_entries(studio, "alice", False, [f"j{row['id']}"])
        assert kept.is_file() and file_owner(studio, kept) == "alice"
        _kind, fields = reuse_parameters(studio, "alice", False, f"g{row['result']['generation_id']}")
        assert readable(studio, "alice", fields["image"]) == kept.resolve()
    finally:
        studio.close()
