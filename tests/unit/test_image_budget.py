"""Decoding within a budget counted from headers (pez.images): a request over budget, or a bomb at
the end of a list, is refused before any decode; a 16-bit PNG costs its real bytes; JPEGs decode at
a reduced scale; every image is shrunk to WORK_SIDE right after decoding, and memory comes back."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import pez
import pez.images as images
from pez.images import WORK_SIDE, DecodeBudget, check_request, decode_cost, load_image, load_images

BIG = 6320  # 6320 x 6320 = 39.9 megapixels, just under pez.config.MAX_IMAGE_PIXELS


def solid_png(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG of one colour written row by row (never holding the decoded image): a 6320 x 6320
    RGB one is ~120 KB, the issue's probe."""
    channels = {0: 1, 2: 3}[colour_type]
    row = b"\0" + bytes(width * channels * bit_depth // 8)  # filter 0, then black pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("budget") / "big.png"
    path.write_bytes(solid_png(BIG, BIG))
    assert path.stat().st_size < 200_000
    return path


@pytest.fixture(scope="module")
def big_png16(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("budget") / "big16.png"
    path.write_bytes(solid_png(BIG, BIG, bit_depth=16, colour_type=0))  # 16-bit greyscale
    return path


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Every pixel decode PIL starts (ImageFile.load), counted."""
    calls: list = []
    real = ImageFile.ImageFile.load

    def counted(self):
        calls.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return calls


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


def peak_reset() -> bool:
    """Reset VmHWM (Linux: write 5 to clear_refs); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_request_of_32_big_pngs_is_refused_before_any_decode(big_png, decodes):
    before = rss()
    with pytest.raises(pez.InvalidImageError, match=r"too much to decode in one request.*megapixels") as e:
        load_images([big_png] * 32)
    assert decodes == []
    assert "send fewer or smaller images" in str(e.value)
    with pytest.raises(pez.InvalidImageError, match="too much to decode"):
        check_request([str(big_png)] * 32)
    assert decodes == []
    assert rss() - before < 100 * 2**20  # generous: nothing decoded, nothing kept


def test_a_bomb_at_the_end_is_refused_before_the_first_decode(tmp_path, decodes):
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64), "red").save(small)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(solid_png(12_000, 12_000, colour_type=0))  # 144 MP of grey, ~150 KB
    with pytest.raises(pez.InvalidImageError, match="bomb.png: image too large"):
        load_images([small] * 31 + [bomb])
    assert decodes == []


def test_the_request_total_counts_every_image(big_png, decodes):
    assert decode_cost(big_png).pixels == BIG * BIG
    tight = DecodeBudget(request_pixels=3 * BIG * BIG)
    assert check_request([big_png] * 3, tight).pixels == 3 * BIG * BIG
    with pytest.raises(pez.InvalidImageError, match="4 images"):
        check_request([big_png] * 4, tight)
    assert decodes == []


def test_a_16_bit_png_costs_its_bytes_and_memory_comes_back(big_png16):
    cost = decode_cost(big_png16)
    assert cost.bytes == 2 * BIG * BIG  # 'I;16': two bytes a pixel (8-bit grey: one)
    with pytest.raises(pez.InvalidImageError, match=r"big16.png: image too large to decode .* I;16"):
        load_image(big_png16, budget=DecodeBudget(image_bytes=cost.bytes - 1))
    can_peak = peak_reset()
    before = rss()
    img = load_image(big_png16)
    assert img.mode == "RGB" and img.size == (WORK_SIDE, WORK_SIDE)
    # Generous bounds (the allocator's business), far below the ~763 MB of a full-size float conversion.
    if can_peak:
        assert peak() - before < cost.bytes + 200 * 2**20
    del img
    assert rss() - before < 100 * 2**20


def test_a_jpeg_decodes_at_a_reduced_scale(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (2048, 1536), (10, 200, 30)).save(buf, "JPEG")
    assert decode_cost(buf.getvalue()).pixels == 1024 * 768  # 1/2 scale leaves the short side >= 512
    img = load_image(buf.getvalue())
    assert img.size == (683, WORK_SIDE)
    assert np.abs(np.asarray(img, dtype=int)[300, 300] - (10, 200, 30)).max() < 8


def test_shrunk_after_decoding_and_upright(tmp_path):
    arr = np.zeros((600, 1200, 3), np.uint8)
    arr[:, :600] = 255  # left half white
    src = Image.fromarray(arr)
    exif = src.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    buf = io.BytesIO()
    src.save(buf, "JPEG", exif=exif)
    img = load_image(buf.getvalue())
    assert img.size == (WORK_SIDE, 1024)  # upright: tall
    top, bottom = np.asarray(img)[100].mean(), np.asarray(img)[-100].mean()
    assert top > 200 and bottom < 50  # the white half is on top after the turn
    assert load_image(Image.fromarray(arr), work_side=None).size == (1200, 600)  # no EXIF: as is


def test_small_images_are_unchanged(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    assert np.array_equal(np.asarray(load_image(path)), arr)
    assert [im.size for im in load_images([path, arr])] == [(30, 40), (30, 40)]


def test_decoded_images_and_files_are_closed(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (900, 700), (i, 0, 0)).save(paths[-1])
    closed = []
    real = Image.Image.close
    monkeypatch.setattr(Image.Image, "close", lambda self: (closed.append(self.size), real(self))[1])
    out = load_images(paths)
    assert [im.size for im in out] == [(658, WORK_SIDE)] * 3
    assert closed.count((900, 700)) == 3  # each full-size image closed once shrunk
    images.release_memory()  # a no-op where there is no malloc_trim
