"""Image transforms: every key gives (3, S, S) from any PIL mode; seeding; unknown keys."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlt.data.transforms import DETERMINISTIC_TRANSFORMS, TRANSFORMS, build_transform, seeded_global_rng, to_rgb

SIZE = 32
REAL_GREY_JPEG = Path(__file__).resolve().parents[1] / "../shared/data/coco/val2017/000000431848.jpg"


def textured(mode: str = "RGB", size=(48, 36)) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def palette_with_transparency() -> Image.Image:
    image = textured().convert("P")
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("key", sorted(TRANSFORMS))
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_every_key_gives_fixed_shape_for_every_mode(key, mode):
    image = palette_with_transparency() if mode == "P" else textured(mode)
    out = build_transform(key, SIZE)(image)
    assert out.shape == (3, SIZE, SIZE) and out.dtype == torch.float32


def test_unknown_key_lists_valid_keys_and_closest_match():
    with pytest.raises(ValueError, match="Did you mean 'pixelbert'") as info:
        build_transform("pixelbrt", SIZE)
    assert "mae_randaug" in str(info.value)


def test_to_rgb_composites_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (4, 4), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_pixelbert_is_deterministic_center_crop():
    transform = build_transform("pixelbert", SIZE)
    image = textured(size=(64, 32))
    assert torch.equal(transform(image), transform(image))
    assert transform(Image.new("RGB", (50, 40), (255, 0, 0)))[0].mean() == pytest.approx(1.0, abs=1e-3)


def test_seeded_random_transforms_repeat_and_restore_global_state():
    transform = build_transform("mae_randaug", SIZE)
    image = textured()
    random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), torch.rand(1))
    random.seed(5)
    torch.manual_seed(5)
    with seeded_global_rng(11):
        a = transform(image)
    with seeded_global_rng(11):
        b = transform(image)
    with seeded_global_rng(12):
        c = transform(image)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (random.random(), torch.rand(1)) == expected


def test_mae_noflip_never_flips():
    image = Image.fromarray(np.tile(np.arange(SIZE, dtype=np.uint8) * 8, (SIZE, 1)))  # left dark, right bright
    transform = build_transform("mae_noflip", SIZE)
    for seed in range(8):
        with seeded_global_rng(seed):
            out = transform(image)
        assert out[0, :, -1].mean() > out[0, :, 0].mean()


@pytest.mark.skipif(not REAL_GREY_JPEG.is_file(), reason="shared sample data (../shared/data) not present")
def test_real_greyscale_coco_image():
    image = Image.open(REAL_GREY_JPEG)
    assert image.mode == "L"
    for key in ("pixelbert", "mae", "imagenet"):
        assert build_transform(key, 224)(image).shape == (3, 224, 224)


@pytest.mark.parametrize("key", sorted(TRANSFORMS))
def test_draws_randomness_flag_is_truthful(key):
    """Keys marked deterministic (datasets skip RNG seeding for them) give identical output under any RNG state."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    transform = build_transform(key, 32)
    outputs = []
    for seed in (1, 2):
        torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)
        outputs.append(transform(image))
    assert transform.draws_randomness == (key not in DETERMINISTIC_TRANSFORMS)
    if not transform.draws_randomness:
        torch.testing.assert_close(outputs[0], outputs[1])
    else:
        assert not torch.equal(outputs[0], outputs[1])
