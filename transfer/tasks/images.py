"""Cheap integrity check of image files before training: present, non-empty, a known format, complete.

Detectron2 decodes an image only when a training step first draws it, so a JPEG cut in half (an
interrupted copy or download) crashes a run hours in. Decoding every image of COCO up front would take
minutes; a complete JPEG ends with the EOI marker (``FF D9``) and a complete PNG with its ``IEND`` chunk, so
reading each file's first and last bytes finds truncation without decoding. ``decode=True`` also decodes
the pixels with PIL (slow, thorough).
"""

from __future__ import annotations

import os
from pathlib import Path

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_TAIL = 64  # a few encoders pad after the end marker
_ORIENTATION, _TRANSPOSED = 274, (5, 6, 7, 8)  # EXIF orientations that swap width and height
# PIL modes that Detectron2's read_image (``Image.convert("RGB")``, then BGR by flipping) shows as the image they
# hold: tested one by one against an independent conversion (tests/test_hostile_data_round3.py). Others are
# refused: 16/32-bit integer and float greyscale are clipped to 0..255 (a 16-bit PNG reads as all white).
FAITHFUL_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB"})
_TO_8_BITS = ("convert it to 8 bits (e.g. numpy: Image.fromarray((np.asarray(img) >> 8).astype('uint8')), "
              "or ImageMagick: convert IN -depth 8 OUT)")


def mode_problem(mode: str) -> str | None:
    """Why Detectron2 would read an image of PIL ``mode`` as other pixels than it holds (one phrase), or None."""
    if mode in FAITHFUL_MODES:
        return None
    if mode.startswith("I;16"):
        return (f"a 16-bit greyscale image (mode {mode}): Detectron2 reads every pixel above 255 as 255 (an "
                f"all-white image); {_TO_8_BITS}")
    if mode == "I":
        return (f"a 32-bit integer greyscale image (mode {mode}): Detectron2 clips every pixel to 0..255 (16-bit "
                f"data reads as all white); {_TO_8_BITS}")
    if mode == "F":
        return (f"a floating-point greyscale image (mode {mode}): Detectron2 clips every pixel to 0..255 (values "
                "in 0..1 read as black); save it as 8-bit greyscale or RGB")
    return (f"an image of PIL mode {mode}, which Detectron2's reader does not convert to RGB faithfully; save it "
            "as 8-bit RGB or greyscale")


def image_problem(path: str | os.PathLike, size: tuple[int, int] | None = None, decode: bool = False) -> str | None:
    """One line describing what is wrong with the image at ``path``, or ``None`` when it looks complete.

    ``size``: the (width, height) the annotations state; Detectron2 stops training with a size-mismatch
    error when the image disagrees, so it is compared with the file's header.
    """
    from core.files import irregular

    p = Path(path)
    if irregular(p):  # a FIFO would block the read below, a device never end
        return f"{p}: {irregular(p)}"
    try:
        nbytes = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            f.seek(max(0, nbytes - _TAIL))
            tail = f.read(_TAIL)
    except FileNotFoundError:
        return f"{p}: missing"
    except OSError as e:
        return f"{p}: cannot be read ({e.strerror or e})"
    if nbytes == 0:
        return f"{p}: empty file (0 bytes); copy it again"
    if head.startswith(_JPEG_START):
        if _JPEG_END not in tail.rstrip(b"\x00\r\n "):
            return f"{p}: truncated JPEG (no end-of-image marker; {nbytes} bytes); copy or download it again"
    elif head.startswith(_PNG_START):
        if _PNG_END not in tail:
            return f"{p}: truncated PNG (no IEND chunk; {nbytes} bytes); copy or download it again"
    else:
        decode = True  # another format: only decoding tells
    return _header_problem(p, size, decode)


def _pixels(p: Path) -> str:
    """``20000x20000`` from the header, read with PIL's size guard off (only the header is read)."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(p) as img:
            return f"{img.size[0]}x{img.size[1]}"
    except Exception:  # noqa: BLE001  (only for the message)
        return "too many"
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _header_problem(p: Path, size: tuple[int, int] | None, decode: bool) -> str | None:
    from PIL import Image

    try:
        with Image.open(p) as img:
            real = img.size  # from the header; pixels are decoded only by load()
            bad_mode = mode_problem(img.mode)
            if img.getexif().get(_ORIENTATION) in _TRANSPOSED:  # Detectron2's read_image applies EXIF rotation
                real = real[::-1]
            if decode:
                img.load()
    except Image.DecompressionBombError:
        return (f"{p}: {_pixels(p)} pixels, more than PIL (and Detectron2's image reader) opens "
                f"({2 * Image.MAX_IMAGE_PIXELS:,}); downscale the image and its annotations")
    except (OSError, ValueError, SyntaxError) as e:
        return f"{p}: unreadable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if bad_mode:
        return f"{p}: {bad_mode}"
    if size is not None and tuple(size) != tuple(real):
        return (f"{p}: the annotations say {size[0]}x{size[1]} but the image is {real[0]}x{real[1]} "
                "(Detectron2 stops with a size mismatch); fix the annotation's size")
    return None
