import pytest
import torch

from hpn.data.base import DataSplits, TensorDataset
from hpn.data.mnist import load_mnist5k
from hpn.data.rotated import rotate_images, rotated_digits


def tiny_splits(n=(12, 4, 6), size=9, dtype=torch.uint8):
    gen = torch.Generator().manual_seed(0)
    parts = []
    for count in n:
        images = torch.randint(0, 256, (count, 1, size, size), generator=gen, dtype=torch.uint8)
        labels = torch.arange(count) % 3
        parts.append(TensorDataset(images.to(dtype), {"label": labels}))
    return DataSplits(
        *parts,
        task="classification",
        input_shape=(1, size, size),
        num_classes=3,
        class_names=["a", "b", "c"],
        info={"source": "tiny"},
    )


def test_angle_zero_reproduces_the_image():
    x = torch.randint(0, 256, (5, 2, 11, 7), dtype=torch.uint8)
    assert torch.equal(rotate_images(x, torch.zeros(5)), x)
    xf = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(rotate_images(xf, torch.zeros(3)), xf)


@pytest.mark.parametrize(("angle", "k"), [(90.0, 1), (180.0, 2), (270.0, 3), (-90.0, 3)])
def test_right_angles_equal_rot90(angle, k):
    x = torch.rand(4, 3, 10, 10)
    out = rotate_images(x, torch.full((4,), angle))
    expected = torch.rot90(x, k, dims=(-2, -1))
    # pixel centres map onto pixel centres; only float error, even at the border
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    xu = (x * 255).to(torch.uint8)
    assert torch.equal(rotate_images(xu, torch.full((4,), angle)), torch.rot90(xu, k, (-2, -1)))


def test_rotation_is_counter_clockwise_and_not_sheared_on_wide_images():
    x = torch.zeros(1, 1, 20, 40)
    x[0, 0, 10, 25] = 1.0  # right of the centre (row 10, column 20)
    out = rotate_images(x, torch.tensor([90.0]))
    assert torch.nonzero(out[0, 0] > 0.5).tolist() == [[4, 20]]  # now above the centre
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_bilinear_rotation_keeps_a_centred_blob():
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    blob = torch.exp(-((yy - 13.5) ** 2 + (xx - 13.5) ** 2) / 20.0)[None, None]
    out = rotate_images(blob, torch.tensor([37.0]))
    torch.testing.assert_close(out, blob, atol=0.02, rtol=0)
    bar = torch.zeros(1, 1, 28, 28)
    bar[0, 0, 13:15, 4:24] = 1.0
    turned = rotate_images(bar, torch.tensor([45.0]))
    assert not torch.allclose(turned, bar, atol=0.1)
    assert abs(float(turned.sum()) - 40.0) < 4.0  # mass roughly kept


def test_rotate_images_checks_inputs():
    with pytest.raises(ValueError, match="angles for"):
        rotate_images(torch.zeros(3, 1, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        rotate_images(torch.zeros(3, 4, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        rotate_images(torch.zeros(1, 1, 4, 4), torch.tensor([float("nan")]))


def test_rotated_digits_targets_and_images():
    base = tiny_splits()
    rot = rotated_digits(base, seed=5, max_angle=90.0)
    assert rot.task == "multitask" and rot.num_classes == 3 and rot.class_names == ["a", "b", "c"]
    assert rot.input_shape == (1, 9, 9) and rot.info["value_range"] == [0.0, 90.0]
    assert rot.info["base_source"] == "tiny" and rot.info["rotation_seed"] == 5
    for name in ("train", "val", "test"):
        before, after = getattr(base, name), getattr(rot, name)
        assert len(after) == len(before)
        assert torch.equal(after.targets["label"], before.targets["label"])
        angles = after.targets["value"]
        assert angles.dtype == torch.float32
        assert float(angles.min()) >= 0.0 and float(angles.max()) < 90.0
        assert after.inputs.dtype == torch.uint8
        assert torch.equal(after.inputs, rotate_images(before.inputs, angles))
        x, target = after[0]
        assert x.shape == (1, 9, 9) and set(target) == {"label", "value"}
        assert target["value"] == angles[0]
    assert float(rot.train.targets["value"].std()) > 5.0  # angles really vary


def test_rotated_digits_is_deterministic_per_seed():
    base = tiny_splits()
    a, b, c = rotated_digits(base, seed=1), rotated_digits(base, seed=1), rotated_digits(base, 2)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).targets["value"], getattr(b, name).targets["value"])
        assert torch.equal(getattr(a, name).inputs, getattr(b, name).inputs)
        assert not torch.equal(getattr(a, name).targets["value"], getattr(c, name).targets["value"])
    assert float(a.train.targets["value"].max()) > 90.0  # default range is a full turn


def test_rotated_digits_rejects_bad_input():
    base = tiny_splits()
    for bad in (0.0, -10.0, 400.0, float("inf")):
        with pytest.raises(ValueError, match="max_angle must be in"):
            rotated_digits(base, max_angle=bad)
    base.val = [(torch.zeros(1, 9, 9), {"label": torch.tensor(0)})]
    with pytest.raises(ValueError, match="the val split is a list"):
        rotated_digits(base)
    unlabeled = tiny_splits()
    unlabeled.test = TensorDataset(torch.zeros(2, 1, 9, 9), {"value": torch.zeros(2)})
    with pytest.raises(ValueError, match="test split has no 'label'"):
        rotated_digits(unlabeled)


def test_rotated_mnist5k():
    base = load_mnist5k(seed=0)
    rot = rotated_digits(base, seed=0)
    assert rot.info["source"] == "rotated_mnist5k"
    assert len(rot.train) == 3600 and len(rot.test) == 1000
    assert torch.equal(rot.test.targets["label"], base.test.targets["label"])
    angles = rot.train.targets["value"]
    assert 0.0 <= float(angles.min()) and float(angles.max()) < 360.0
    # ink is kept (a 28 x 28 digit rotated about the centre mostly stays in the frame)
    ratio = rot.train.inputs.float().sum() / base.train.inputs.float().sum()
    assert 0.9 < float(ratio) <= 1.01
