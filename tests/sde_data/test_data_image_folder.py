"""image_folder: recursive discovery, resize + centre crop, channels, unreadable files, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from sde_data import load_dataset


def save(path, array, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_resize_shorter_side_and_centre_crop(tmp_path):
    # 20 x 40 (H x W): left quarter red, middle half green, right quarter blue
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10, 0], a[:, 10:30, 1], a[:, 30:, 2] = 255, 255, 255
    save(tmp_path / "wide.png", a)
    save(tmp_path / "sub" / "deeper" / "flat.png", np.full((8, 8, 3), 77, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_dataset("image_folder", root=tmp_path, image_size=10)
    assert data.images.shape == (2, 3, 10, 10) and data.images.dtype == torch.uint8
    assert data.labels is None
    # files are sorted: sub/deeper/flat.png then wide.png
    assert torch.equal(data.images[0], torch.full((3, 10, 10), 77, dtype=torch.uint8))
    # 20x40 -> 10x20, crop columns 5..15 of the 20: the green middle half only
    wide = data.images[1].int()
    assert (wide[1] > 200).all() and (wide[0] < 60).all() and (wide[2] < 60).all()


def test_grayscale_and_shape_check(tmp_path):
    save(tmp_path / "a.png", np.full((16, 16, 3), (200, 100, 0), np.uint8))
    gray = load_dataset("image_folder", root=tmp_path, image_size=16, num_channels=1)
    assert gray.images.shape == (1, 1, 16, 16)
    # Pillow's L = (299 R + 587 G + 114 B) / 1000
    assert abs(int(gray.images[0, 0, 0, 0]) - round(0.299 * 200 + 0.587 * 100)) <= 1
    with pytest.raises(ValueError, match="num_channels must be 1 or 3"):
        load_dataset("image_folder", root=tmp_path, image_size=16, num_channels=2)


def test_split_subfolders_and_size_mismatch(tmp_path):
    save(tmp_path / "train" / "a.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "test" / "b.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "test" / "c.png", np.zeros((6, 6, 3), np.uint8))
    assert len(load_dataset("image_folder", root=tmp_path)) == 1
    with pytest.raises(ValueError, match="differ in size.*image_size"):
        load_dataset("image_folder", root=tmp_path, split="test")
    assert load_dataset("image_folder", root=tmp_path, split="test", image_size=4).images.shape == (2, 3, 4, 4)


def test_unreadable_file_is_skipped_with_a_warning(tmp_path):
    save(tmp_path / "good.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not really a png")
    with pytest.warns(UserWarning, match="broken.png"):
        data = load_dataset("image_folder", root=tmp_path, image_size=4)
    assert len(data) == 1


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_dataset("image_folder", root=tmp_path / "nope", image_size=8)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image"):
        load_dataset("image_folder", root=tmp_path / "empty", image_size=8)
    with pytest.raises(ValueError, match="root"):
        load_dataset("image_folder", image_size=8)


def _png_declaring(path, width, height):
    """A small valid PNG whose header then claims width x height pixels (a decompression bomb)."""
    import struct
    import zlib

    save(path, np.zeros((4, 4, 3), np.uint8))
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4:start + 12] = struct.pack(">II", width, height)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["above-the-warning-limit", "above-the-error-limit"])
def test_a_decompression_bomb_is_skipped_with_a_warning_naming_it(tmp_path, side):
    """Pillow warns above Image.MAX_IMAGE_PIXELS (89.5M) and refuses above twice that: either way
    the file is skipped like any unreadable one, before a pixel is decoded."""
    save(tmp_path / "a.png", np.full((8, 8, 3), 9, np.uint8))
    _png_declaring(tmp_path / "bomb.png", side, side)
    with pytest.warns(UserWarning, match=r"skipping .*bomb\.png, a possible decompression bomb"):
        data = load_dataset("image_folder", root=tmp_path, image_size=8)
    assert data.images.shape == (1, 3, 8, 8) and int(data.images[0, 0, 0, 0]) == 9


def test_data_errors_are_user_errors(tmp_path):
    from sde_data import DataError, DatasetNotFoundError
    from sde_runtime.errors import UserError

    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="contains no image Pillow can read"):
        load_dataset("image_folder", root=tmp_path, image_size=8)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("image_folder", root=tmp_path / "missing", image_size=8)
    save(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "b.png", np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(DataError, match="images differ in size"):
        load_dataset("image_folder", root=tmp_path)
    assert issubclass(DataError, UserError) and issubclass(DatasetNotFoundError, UserError)
