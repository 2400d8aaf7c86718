"""sat.data.image_checks: image headers read without decoding (issue 19: decompression
bombs, unsupported, empty and damaged files as one line). Real files written by Pillow,
bombs as the few header bytes that declare their size."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, features

from sat.data.image_checks import check_image_header, read_image_header
from sat.errors import UserError


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt,image,options,expected", [
    ("PNG", RGB, {}, ("png", 21, 13, 8, 3)),
    ("PNG", RGB.convert("L"), {}, ("png", 21, 13, 8, 1)),
    ("PNG", RGB.convert("P"), {}, ("png", 21, 13, 8, 3)),
    ("PNG", RGB.convert("RGBA"), {}, ("png", 21, 13, 8, 4)),
    ("PNG", Image.fromarray(np.full((13, 21), 40000, dtype=np.uint16)), {}, ("png", 21, 13, 16, 1)),
    ("JPEG", RGB, {}, ("jpeg", 21, 13, 8, 3)),
    ("JPEG", RGB, {"progressive": True}, ("jpeg", 21, 13, 8, 3)),
    ("JPEG", RGB.convert("L"), {}, ("jpeg", 21, 13, 8, 1)),
    ("GIF", RGB, {}, ("gif", 21, 13, 8, 3)),
    ("BMP", RGB, {}, ("bmp", 21, 13, 8, 3)),
    ("WEBP", RGB, {"lossless": False}, ("webp", 21, 13, 8, 3)),
    ("WEBP", RGB, {"lossless": True}, ("webp", 21, 13, 8, 4)),
])
def test_the_header_of_a_real_file_says_what_the_decoder_finds(fmt, image, options, expected):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    data = encoded(image, fmt, **options)
    header = read_image_header(data)
    assert (header.format, header.width, header.height, header.bit_depth, header.channels)[:3] == expected[:3]
    assert (header.bit_depth, header.channels) == expected[3:] or fmt == "WEBP"  # WebP: 8-bit, alpha or not
    assert (header.width, header.height) == Image.open(io.BytesIO(data)).size
    assert check_image_header(data, "x", max_pixels=21 * 13) == header


def _png_header(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def test_a_decompression_bomb_is_refused_from_its_header():
    """A 60000x60000 PNG (3.6 MB on disk, 10.8 GB decoded): refused from 33 bytes."""
    with pytest.raises(UserError, match=r"^image bomb\.png declares 60000x60000 = 3,600,000,000 pixels, more than "
                                        r"the 89,478,485 allowed") as e:
        check_image_header(_png_header(60000, 60000), "bomb.png", max_pixels=89_478_485)
    assert "\n" not in str(e.value)
    data = encoded(Image.new("RGB", (60, 50)), "JPEG")
    with pytest.raises(UserError, match="60x50 = 3,000 pixels"):
        check_image_header(data, "big.jpg", max_pixels=2_999)
    check_image_header(data, "big.jpg", max_pixels=3_000)


@pytest.mark.parametrize("data,match", [
    (b"", r"is empty \(0 bytes\)"),
    (b"hello, not an image at all", "is not an image file sat reads"),
    (_png_header(21, 13)[:20], r"damaged or truncated \(the header is cut short\)"),
    (_png_header(21, 13, depth=7), "bit depth 7 with colour type 2"),
    (_png_header(0, 13), "declares 0x13 pixels"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", r"damaged or truncated"),
    (b"\xff\xd8\xff\xda\x00\x08", "no frame header"),
])
def test_empty_unknown_and_damaged_files_are_one_line(data, match):
    with pytest.raises(UserError, match=match) as e:
        check_image_header(data, "img/a.png", max_pixels=10 ** 8)
    assert str(e.value).startswith("image img/a.png ") and "\n" not in str(e.value)


def test_a_format_the_decoder_lacks_is_refused_by_name():
    data = encoded(RGB, "BMP")
    with pytest.raises(UserError, match="is a BMP file, which is not supported here; accepted: png, jpeg"):
        check_image_header(data, "a.bmp", max_pixels=10 ** 6, formats=("png", "jpeg", "gif", "webp"))


def test_a_truncated_real_file_is_refused_or_read_never_crashes():
    """Every prefix of real files: a header, or the one-line error (never another exception)."""
    for fmt in ("PNG", "JPEG", "GIF", "BMP"):
        data = encoded(RGB, fmt)
        for n in range(1, 64):
            try:
                header = check_image_header(data[:n], "cut", max_pixels=10 ** 6)
            except UserError:
                continue
            assert (header.width, header.height) == (21, 13)
