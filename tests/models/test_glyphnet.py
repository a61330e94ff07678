import pytest
import torch
from torch import nn

from hpn.models import BACKBONES, GlyphNet, build_backbone


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shapes_and_size():
    net = build_backbone("glyphnet", (1, 32, 32))
    assert isinstance(net, GlyphNet) and "glyphnet" in BACKBONES
    out = net(torch.rand(3, 1, 32, 32))
    assert out.shape == (3, 256) and net.out_features == 256 and (out >= 0).all()
    assert sum(p.numel() for p in net.parameters()) == 1_210_944  # as the docs say
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128, 256, 256]


@pytest.mark.parametrize(
    ("shape", "options", "features"),
    [
        ((1, 32, 32), {"features": 64, "channels": (8, 16, 32), "convs": 1}, 64),
        ((3, 24, 40), {"channels": (8, 16)}, 256),  # any size of at least 2 ** stages
        ((1, 8, 8), {"channels": (4, 4, 4), "dropout": 0.5}, 256),
    ],
)
def test_other_shapes(shape, options, features):
    net = build_backbone("glyphnet", shape, **options).eval()
    assert net(torch.rand(2, *shape)).shape == (2, features)


@pytest.mark.parametrize(
    ("shape", "options", "message"),
    [
        ((1, 4, 4), {}, "H and W >= 8"),
        ((32, 32), {}, r"needs input_shape \(C, H, W\)"),
        ((1, 32, 32), {"convs": 0}, "convs must be"),
        ((1, 32, 32), {"channels": ()}, "channels must be"),
        ((1, 32, 32), {"width": 3}, r"unknown option\(s\) \['width'\]"),
    ],
)
def test_bad_options(shape, options, message):
    with pytest.raises(ValueError, match=message):
        build_backbone("glyphnet", shape, **options)


def test_it_trains():
    torch.manual_seed(0)
    net = GlyphNet(features=16, channels=(8, 16, 32))
    head = nn.Linear(16, 4)
    x, y = torch.rand(16, 1, 32, 32), torch.arange(16) % 4
    optimizer = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(net(x)), y)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
