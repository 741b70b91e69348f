"""Any folder tree of images Pillow can read: shorter side resized, centre-cropped, uint8."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from sde_data.download import DatasetNotFoundError
from sde_data.types import DataError, ImageDataset

MODES = {1: "L", 3: "RGB"}  # num_channels -> Pillow mode


def list_images(directory: Path) -> list[Path]:
    """Files under `directory` (recursively, sorted) whose suffix Pillow knows how to open."""
    from PIL import Image

    suffixes = {s.lower() for s in Image.registered_extensions()}
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def to_square(img, image_size: int | None):
    """Resize the shorter side to `image_size` (bicubic, antialiased), then centre-crop."""
    from PIL import Image

    if image_size is None:
        return img
    w, h = img.size
    scale = image_size / min(w, h)
    new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    img = img.resize((new_w, new_h), Image.BICUBIC)  # Pillow filters when shrinking
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    return img.crop((left, top, left + image_size, top + image_size))


def read_image(path: Path, *, mode: str, image_size: int | None) -> np.ndarray | None:
    """`[H, W, C]` uint8 array, or None (with a warning naming the file) if Pillow cannot read it.

    A decompression bomb (more pixels than Pillow's Image.MAX_IMAGE_PIXELS: a small file that
    would decode to gigabytes) is skipped too: Pillow only warns below twice that limit, which
    here is turned into a refusal before any pixel is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = to_square(img.convert(mode), image_size)
                arr = np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        warnings.warn(f"image_folder: skipping {path}, a possible decompression bomb: {e}", stacklevel=3)
        return None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        warnings.warn(f"image_folder: skipping unreadable file {path}: {e}", stacklevel=3)
        return None
    return arr.reshape(arr.shape[0], arr.shape[1], -1)


def resolve_dir(root: str | Path | None, split: str) -> Path:
    """`root/<split>` when that folder exists, else `root` (then both splits are the same)."""
    if root is None:
        raise DataError("data set 'image_folder' needs root=<folder of images>, got None")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetNotFoundError(f"image folder {base} does not exist or is not a directory; "
                                   "point data.root at a folder of images")
    return base / split if (base / split).is_dir() else base


def load_image_folder(*, split: str = "train", root: str | Path | None = None,
                      image_size: int | None = None, num_channels: int | None = None) -> ImageDataset:
    """All readable images under `root` as uint8 `[N, C, image_size, image_size]`, labels None."""
    channels = 3 if num_channels is None else num_channels
    if channels not in MODES:
        raise DataError(f"image_folder: num_channels must be 1 or 3, got {num_channels}")
    directory = resolve_dir(root, split)
    arrays = [(p, a) for p in list_images(directory)
              if (a := read_image(p, mode=MODES[channels], image_size=image_size)) is not None]
    if not arrays:
        raise DataError(f"image folder {directory} contains no image Pillow can read "
                         "(searched recursively)")
    first_path, first = arrays[0]
    for path, a in arrays:
        if a.shape != first.shape:  # only possible when image_size is None
            raise DataError(f"images differ in size: {first_path} is {list(first.shape[:2])}, "
                             f"{path} is {list(a.shape[:2])}; set image_size to resize them")
    images = torch.from_numpy(np.stack([a for _, a in arrays])).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(images=images, labels=None, name="image_folder")
