"""An image file's size and depth read from its header, before it is decoded.

A 3.6 MB PNG of 60000 x 60000 pixels decodes to 10.8 GB: the pixels are bounded here,
from the few bytes that declare them, so a decompression bomb costs nothing.
:func:`read_image_header` parses the PNG, JPEG, GIF, WebP and BMP headers (no decoding,
no library); :func:`check_image_header` turns a bomb, an unsupported or a damaged file
into one line naming it.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sat.errors import UserError

FORMATS = ("png", "jpeg", "gif", "webp", "bmp")


@dataclass(frozen=True)
class ImageHeader:
    format: str  # one of FORMATS
    width: int
    height: int
    bit_depth: int  # bits per channel (PNG 1..16, JPEG 8 or 12, BMP bits per pixel / channels)
    channels: int  # as decoded to (a palette decodes to 3)
    frames: int = 1  # an animated GIF's: each is decoded to a whole screen

    @property
    def pixels(self) -> int:
        return self.width * self.height


class _Unreadable(ValueError):
    """The header is damaged or cut short (the message says how)."""


class _Bomb(ValueError):
    """The header declares more than its own image (a frame beyond a GIF's screen)."""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    size = struct.calcsize(fmt)
    if len(data) < offset + size:
        raise _Unreadable("the header is cut short")
    return struct.unpack_from(fmt, data, offset)


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png(data: bytes) -> ImageHeader:
    length, kind = _unpack(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        raise _Unreadable("its first chunk is not IHDR")
    width, height, depth, colour = _unpack(">IIBB", data, 16)
    if colour not in _PNG_CHANNELS or depth not in _PNG_DEPTHS[colour]:
        raise _Unreadable(f"bit depth {depth} with colour type {colour} is not a PNG's")
    return ImageHeader("png", width, height, depth, _PNG_CHANNELS[colour])


_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # SOFn


def _jpeg(data: bytes) -> ImageHeader:
    offset = 2
    while True:
        (mark, marker) = _unpack(">BB", data, offset)
        if mark != 0xFF:
            raise _Unreadable("a segment does not start with a marker")
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            offset += 2
            continue
        if marker in (0xD9, 0xDA):
            raise _Unreadable("no frame header before the image data")
        (length,) = _unpack(">H", data, offset + 2)
        if marker in _JPEG_FRAMES:
            precision, height, width, channels = _unpack(">BHHB", data, offset + 4)
            if height == 0:
                raise _Unreadable("its height is given after the image data (DNL), which is not supported")
            return ImageHeader("jpeg", width, height, precision, channels)
        if length < 2:
            raise _Unreadable(f"a segment length of {length}")
        offset += 2 + length


def _skip_sub_blocks(data: bytes, offset: int) -> int:
    """The offset after a chain of GIF data sub-blocks (each a length byte, then that many bytes; 0 ends it)."""
    while True:
        (size,) = _unpack("B", data, offset)
        offset += 1 + size
        if size == 0:
            return offset


def _gif(data: bytes) -> ImageHeader:
    """A GIF's logical screen, and its frames: each frame descriptor is checked, because a
    decoder allocates what a frame declares (a 1x1 screen holding a 16000x16000 frame took
    1.66 GB) and decodes every frame to a screen of its own. Needs the whole file."""
    width, height, packed = _unpack("<HHB", data, 6)
    offset = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)  # after the global colour table
    frames = 0
    while offset < len(data):
        (block,) = _unpack("B", data, offset)
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: its label, then sub-blocks
            offset = _skip_sub_blocks(data, offset + 2)
        elif block == 0x2C:  # a frame
            left, top, w, h, local = _unpack("<HHHHB", data, offset + 1)
            if left + w > width or top + h > height:
                raise _Bomb(f"a frame of {w}x{h} pixels at ({left}, {top}) outside its {width}x{height} screen")
            frames += 1
            offset += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            offset = _skip_sub_blocks(data, offset + 1)  # after the LZW code size
        else:
            raise _Unreadable(f"an unknown block 0x{block:02x}")
    return ImageHeader("gif", width, height, 8, 3, frames=max(frames, 1))


def _webp(data: bytes) -> ImageHeader:
    (chunk,) = _unpack("4s", data, 12)
    if chunk == b"VP8 ":
        start, w, h = _unpack("<3sHH", data, 23)
        if start != b"\x9d\x01\x2a":
            raise _Unreadable("its VP8 frame has no start code")
        return ImageHeader("webp", w & 0x3FFF, h & 0x3FFF, 8, 3)
    if chunk == b"VP8L":
        signature, bits = _unpack("<BI", data, 20)
        if signature != 0x2F:
            raise _Unreadable("its VP8L stream has no signature")
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 8, 4)
    if chunk == b"VP8X":
        w = int.from_bytes(_unpack("3s", data, 24)[0], "little") + 1
        h = int.from_bytes(_unpack("3s", data, 27)[0], "little") + 1
        return ImageHeader("webp", w, h, 8, 4)
    raise _Unreadable(f"its first chunk {chunk!r} is not VP8, VP8L or VP8X")


def _bmp(data: bytes) -> ImageHeader:
    (size,) = _unpack("<I", data, 14)
    if size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _planes, bpp = _unpack("<HHHH", data, 18)
        compression = 0
    elif size >= 40:
        width, height, _planes, bpp, compression = _unpack("<iiHHI", data, 18)
    else:
        raise _Unreadable(f"a DIB header of {size} bytes")
    if bpp not in (1, 4, 8, 16, 24, 32):
        raise _Unreadable(f"{bpp} bits per pixel")
    if compression not in (0, 1, 2, 3):  # none, RLE8, RLE4, bit fields (4, 5: embedded JPEG/PNG)
        raise _Unreadable(f"compression type {compression}")
    channels = 4 if bpp == 32 else 3
    return ImageHeader("bmp", abs(width), abs(height), 8, channels)  # height < 0: rows stored top-down


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png", _png), (b"\xff\xd8", "jpeg", _jpeg), (b"GIF87a", "gif", _gif),
    (b"GIF89a", "gif", _gif), (b"BM", "bmp", _bmp),
)


def read_image_header(data: bytes) -> ImageHeader | None:
    """The header of an image file's bytes (its first few KB are enough, but for JPEGs
    with long metadata), or None when it is none of :data:`FORMATS`. Raises ValueError
    for a damaged or truncated header."""
    for signature, _name, parse in _SIGNATURES:
        if data.startswith(signature):
            return parse(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    return None


def check_image_header(data: bytes, where: str, max_pixels: int,
                       formats: Collection[str] = FORMATS) -> ImageHeader:
    """``data``'s header, checked: a one-line UserError naming ``where`` for an empty,
    unknown, unsupported (not in ``formats``) or damaged file, an image with no pixels,
    or one of more than ``max_pixels`` pixels (a decompression bomb)."""
    if not data:
        raise UserError(f"image {where} is empty (0 bytes); accepted: {', '.join(formats)} files")
    try:
        header = read_image_header(data)
    except _Bomb as e:
        raise UserError(f"image {where} declares {e} (a decompression bomb?); accepted: images whose every frame "
                        "lies within the image") from None
    except _Unreadable as e:
        raise UserError(f"image {where} is damaged or truncated ({e}); accepted: whole {', '.join(formats)} "
                        "files") from None
    if header is None:
        raise UserError(f"image {where} is not an image file sat reads (it starts with {data[:8]!r}); accepted: "
                        f"{', '.join(formats)} files")
    if header.format not in formats:
        raise UserError(f"image {where} is a {header.format.upper()} file, which is not supported here; accepted: "
                        f"{', '.join(formats)} files (convert it, e.g. to PNG)")
    if header.pixels == 0:
        raise UserError(f"image {where} declares {header.width}x{header.height} pixels; accepted: an image with pixels")
    if header.pixels * header.frames > max_pixels:
        frames = f" in each of {header.frames:,} frames" if header.frames > 1 else ""
        raise UserError(f"image {where} declares {header.width}x{header.height} = {header.pixels:,} pixels{frames}, "
                        f"more than the {max_pixels:,} allowed (a decompression bomb?); accepted: images up to "
                        f"{max_pixels:,} pixels")
    return header


def header_bytes(data: Any) -> bytes:
    """What :func:`check_image_header` needs of a file's bytes (a buffer: numpy array,
    memoryview): the first 64 KB, or a GIF whole (its frames are checked one by one)."""
    view = memoryview(data).cast("B")
    return view.tobytes() if view[:3].tobytes() == b"GIF" else view[:65536].tobytes()
