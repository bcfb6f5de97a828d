"""Reading user images: formats, depths, channels, bad files and huge images."""
import cv2
import numpy as np
import pytest

from ecgdigit.errors import InputError
from ecgdigit.image_io import load_image


@pytest.fixture()
def page():
    """A small paper-like RGB image: white with a red grid and a black trace."""
    img = np.full((300, 400, 3), 255, np.uint8)
    img[::20, :] = (230, 120, 120)
    img[:, ::20] = (230, 120, 120)
    cv2.line(img, (10, 150), (390, 120), (0, 0, 0), 2)
    return img


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_formats_load_as_rgb(tmp_path, page, suffix):
    path = tmp_path / f"page{suffix}"
    assert cv2.imwrite(str(path), cv2.cvtColor(page, cv2.COLOR_RGB2BGR))
    loaded = load_image(path)
    assert loaded.image.shape == page.shape and loaded.image.dtype == np.uint8
    tol = 40 if suffix in (".jpg", ".webp") else 0
    assert np.abs(loaded.image.astype(int) - page.astype(int)).mean() <= max(tol / 4, 0.01)
    assert loaded.image[0, 0, 0] > loaded.image[0, 0, 1]  # red grid stays red: channels are RGB


def test_gray_16bit_and_rgba(tmp_path, page):
    gray = cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    cv2.imwrite(str(tmp_path / "g16.png"), gray.astype(np.uint16) * 257)
    rgba = np.dstack([cv2.cvtColor(page, cv2.COLOR_RGB2BGR), np.full(gray.shape, 255, np.uint8)])
    rgba[:50, :50, 3] = 0  # transparent corner becomes white paper
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    for name in ("g.png", "g16.png"):
        img = load_image(tmp_path / name).image
        assert img.shape == page.shape and np.array_equal(img[:, :, 0], gray)
    img = load_image(tmp_path / "a.png").image
    assert (img[:50, :50] == 255).all() and np.array_equal(img[100:, 100:], page[100:, 100:])


def test_bad_files_give_clear_errors(tmp_path, page):
    with pytest.raises(InputError, match="nope.png: file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty.png: file is empty"):
        load_image(tmp_path / "empty.png")
    ok, buf = cv2.imencode(".png", page)
    (tmp_path / "trunc.png").write_bytes(buf.tobytes()[: len(buf) // 3])
    with pytest.raises(InputError, match="trunc.png: cannot decode image"):
        load_image(tmp_path / "trunc.png")
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(InputError, match="text.png: cannot decode image"):
        load_image(tmp_path / "text.png")
    cv2.imwrite(str(tmp_path / "tiny.png"), page[:40, :40])
    with pytest.raises(InputError, match=r"tiny.png: image is only 40 x 40 px"):
        load_image(tmp_path / "tiny.png")


def test_huge_images_are_downscaled(tmp_path):
    big = np.full((9000, 12000), 255, np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), big)
    loaded = load_image(tmp_path / "big.png", max_pixels=20_000_000)
    h, w = loaded.image.shape[:2]
    assert h * w <= 20_000_000 and abs(w / h - 12000 / 9000) < 0.01
    assert loaded.original_size == (12000, 9000) and loaded.scale < 0.5
