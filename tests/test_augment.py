import math

import pytest
import torch

from asc.data import augment


def test_crop_takes_the_window_at_each_offset():
    x = torch.arange(10).repeat(2, 3, 1)  # [B=2, H=3, W=10], value = frame index
    out = augment.crop(x, torch.tensor([0, 6]), 4)
    assert out.shape == (2, 3, 4)
    assert out[0, 0].tolist() == [0, 1, 2, 3] and out[1, 2].tolist() == [6, 7, 8, 9]


def test_random_offsets_stay_inside_the_image():
    torch.manual_seed(0)
    off = augment.random_offsets(10_000, 469, 234)
    assert off.min() == 0 and off.max() == 469 - 234  # both ends reachable, nothing beyond


def test_crop_wider_than_image_is_an_error():
    with pytest.raises(ValueError, match="wider"):
        augment.crop(torch.zeros(1, 4, 10), torch.zeros(1, dtype=torch.long), 11)


def test_band_mask_bounds_and_fill():
    torch.manual_seed(0)
    H, frac = 224, 0.2
    x = torch.zeros(2000, H, 8)
    out = augment.band_mask(x, frac)
    masked = (out == augment.MASK_FILL).all(dim=2)  # [B, H] rows filled over the whole width
    heights = masked.sum(1)
    assert heights.max() <= math.floor(frac * H) and heights.min() == 0
    assert heights.float().mean() == pytest.approx(frac * H / 2, rel=0.1)  # uniform in [0, frac*H]
    for row in masked[heights > 0][:50]:  # one contiguous band
        idx = row.nonzero().flatten()
        assert idx.max() - idx.min() + 1 == idx.numel()
    assert ((out == 0) | (out == augment.MASK_FILL)).all()
    assert torch.equal(augment.band_mask(x, 0.0), x)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_band_mask_rejects_fractions_outside_0_1(bad):
    with pytest.raises(ValueError, match="mask"):
        augment.band_mask(torch.zeros(1, 4, 4), bad)


def test_train_and_eval_batches_are_normalised_imagenet_inputs():
    x = torch.randint(0, 256, (4, 256, 469), dtype=torch.uint8)
    tr = augment.train_batch(x, 234, 224, 0.1)
    assert tr.shape == (4, 3, 224, 224) and tr.dtype == torch.float32
    ev = augment.eval_batch(x, 234, 224)
    assert ev.shape == (4, 1, 3, 224, 224)
    cover = augment.eval_batch(x, 234, 224, "cover")
    assert cover.shape == (4, 3, 3, 224, 224)  # ceil(469 / 234) windows
    grey = augment.to_network(torch.full((1, 2, 2), 255.0))
    expected = [(1 - m) / s for m, s in zip(augment.IMAGENET_MEAN, augment.IMAGENET_STD)]
    assert grey[0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-5)


def test_centre_window_is_centred():
    starts = augment.centre_offsets(1, 469, 234)
    assert starts.item() == (469 - 234) // 2
    cover = augment.cover_offsets(469, 234)
    assert cover[0] == 0 and cover[-1] == 469 - 234


def test_reference_width_is_224_over_the_windows_share_of_the_clip():
    hop = 1024 / 48_000
    assert augment.clip_length(469, hop) == 10.0 and augment.clip_length(188, hop) == 4.0  # TAU; a 4 s clip
    assert augment.clip_length(3, 0.42) == 0.9  # 0.84 .. 1.26 s: the first whole tenth
    assert augment.clip_length(5, 0.03) == pytest.approx(0.135)  # 0.12 .. 0.15 s holds none: the middle
    assert [augment.reference_width(469, w, hop) for w in (3, 5, 7, 9)] == [746, 448, 320, 248]  # int(224 / (w / 10))
    assert augment.reference_width(188, 2.0, hop) == 448


def test_reference_views_keep_8_bit_levels_and_take_the_squares_at_u():
    x = torch.arange(469, dtype=torch.float32).mul(255 / 468).round().to(torch.uint8).repeat(2, 256, 1)  # ramp
    views = augment.reference_views(x, torch.tensor([0.0, 1.0]), 448, 224)
    assert views.shape == (2, 224, 224) and torch.equal(views, views.round()) and views.min() >= 0 and views.max() <= 255
    # the left square covers the first 256 / 448 of the ramp, the right one the last
    assert views[0, :, 0].mean() < 5 and views[1, :, -1].mean() > 250
    assert views[0, :, -1].mean() == pytest.approx(255 * 256 / 448, abs=3)


def test_reference_crop_in_training_and_evaluation():
    x = torch.randint(0, 256, (4, 256, 469), dtype=torch.uint8)
    tr = augment.train_batch(x, 234, 224, 0.2, crop="reference", resized=448, band="reference")
    assert tr.shape == (4, 3, 224, 224)
    ev = augment.eval_batch(x, 234, 224, "cover", crop="reference", resized=448)
    assert ev.shape == (4, 2, 3, 224, 224)  # ceil(448 / 256) squares, at both edges
    assert augment.eval_positions("cover", 448, 256).tolist() == [0.0, 1.0]
    assert augment.eval_positions("centre", 448, 256).tolist() == [0.5]
    with pytest.raises(ValueError, match="resized width"):
        augment.train_batch(x, 234, 224, 0.0, crop="reference")
    with pytest.raises(ValueError, match="model.crop"):
        augment.eval_batch(x, 234, 224, crop="square")


def test_given_uniforms_make_the_same_batch():
    x = torch.randint(0, 256, (3, 256, 469), dtype=torch.uint8)
    u = torch.rand(3, 3)
    for crop, resized in (("exact", None), ("reference", 448)):
        a = augment.train_batch(x, 234, 224, 0.1, crop=crop, resized=resized, u=u)
        assert torch.equal(a, augment.train_batch(x, 234, 224, 0.1, crop=crop, resized=resized, u=u))
