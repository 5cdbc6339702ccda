"""Reading, resizing and scaling image files (PNG / JPEG / anything Pillow decodes)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Decodes an image file as RGB and resizes it to ``size`` x ``size`` (bilinear).

    Args:
        path: the image file.
        size: output height and width in pixels.

    Returns:
        [size, size, 3] uint8.

    Raises:
        ValueError: naming the file, when it is not a decodable image (corrupt, truncated,
            not an image).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a truncated file fails here
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: cannot decode image ({err}); expected a PNG/JPEG image file") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """Encodes a [H, W, 3] uint8 image as PNG (lossless)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def scale_images(images: np.ndarray) -> np.ndarray:
    """Scales uint8 pixels to [-1, 1]: (x / 255 - 0.5) / 0.5, as the paper's normalisation.

    Args:
        images: [N, H, W, C] uint8.

    Returns:
        [N, H, W, C] float32 in [-1, 1].
    """
    return (np.asarray(images, np.float32) / 255.0 - 0.5) / 0.5
