import pytest
import torch
from torch import nn

from hpn.models import BACKBONES, MLP, CifarResNet, DenseNet, build_backbone


@pytest.fixture(autouse=True)
def one_thread():
    # batches of 2 gain nothing from intra-op threads, and on a busy 2-core machine every
    # thread barrier can wait out another process's time slice (seconds per DenseNet pass)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def batch(shape: tuple[int, ...], n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def first_weight(module: nn.Module) -> torch.Tensor:
    return next(m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d)).weight


# (name, input_shape, options, out_features); densenet121 on 96 px takes the ImageNet stem
CASES = [
    ("mlp", (300,), {}, 300),
    ("mlp", (1, 28, 28), {}, 300),
    ("mlp", (1, 28, 28), {"hidden": (64, 32)}, 32),
    ("convnet", (1, 28, 28), {}, 128),
    ("convnet", (3, 32, 32), {"features": 50}, 50),
    ("resnet32", (3, 32, 32), {}, 64),
    ("resnet32", (1, 28, 28), {}, 64),
    ("resnet32", (3, 32, 32), {"shortcut": "B"}, 64),
    ("densenet121", (3, 32, 32), {}, 1024),
    ("densenet121", (3, 96, 96), {}, 1024),
    ("glyphnet", (1, 32, 32), {"pool": "flatten", "batch_norm": True}, 256),
    ("glyphcnn", (1, 32, 32), {}, 256),
    ("glyphcnn", (1, 16, 24), {"features": 40}, 40),
    ("resnet", (1, 32, 32), {"depth": 8}, 64),
    ("resnet", (1, 32, 32), {"widths": (8, 16, 24)}, 24),
]
IDS = [f"{name}-{'x'.join(map(str, shape))}-{len(opts)}" for name, shape, opts, _ in CASES]


@pytest.mark.parametrize(("name", "shape", "options", "out"), CASES, ids=IDS)
def test_output_is_features_of_out_features_and_gradients_reach_first_layer(
    name, shape, options, out
):
    torch.manual_seed(0)
    net = build_backbone(name, shape, **options)
    assert isinstance(net.out_features, int) and net.out_features == out
    y = net(batch(shape))
    assert y.shape == (2, out) and torch.isfinite(y).all()
    (y * batch((out,), seed=1)).sum().backward()
    grad = first_weight(net).grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_no_classifier_inside_the_conv_backbones():
    # features only: the one Linear of the convnet is its 128-d feature layer
    for name, shape in [("resnet32", (3, 32, 32)), ("densenet121", (3, 32, 32))]:
        assert not any(isinstance(m, nn.Linear) for m in build_backbone(name, shape).modules())
    linears = [
        m for m in build_backbone("convnet", (1, 28, 28)).modules() if isinstance(m, nn.Linear)
    ]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 7 * 7, 128)]


def test_mlp_layer_order_and_identity_without_hidden_layers():
    net = MLP(784, hidden=(300, 300))
    kinds = [type(m) for m in net.layers]
    block = [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    assert kinds == [nn.Flatten, *block, *block]
    assert net.layers[1].in_features == 784 and net.layers[5].out_features == 300
    assert net.layers[4].p == 0.2
    # BatchNorm makes the Linear bias redundant, so it is dropped: 2 * 300 per layer for BN
    assert n_params(build_backbone("mlp", (300,))) == 2 * (300 * 300 + 2 * 300)
    assert n_params(MLP(784, batch_norm=False)) == 784 * 300 + 300 + 300 * 300 + 300
    flat = build_backbone("mlp", (1, 28, 28), hidden=())
    assert flat.out_features == 784 and n_params(flat) == 0
    x = batch((1, 28, 28))
    assert torch.equal(flat(x), x.flatten(1))
    plain = MLP(10, hidden=(7,), batch_norm=False, dropout=0.0, activation="tanh")
    assert [type(m) for m in plain.layers] == [nn.Flatten, nn.Linear, nn.Tanh]


def test_resnet32_parameter_count_matches_the_published_cifar_resnets():
    # He et al. 2016 (Table 6) give 0.27M / 0.46M / 0.85M / 1.7M for ResNet-20/32/56/110 on
    # CIFAR-10 including the 64 -> 10 classifier (650 parameters). The exact counts of option A
    # (zero-padded shortcuts, e.g. akamaster/pytorch_resnet_cifar10) are pinned too.
    fc = 64 * 10 + 10
    published = {20: 0.27e6, 32: 0.46e6, 56: 0.85e6, 110: 1.7e6}
    exact = {20: 269_722, 32: 464_154, 56: 853_018, 110: 1_727_962}
    for depth, millions in published.items():
        count = n_params(CifarResNet(3, depth=depth)) + fc
        assert count == exact[depth]
        assert abs(count - millions) / millions < 0.02  # the paper rounds to 2 digits
    resnet32 = build_backbone("resnet32", (3, 32, 32))
    assert n_params(resnet32) == 463_504
    # 31 convs + the omitted fc = 32 weighted layers; option A shortcuts are parameter-free
    assert sum(isinstance(m, nn.Conv2d) for m in resnet32.modules()) == 31
    # option B adds two 1x1 projections with BN: 16->32 and 32->64
    option_b = build_backbone("resnet32", (3, 32, 32), shortcut="B")
    assert n_params(option_b) - n_params(resnet32) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_densenet121_parameter_count_and_stems():
    # DenseNet-121 has 7,978,856 parameters (torchvision), of which 1024 * 1000 + 1000 are the
    # classifier: 6,953,856 ~ 6.96M without it. The CIFAR stem swaps the 7x7 conv + BN for a
    # 3x3 conv: -3 * 64 * (49 - 9) - 2 * 64.
    imagenet = build_backbone("densenet121", (3, 96, 96))
    cifar = build_backbone("densenet121", (3, 32, 32))
    assert n_params(imagenet) == 7_978_856 - (1024 * 1000 + 1000) == 6_953_856
    assert abs(n_params(imagenet) - 6.96e6) / 6.96e6 < 0.005
    assert n_params(cifar) == 6_953_856 - 3 * 64 * 40 - 2 * 64
    # 120 convs + the omitted classifier = 121 layers
    assert sum(isinstance(m, nn.Conv2d) for m in cifar.modules()) == 120
    assert not imagenet.small_input and cifar.small_input
    assert imagenet.stem[0].kernel_size == (7, 7) and isinstance(imagenet.stem[-1], nn.MaxPool2d)
    assert cifar.stem[0].kernel_size == (3, 3) and len(cifar.stem) == 1
    # boundary of the automatic choice and the explicit override
    assert build_backbone("densenet121", (3, 64, 64)).small_input
    assert not build_backbone("densenet121", (3, 65, 65)).small_input
    assert not build_backbone("densenet121", (3, 32, 32), stem="imagenet").small_input


def test_init_is_kaiming_and_batchnorm_is_one_zero():
    torch.manual_seed(0)
    net = build_backbone("resnet32", (3, 32, 32))
    conv = net.blocks[-1].conv2  # 64 -> 64, 3x3: fan_out = 576, std = sqrt(2 / 576)
    assert abs(conv.weight.std().item() - (2 / 576) ** 0.5) < 0.004
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("mlp", (1, 28, 28)),
        ("convnet", (1, 28, 28)),
        ("resnet32", (3, 32, 32)),
        ("densenet121", (3, 32, 32)),
    ],
)
def test_init_is_deterministic_under_manual_seed(name, shape):
    def state(seed):
        torch.manual_seed(seed)
        return build_backbone(name, shape).state_dict()

    a, b, c = state(0), state(0), state(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(first_weight_tensor(a), first_weight_tensor(c))


def first_weight_tensor(state: dict) -> torch.Tensor:
    return next(v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2)


def test_mlp_dropout_is_random_in_train_and_off_in_eval():
    torch.manual_seed(0)
    net = build_backbone("mlp", (20,), hidden=(64,), batch_norm=False, dropout=0.5)
    x = batch((20,), n=4)
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(2)
    b = net(x)
    assert not torch.equal(a, b)
    assert (a == 0).float().mean() > (net.eval()(x) == 0).float().mean()
    assert torch.equal(net(x), net(x))


# small images keep this cheap: DenseNet's CIFAR stem works down to 8x8
@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("mlp", (1, 28, 28)),
        ("convnet", (1, 28, 28)),
        ("resnet32", (3, 16, 16)),
        ("densenet121", (3, 8, 8)),
    ],
)
def test_batchnorm_uses_batch_statistics_in_train_and_running_ones_in_eval(name, shape):
    torch.manual_seed(0)
    net = build_backbone(name, shape)
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d))
    x = batch(shape) * 3 + 1
    net.eval()
    with torch.no_grad():
        before = net(x)
        assert torch.equal(before, net(x))  # eval: deterministic, no state change
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        torch.manual_seed(0)
        train = net.train()(x)
    assert not torch.allclose(train, before, atol=1e-4)
    assert bn.num_batches_tracked.item() == 1 and bn.running_mean.abs().sum() > 0


@pytest.mark.parametrize(
    ("name", "shape", "options", "match"),
    [
        ("resnet50", (3, 32, 32), {}, "resnet50"),
        ("MLP", (10,), {}, "MLP"),
        ("mlp", (10,), {"hiden": (3,)}, "hiden"),
        ("mlp", (10,), {"dropout": 1.0}, "dropout"),
        ("mlp", (10,), {"dropout": -0.1}, "dropout"),
        ("mlp", (10,), {"hidden": (300, 0)}, "hidden"),
        ("mlp", (10,), {"hidden": 300}, "hidden"),
        ("mlp", (10,), {"activation": "swish"}, "swish"),
        ("mlp", (10,), {"batch_norm": "yes"}, "batch_norm"),
        ("mlp", (0, 5), {}, "input_shape"),
        ("mlp", (), {}, "input_shape"),
        ("convnet", (784,), {}, "convnet"),
        ("convnet", (1, 3, 3), {}, "convnet"),
        ("convnet", (1, 28, 28), {"channels": ()}, "channels"),
        ("convnet", (1, 28, 28), {"features": 0}, "features"),
        ("convnet", (1, 28, 28), {"shortcut": "A"}, "shortcut"),
        ("resnet32", (3, 32, 32), {"shortcut": "C"}, "shortcut"),
        ("resnet32", (3, 32, 32), {"depth": 20}, "depth"),
        ("resnet32", (32, 32), {}, "resnet32"),
        ("densenet121", (3, 32, 32), {"stem": "tiny"}, "stem"),
        ("densenet121", (3, 32, 32), {"drop_rate": 2}, "drop_rate"),
        ("densenet121", (3, 16, 16), {"stem": "imagenet"}, "densenet121"),
    ],
)
def test_bad_names_options_and_shapes_raise_value_error(name, shape, options, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(name, shape, **options)


def test_bad_constructor_arguments_raise_value_error():
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(3, depth=33)
    with pytest.raises(ValueError, match="compression"):
        DenseNet(3, compression=0.0)
    with pytest.raises(ValueError, match="in_features"):
        MLP(0)


def test_registry_lists_exactly_the_documented_backbones():
    assert sorted(BACKBONES) == [
        "convnet",
        "densenet121",
        "glyphcnn",
        "glyphnet",
        "mlp",
        "resnet",
        "resnet32",
    ]


def test_glyphcnn_is_the_layout_keeping_cnn_of_the_fair_protocol():
    # three conv3x3-BN-ReLU-maxpool2 blocks (32 / 64 / 128), flatten to 128 x 4 x 4 = 2,048,
    # Linear(2048, 256) without bias, BatchNorm1d, ReLU, Dropout(0.3)
    net = build_backbone("glyphcnn", (1, 32, 32))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    (linear,) = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert (linear.in_features, linear.out_features, linear.bias) == (2048, 256, None)
    drops = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.3]
    expected = 1 * 32 * 9 + 32 * 64 * 9 + 64 * 128 * 9 + 2 * (32 + 64 + 128) + 2048 * 256 + 512
    assert n_params(net) == expected == 617_696


def test_glyphcnn_sees_where_the_strokes_are_and_glyphnet_hardly_does():
    # the same square moved by 8 px, the conv stack's total stride: the average pool sees
    # the same features up to zero-padding effects at the borders, the flatten a new layout
    a, b = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    a[..., 8:12, 8:12] = 1
    b[..., 16:20, 16:20] = 1
    change = {}
    with torch.no_grad():
        for name in ("glyphnet", "glyphcnn"):
            torch.manual_seed(0)
            net = build_backbone(name, (1, 32, 32)).eval()
            change[name] = float((net(a) - net(b)).norm() / net(a).norm())
    assert change["glyphnet"] < 0.1 and change["glyphcnn"] > 0.5, change


def test_resnet_depth_and_widths_set_the_blocks():
    net = build_backbone("resnet", (1, 32, 32), depth=14, widths=(8, 16, 32))
    assert isinstance(net, CifarResNet) and len(net.blocks) == 6 and net.out_features == 32
    assert CifarResNet(1, depth=20).widths == (16, 32, 64)
    with pytest.raises(ValueError, match="three stage widths"):
        CifarResNet(1, widths=(8, 16))
