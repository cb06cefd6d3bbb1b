"""neuromv.image: every image format and mode, bad images, fitting to a frame, and finding a song's cover art."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from conftest import beat_clip, write_audio
from PIL import Image

from neuromv.errors import ImageError, ParameterError
from neuromv.image import ImageSource, find_cover_art, fit_image, load_image, parse_color


def _png_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgba_is_composited_on_the_background():
    im = Image.new("RGBA", (16, 12), (255, 0, 0, 0))
    im.paste((0, 255, 0, 255), (0, 0, 8, 12))
    data = _png_bytes(im)
    on_black = load_image(data)
    assert on_black.shape == (12, 16, 3) and on_black.dtype == np.uint8
    assert tuple(on_black[0, 0]) == (0, 255, 0) and tuple(on_black[0, 15]) == (0, 0, 0)
    assert tuple(load_image(data, background="white")[0, 15]) == (255, 255, 255)


@pytest.mark.parametrize(
    "make, fmt",
    [
        (lambda: Image.new("L", (20, 10), 128), "PNG"),
        (lambda: Image.new("1", (20, 10), 1), "PNG"),
        (lambda: Image.new("RGB", (20, 10), (10, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        (lambda: Image.new("CMYK", (20, 10), (0, 0, 0, 0)), "JPEG"),
        (lambda: Image.new("RGB", (20, 10), (200, 100, 50)), "WEBP"),
        (lambda: Image.new("RGB", (20, 10), (200, 100, 50)), "BMP"),
        (lambda: Image.new("LA", (20, 10), (90, 255)), "PNG"),
    ],
)
def test_modes_and_formats_become_rgb(make, fmt):
    out = load_image(_png_bytes(make(), fmt))
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8


def test_sixteen_bit_grayscale_keeps_its_range():
    a = np.full((10, 10), 65535, np.uint16)
    a[:, :5] = 32768
    out = load_image(_png_bytes(Image.fromarray(a)))
    assert tuple(out[0, 9]) == (255, 255, 255) and abs(int(out[0, 0, 0]) - 128) <= 1


def test_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue())
    assert out[5, 5, 0] > 200 and out[5, 5, 2] < 50


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_png_bytes(im, "JPEG", exif=exif))
    assert out.shape == (40, 20, 3)


def _bomb_png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    iend = b"IEND"
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + iend + struct.pack(">I", zlib.crc32(iend)))


def test_bad_images(tmp_path):
    good = _png_bytes(Image.new("RGB", (32, 32), (1, 2, 3)))
    cases = {
        "corrupt.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a readable image"),
        "truncated.png": (_png_bytes(Image.effect_noise((64, 64), 50).convert("RGB"))[:400], "corrupt or truncated"),
        "tiny.png": (_png_bytes(Image.new("RGB", (1, 1))), "only 1x1 pixels"),
        "bomb.png": (_bomb_png(30000, 30000), "900000000 pixels|30000x30000 pixels"),
        "bomb2.png": (_bomb_png(9000, 9000), "declares 9000x9000 pixels"),
        "text.jpg": (b"hello, not an image", "not a readable image"),
        "empty.png": (b"", "file is empty"),
    }
    for name, (data, message) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ImageError, match=message) as info:
            load_image(p)
        assert "\n" not in str(info.value) and name in str(info.value)
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    assert load_image(good).shape == (32, 32, 3)


def test_fit_cover_and_contain():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :, 0] = 255  # a red 2:1 image
    cover = fit_image(img, 64, 64, mode="cover")
    assert cover.shape == (64, 64, 3) and np.all(cover[..., 0] > 250)  # cropped, no border
    contain = fit_image(img, 64, 64, mode="contain", background="white")
    assert contain.shape == (64, 64, 3)
    assert tuple(contain[0, 32]) == (255, 255, 255) and contain[32, 32, 0] > 250  # padded top, image in the middle
    with pytest.raises(ParameterError):
        fit_image(img, 64, 64, mode="stretch")


def test_parse_color():
    assert parse_color("black") == (0, 0, 0)
    assert parse_color("#ff8000") == (255, 128, 0)
    assert parse_color("1,2,3") == (1, 2, 3)
    for bad in ("purple-ish", "1,2", "300,0,0", "#12"):
        with pytest.raises(ParameterError):
            parse_color(bad)


COVER = _png_bytes(Image.new("RGB", (24, 24), (10, 200, 30)))


def _check_art(src: ImageSource | None, where: str):
    assert src is not None and where in src.description
    assert tuple(load_image(src)[12, 12]) == (10, 200, 30)


def test_embedded_art_mp3_id3(tmp_path):
    from mutagen.id3 import APIC, ID3

    song = write_audio(tmp_path / "s.mp3", beat_clip(duration=0.5))
    tags = ID3()
    tags.add(APIC(encoding=3, mime="image/png", type=0, desc="other", data=b"junk that is not the cover"))
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=COVER))
    tags.save(song)
    _check_art(find_cover_art(song), "ID3 APIC")


def _front_cover():
    from mutagen.flac import Picture

    pic = Picture()
    pic.type, pic.mime, pic.data = 3, "image/png", COVER
    return pic


def test_embedded_art_flac(tmp_path):
    from mutagen.flac import FLAC

    song = write_audio(tmp_path / "s.flac", beat_clip(duration=0.5))
    f = FLAC(song)
    f.add_picture(_front_cover())
    f.save()
    _check_art(find_cover_art(song), "FLAC picture")


def test_embedded_art_ogg_vorbis(tmp_path):
    from mutagen.oggvorbis import OggVorbis

    song = write_audio(tmp_path / "s.ogg", beat_clip(duration=0.5))
    f = OggVorbis(song)
    f["metadata_block_picture"] = [base64.b64encode(_front_cover().write()).decode("ascii")]
    f.save()
    _check_art(find_cover_art(song), "Vorbis picture")


def test_embedded_art_m4a(tmp_path):
    from mutagen.mp4 import MP4, MP4Cover

    song = write_audio(tmp_path / "s.m4a", beat_clip(duration=0.5))
    f = MP4(song)
    f["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
    f.save()
    _check_art(find_cover_art(song), "MP4 covr")


def test_sidecar_cover_and_none(tmp_path):
    song = write_audio(tmp_path / "s.wav", beat_clip(duration=0.5))
    assert find_cover_art(song) is None
    (tmp_path / "Folder.PNG").write_bytes(COVER)
    _check_art(find_cover_art(song), "Folder.PNG next to the song")
    (tmp_path / "cover.jpg").write_bytes(_png_bytes(Image.new("RGB", (24, 24), (10, 200, 30)), "JPEG", quality=100))
    assert "cover.jpg" in find_cover_art(song).description  # cover.* wins over folder.*
