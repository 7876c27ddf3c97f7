"""gald.data.png: the Up-filter PNG writer and the dataset re-encoder (lossless, verified)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from gald.data.png import UP_FILTER, reencode_png, reencode_tree, write_png
from gald.errors import ConfigError, InputFileError, OutputExistsError


def _photo(h=37, w=53, channels=3):
    rng = np.random.default_rng(0)
    base = np.cumsum(rng.integers(-3, 4, (h, w, channels)), axis=1) + 128  # smooth rows, like a photo
    return np.clip(base, 0, 255).astype(np.uint8)[..., 0] if channels == 1 else np.clip(base, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("array", [_photo(), _photo(channels=1), np.zeros((1, 1), np.uint8),
                                   np.full((3, 5, 3), 255, np.uint8)])
def test_write_png_is_lossless_and_every_row_uses_the_up_filter(tmp_path, array):
    path = write_png(array, tmp_path / "x.png")
    with Image.open(path) as img:
        assert img.mode == ("L" if array.ndim == 2 else "RGB") and np.array_equal(np.asarray(img), array)
    data = path.read_bytes()
    start = data.index(b"IDAT") + 4
    raw = zlib.decompress(data[start:start + int.from_bytes(data[start - 8:start - 4], "big")])
    row = array[0].size + 1
    assert raw[::row] == bytes([UP_FILTER]) * array.shape[0]  # the filter byte of every row
    assert not list(tmp_path.glob("*.tmp"))


def test_write_png_refuses_what_it_cannot_store(tmp_path):
    for bad in (np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            write_png(bad, tmp_path / "x.png")


def _write_rgb16(path):
    """A 2×2 16-bit RGB PNG, written by hand (PIL cannot write one)."""
    import struct

    rows = b"".join(b"\x00" + bytes(range(12)) for _ in range(2))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_reencode_png_keeps_the_pixels_and_copies_other_files(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "rgb.png")
    Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000).save(tmp_path / "deep.png")  # 16-bit
    Image.fromarray(_photo(channels=1)).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(_photo()).save(tmp_path / "shown.png", transparency=(0, 0, 0))  # a chunk that changes display
    _write_rgb16(tmp_path / "rgb16.png")  # PIL reads 16-bit RGB as truncated 8-bit "RGB": must be copied
    (tmp_path / "meta.json").write_text("{}")
    assert reencode_png(tmp_path / "rgb.png", tmp_path / "out" / "rgb.png")
    for name in ("deep.png", "pal.png", "shown.png", "rgb16.png", "meta.json"):
        assert not reencode_png(tmp_path / name, tmp_path / "out" / name)
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / name).read_bytes()
    with Image.open(tmp_path / "out" / "rgb.png") as a, Image.open(tmp_path / "rgb.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    (tmp_path / "cut.png").write_bytes((tmp_path / "rgb.png").read_bytes()[:60])
    with pytest.raises(InputFileError, match="cut.png"):
        reencode_png(tmp_path / "cut.png", tmp_path / "out" / "cut.png")


def test_reencode_tree_mirrors_the_dataset_and_never_writes_into_the_source(tmp_path):
    from gald.data.fixtures import make_cityscapes_fixture

    src = tmp_path / "cityscapes"
    make_cityscapes_fixture(src, splits=("train",), per_split=2, coarse=False, size=(48, 96))
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    stats = reencode_tree(src, tmp_path / "up", progress=False)
    assert {p.relative_to(src) for p in before} == {p.relative_to(tmp_path / "up") for p in (tmp_path / "up").rglob("*")
                                                    if p.is_file()}
    assert stats.reencoded == 4 and stats.copied == len(before) - 4  # images and labelIds (RGBA colour, 16-bit ids: copied)
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # only read
    from gald.data.cityscapes import CityscapesSegmentation

    a, b = CityscapesSegmentation(src, split="train"), CityscapesSegmentation(tmp_path / "up", split="train")
    for i in range(len(a)):
        assert all(np.array_equal(x, y) for x, y in zip(a.load(i), b.load(i)))
    with pytest.raises(OutputExistsError, match="not empty"):
        reencode_tree(src, tmp_path / "up", progress=False)
    with pytest.raises(ConfigError, match="inside --src"):
        reencode_tree(src, src / "up", progress=False)
    with pytest.raises(InputFileError, match="no such folder"):
        reencode_tree(tmp_path / "nope", tmp_path / "x", progress=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        reencode_tree(src, tmp_path / "a-file", progress=False)
