"""load_image: every PIL mode lands in RGB [0, 1] with the right content; bad files are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xaicompare.data.images import BadImageError, check_image, load_image
from xaicompare.errors import UserError

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def halves(width: int, height: int, left, right) -> np.ndarray:
    """uint8 RGB image, left half one colour, right half another."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = np.array(left) * 255
    array[:, width // 2:] = np.array(right) * 255
    return array


def test_rgb_png_is_exact_with_resize_policy(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png", size=16, policy="resize")
    assert loaded.dtype == torch.float32 and loaded.shape == (3, 16, 16)
    assert torch.equal(loaded, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_grayscale_and_bilevel_become_equal_rgb_channels(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    loaded = load_image(tmp_path / "g.png", size=8, policy="resize")
    for channel in loaded:
        assert torch.equal(channel, torch.from_numpy(gray).float() / 255)


def test_palette_image_maps_through_its_palette(tmp_path):
    im = Image.new("P", (8, 8))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (4, 0, 8, 8))  # right half = palette entry 1 (blue)
    im.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png", size=8, policy="resize")
    assert torch.allclose(loaded[:, :, :4], torch.tensor(RED)[:, None, None].expand(3, 8, 4))
    assert torch.allclose(loaded[:, :, 4:], torch.tensor(BLUE)[:, None, None].expand(3, 8, 4))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :2, 3] = 0  # left: fully transparent -> white
    rgba[:, 2:, 3] = 102  # right: 40% red over white -> (1, 0.6, 0.6)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    loaded = load_image(tmp_path / "t.png", size=4, policy="resize")
    assert torch.allclose(loaded[:, :, :2], torch.ones(3, 4, 2))
    expected = torch.tensor([1.0, 0.6, 0.6])[:, None, None].expand(3, 4, 2)
    assert torch.allclose(loaded[:, :, 2:], expected, atol=1.5 / 255)


def test_cmyk_jpeg_is_converted(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta+yellow = red
    cmyk.save(tmp_path / "c.jpg", quality=95)
    loaded = load_image(tmp_path / "c.jpg", size=16, policy="resize")
    assert torch.allclose(loaded.mean((1, 2)), torch.tensor(RED), atol=0.05)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16).repeat(4, 0).repeat(4, 1)
    Image.fromarray(values).save(tmp_path / "d.png")  # opens as I;16 (or I)
    assert Image.open(tmp_path / "d.png").mode in ("I;16", "I")
    loaded = load_image(tmp_path / "d.png", size=8, policy="resize")
    expected = torch.from_numpy(np.rint(values / 65535 * 255) / 255).float()
    assert torch.allclose(loaded[0], expected) and torch.equal(loaded[0], loaded[2])


def test_exif_rotation_is_applied(tmp_path):
    im = Image.fromarray(halves(40, 20, RED, BLUE))  # stored wide: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "r.jpg", size=20, policy="resize")
    # Displayed upright it is tall, left half -> top half.
    assert torch.allclose(loaded[:, :8].mean((1, 2)), torch.tensor(RED), atol=0.1)
    assert torch.allclose(loaded[:, 12:].mean((1, 2)), torch.tensor(BLUE), atol=0.1)


@pytest.mark.parametrize("policy", ["resize_crop", "resize", "pad"])
def test_policies_place_content_as_documented(tmp_path, policy):
    # 40 x 20: left quarter red, the rest blue.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[..., 2] = 255
    array[:, :10] = (255, 0, 0)
    Image.fromarray(array).save(tmp_path / "w.png")
    loaded = load_image(tmp_path / "w.png", size=20, policy=policy)
    red_columns = (loaded[0] > 0.5).float().mean(0) > 0.5
    black_rows = (loaded.sum(0) < 0.05).all(1)
    if policy == "resize_crop":  # centre 20x20 crop: x in [10, 30) -> all blue
        assert red_columns.sum() == 0 and black_rows.sum() == 0
    elif policy == "resize":  # squash: quarter of the width is red
        assert red_columns.sum() == 5 and black_rows.sum() == 0
    else:  # letterbox: 20x10 picture centred, 5 black rows above and below
        assert black_rows.sum() == 10 and black_rows[:5].all() and black_rows[-5:].all()
        assert red_columns.sum() == 0  # red rows are only half the column height
        assert (loaded[0, 5:15, :5] > 0.9).all()


def test_unknown_policy_is_a_user_error(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="resize_crop"):
        load_image(tmp_path / "a.png", policy="stretch")


def write_bad_files(folder):
    """name -> substring of the expected reason."""
    good = Image.fromarray(halves(32, 32, RED, BLUE))
    good.save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    return {"truncated.jpg": "truncated", "empty.png": "empty", "notes.jpg": "not an image"}


def test_bad_files_raise_bad_image_error_with_reason(tmp_path):
    expected = write_bad_files(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(BadImageError, match=reason) as info:
            load_image(tmp_path / name)
        assert info.value.path.endswith(name) and isinstance(info.value, UserError)
        assert reason in check_image(tmp_path / name)
    assert check_image(tmp_path / "full.jpg") is None
    assert "not found" in check_image(tmp_path / "missing.png")


def test_decompression_bomb_is_refused(tmp_path):
    # 9500 x 9500 1-bit image: tiny file, 90.25M pixels > PIL's default 89.5M limit.
    Image.new("1", (9500, 9500)).save(tmp_path / "bomb.png")
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")
    Image.new("RGB", (30, 30)).save(tmp_path / "small.png")
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(tmp_path / "small.png", max_pixels=899)
