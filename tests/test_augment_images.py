"""augment.images: kornia presets (batched, any device) and albumentations presets (per image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augment import ImageAugment, albumentations_pipeline

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def red_disc_batch(b: int = 12, size: int = 32) -> torch.Tensor:
    """Red disc in the centre of a blue image, a white bar on the left edge (asymmetric)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.zeros(3, size, size)
    img[2] = 0.7
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 4) ** 2
    img[:, disc] = torch.tensor([0.9, 0.1, 0.1]).unsqueeze(1)
    img[:, :, :3] = 1.0
    return img.unsqueeze(0).repeat(b, 1, 1, 1)


@pytest.mark.parametrize("preset", ["standard", "unique"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_contract(preset, dtype):
    x = torch.rand(6, 3, 24, 24).to(dtype)
    x0 = x.clone()
    aug = ImageAugment(preset)
    y = aug(x, generator=gen(0))
    assert torch.equal(x, x0)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y, aug(x, generator=gen(0)))
    assert not torch.equal(y, aug(x, generator=gen(1)))
    assert not torch.equal(y, x)


def test_generator_does_not_disturb_global_rng():
    x = torch.rand(2, 3, 16, 16)
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    ImageAugment("standard")(x, generator=gen(0))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_chunked_cpu_batches_are_reproducible():
    x = torch.rand(40, 3, 16, 16)  # more than one CPU chunk
    aug = ImageAugment("standard")
    y = aug(x, generator=gen(3))
    assert y.shape == x.shape and torch.equal(y, aug(x, generator=gen(3)))
    # Samples in different chunks get different random parameters.
    same = torch.rand(1, 3, 16, 16).expand(40, 3, 16, 16)
    z = aug(same, generator=gen(3))
    assert len({tuple(v.flatten()[:50].tolist()) for v in z}) > 30


def test_size_argument():
    x = torch.rand(3, 3, 40, 30)
    assert ImageAugment("standard", size=20)(x, generator=gen(0)).shape == (3, 3, 20, 20)
    assert ImageAugment("unique", size=(16, 24))(x, generator=gen(0)).shape == (3, 3, 16, 24)


def test_unique_preset_keeps_geometry_and_colour_words():
    """Unique views are the image or its mirror, jittered: the red disc stays whole and red."""
    x = red_disc_batch(64)
    y = ImageAugment("unique")(x, generator=gen(0))
    size = x.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 4 - 1) ** 2
    r, g, b = y[:, 0][:, disc], y[:, 1][:, disc], y[:, 2][:, disc]
    assert bool((r > g + 0.2).all() and (r > b + 0.2).all()), "disc no longer red"
    # The bright bar is on the left or (flipped) on the right edge, never cropped away.
    left = y[:, :, :, :3].mean((1, 2, 3))
    right = y[:, :, :, -3:].mean((1, 2, 3))
    flipped = right > left
    assert 0.3 < flipped.float().mean() < 0.7
    # Structure is unchanged up to a flip: the pixel-wise order of brightness is preserved.
    ref = torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)
    corr = [np.corrcoef(a.flatten().numpy(), c.flatten().numpy())[0, 1] for a, c in zip(y, ref)]
    assert min(corr) > 0.9


def test_unique_strength_zero_is_flip_only():
    x = red_disc_batch(16)
    y = ImageAugment("unique", strength=0.0)(x, generator=gen(1))
    for yi, xi in zip(y, x):
        assert torch.allclose(yi, xi, atol=1e-5) or torch.allclose(yi, xi.flip(-1), atol=1e-5)


def test_standard_changes_more_than_unique():
    x = red_disc_batch(64)
    d_std = (ImageAugment("standard")(x, generator=gen(0)) - x).abs().mean().item()
    d_uni = (ImageAugment("unique")(x, generator=gen(0)) - x).abs().mean().item()
    assert d_std > d_uni
    weak = (ImageAugment("standard", strength=0.2)(x, generator=gen(0)) - x).abs().mean().item()
    assert weak < d_std


@pytest.mark.parametrize(
    "x,match",
    [
        (torch.rand(3, 32, 32), r"x must be \[B, 3, H, W\], got shape \(3, 32, 32\)"),
        (torch.rand(2, 1, 8, 8), r"x must be \[B, 3, H, W\] RGB images, got shape \(2, 1, 8, 8\)"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "x must be a floating-point tensor"),
        (torch.rand(0, 3, 8, 8), r"x has an empty batch \(B=0\)"),
    ],
)
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        ImageAugment()(x)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="preset must be one of"):
        ImageAugment("crop-everything")
    with pytest.raises(ValueError, match="strength must be >= 0"):
        ImageAugment(strength=-1)
    with pytest.raises(ValueError, match="strength must be <= 2"):
        albumentations_pipeline("unique", strength=3)
    with pytest.raises(ValueError, match="size must be positive"):
        ImageAugment(size=0)


# --------------------------------------------------------------------------------------------
# albumentations
# --------------------------------------------------------------------------------------------


def uint8_image(h: int = 48, w: int = 40) -> np.ndarray:
    return (red_disc_batch(1, 48)[0, :, :h, :w].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.mark.parametrize("preset", ["standard", "unique"])
def test_albumentations_valid_output_and_seed(preset):
    img = uint8_image()
    img0 = img.copy()
    outs = [albumentations_pipeline(preset, size=32, seed=7)(image=img)["image"] for _ in range(2)]
    assert np.array_equal(img, img0)
    for o in outs:
        assert o.dtype == np.uint8 and o.shape == (32, 32, 3)
    assert np.array_equal(outs[0], outs[1])
    pipe = albumentations_pipeline(preset, size=32, seed=1)
    assert len({pipe(image=img)["image"].tobytes() for _ in range(8)}) > 1


def test_albumentations_unique_keeps_size_and_redness():
    img = uint8_image()
    pipe = albumentations_pipeline("unique", seed=0)
    for _ in range(10):
        out = pipe(image=img)["image"]
        assert out.shape == img.shape
        centre = out[20:28, 16:24].astype(int)
        assert (centre[..., 0] > centre[..., 1] + 50).all()


def test_albumentations_standard_needs_size():
    with pytest.raises(ValueError, match="size is required for preset 'standard'"):
        albumentations_pipeline("standard")


@cuda
@pytest.mark.parametrize("preset", ["standard", "unique"])
def test_cuda_images(preset):
    x = torch.rand(8, 3, 32, 32, device="cuda")
    aug = ImageAugment(preset)
    y = aug(x, generator=gen(0))
    assert y.device == x.device and torch.equal(y, aug(x, generator=gen(0)))
    assert float(y.min()) >= 0 and float(y.max()) <= 1
