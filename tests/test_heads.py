import io

import numpy as np
import pytest
import torch
from torch import nn

from hpn import functional as F
from hpn import prototypes as protos
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor, replace_classifier


def _roundtrip(module: nn.Module) -> dict:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_classifier_scores_are_cosines_and_argmax_is_nearest_prototype():
    p = protos.generate(12, 6, method="optimized", steps=100)
    head = PrototypeClassifier(p, in_features=8)
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    scores = head(x)
    z = head.proj(x)
    expected = torch.nn.functional.normalize(z, dim=1) @ p.T
    assert scores.shape == (30, 12)
    assert torch.allclose(scores, expected, atol=1e-6)
    assert torch.equal(scores.argmax(dim=1), head.predict(x, chunk_size=5))


def test_prototypes_are_buffers_saved_moved_and_never_trained():
    p = protos.generate(5, 4, method="simplex")
    head = PrototypeClassifier(p, in_features=3)
    assert "prototypes" in head.state_dict()
    assert all(param is not head.prototypes for param in head.parameters())
    restored = PrototypeClassifier(torch.eye(5, 4) + 1.0, in_features=3)
    restored.load_state_dict(_roundtrip(head))
    assert torch.equal(restored.prototypes, head.prototypes)
    assert head.to(torch.float64).prototypes.dtype == torch.float64
    # a training step moves the projection, not the prototypes
    before = head.prototypes.clone()
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    head.loss(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    assert torch.equal(head.prototypes, before)


def test_head_loss_equals_functional_loss():
    head = PrototypeClassifier(torch.eye(3))
    z = torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    assert torch.equal(head.loss(z, y, "mean"), F.prototype_loss(z, torch.eye(3), y, "mean"))


def test_regressor_predicts_the_bounds_at_the_poles_and_round_trips_state():
    head = PrototypeRegressor(dims=3, lower=1900.0, upper=2000.0)
    x = torch.tensor([[4.0, 0.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert head.predict(x).tolist() == [2000.0, 1900.0, 1950.0]
    clone = PrototypeRegressor(dims=3, lower=0.0, upper=1.0)
    clone.load_state_dict(_roundtrip(head))
    assert clone.predict(x).tolist() == [2000.0, 1900.0, 1950.0]
    y = torch.tensor([2000.0, 1900.0, 1950.0])
    assert float(head.loss(x, y)) == pytest.approx(0.0, abs=1e-12)


def test_multitask_head_splits_axes_and_weights_losses():
    cls = protos.generate(4, 2, method="orthoplex")  # +-e1, +-e2 in the 2-d class subspace
    head = MultiTaskHead(cls, lower=0.0, upper=360.0, task_weight=0.25)
    x = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, -1.0]])  # equator / 45 degrees up
    scores, pole_cos = head(x)
    assert scores.argmax(dim=1).tolist() == [0, 3]
    assert torch.allclose(pole_cos, torch.tensor([0.0, 2**-0.5]))
    classes, angles = head.predict(x)
    assert classes.tolist() == [0, 3]
    assert angles[0].item() == pytest.approx(180.0) and angles[1].item() == pytest.approx(
        180 + 180 * 2**-0.5
    )
    labels, y = torch.tensor([0, 3]), torch.tensor([180.0, 300.0])
    lc = F.prototype_loss(x[:, 1:], cls, labels)
    lr = F.regression_loss(x, torch.tensor([1.0, 0.0, 0.0]), y, 0.0, 360.0)
    loss = head.loss(x, {"label": labels, "value": y})
    assert float(loss) == pytest.approx(float(0.25 * lc + 0.75 * lr), rel=1e-6)


def test_replace_classifier_swaps_the_last_linear():
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 100))
    replace_classifier(model, protos.generate(100, 16, method="random"))
    assert isinstance(model[2], PrototypeClassifier) and model[2].proj.in_features == 7
    assert model(torch.randn(3, 10)).shape == (3, 100)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 6)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(self.body(x))

    net = replace_classifier(Net(), torch.eye(3, 5), name="fc")
    assert isinstance(net.fc, PrototypeClassifier) and net(torch.randn(2, 4)).shape == (2, 3)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PrototypeClassifier(torch.ones(1, 3)), "K >= 2"),
        (lambda: PrototypeClassifier(torch.tensor([[1.0, float("nan")], [0.0, 1.0]])), "NaN"),
        (lambda: PrototypeRegressor(3, 5.0, 5.0), "lower < upper"),
        (lambda: MultiTaskHead(torch.eye(3), 0.0, 1.0, task_weight=2.0), "task_weight"),
        (lambda: replace_classifier(nn.Sequential(nn.ReLU()), torch.eye(3)), "no nn.Linear"),
        (
            lambda: replace_classifier(
                nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.eye(3), name="1"
            ),
            "'1' is not an nn.Linear",
        ),
    ],
)
def test_bad_construction_names_the_problem(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_classifier_softmax_loss_option_uses_the_cosine_softmax():
    torch.manual_seed(0)
    P = F.unit(torch.randn(6, 4))
    head = PrototypeClassifier(P, in_features=5, loss="cosine_softmax", scale=12.0, margin=0.1)
    x, y = torch.randn(8, 5), torch.randint(0, 6, (8,))
    expected = F.prototype_softmax_loss(head.proj(x), P, y, 12.0, 0.1, "mean")
    assert torch.allclose(head.loss(x, y, "mean"), expected)
    assert PrototypeClassifier(P, loss="cosine_softmax").scale == pytest.approx(F.default_scale(6))
    paper = PrototypeClassifier(P, in_features=5)
    paper.load_state_dict(head.state_dict())  # the loss choice adds no state
    assert torch.allclose(paper.loss(x, y, "sum"), F.prototype_loss(head.proj(x), P, y, "sum"))
    with pytest.raises(ValueError, match="'hinge'"):
        PrototypeClassifier(P, loss="hinge")


def test_output_batchnorm_centres_z_and_keeps_its_scale_whatever_the_features():
    torch.manual_seed(0)
    head = PrototypeClassifier(torch.eye(3), in_features=5, output_norm="batchnorm")
    feats = 1000.0 * torch.rand(64, 5)  # huge non-negative features, as after a ReLU
    z = head.proj(feats)
    assert z.mean(0).abs().max() < 1e-4 and torch.allclose(
        z.std(0, unbiased=False), torch.ones(3), atol=1e-3
    )
    plain = PrototypeClassifier(torch.eye(3), in_features=5)
    plain.proj.load_state_dict(head.proj[0].state_dict())
    # without it, every output points nearly the same way
    assert torch.nn.functional.normalize(plain.proj(feats), dim=1).mean(0).norm() > 0.9
    assert torch.nn.functional.normalize(z, dim=1).mean(0).norm() < 0.5
    head.loss(feats, torch.randint(0, 3, (64,)), reduction="mean").backward()
    assert head.proj[1].weight.grad is not None
    with pytest.raises(ValueError, match="output_norm.*'layer'"):
        PrototypeClassifier(torch.eye(3), in_features=5, output_norm="layer")
    with pytest.raises(ValueError, match="needs a projection"):
        PrototypeClassifier(torch.eye(3), output_norm="batchnorm")


def test_replace_classifier_keeps_the_replaced_layers_dtype():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 100)).double()
    p = protos.generate(100, 16, method="random")
    replace_classifier(model, p)
    head = model[2]
    assert head.prototypes.dtype == torch.float64 and head.proj.weight.dtype == torch.float64
    x = torch.randn(3, 10, dtype=torch.float64)
    scores = model(x)
    z = head.proj(model[1](model[0](x)))
    expected = (z / z.norm(dim=1, keepdim=True)) @ (p.double() / p.double().norm(dim=1)[:, None]).T
    assert scores.dtype == torch.float64 and torch.allclose(scores, expected, atol=1e-12)


def test_replace_classifier_keeps_the_replaced_layers_device():
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 5)).to("meta")
    old_device = model[2].weight.device
    replace_classifier(model, torch.eye(5, 4) + 0.5)
    assert model[2].prototypes.device == old_device == torch.device("meta")
    assert model[2].proj.weight.device == old_device


def test_head_losses_take_labels_as_a_list_or_array():
    torch.manual_seed(0)
    cls = protos.generate(4, 2, method="orthoplex")
    head = MultiTaskHead(cls, lower=0.0, upper=360.0, in_features=5)
    x, labels, y = torch.randn(3, 5), [3, 0, 1], [10.0, 200.0, 90.0]
    want = head.loss(x, {"label": torch.tensor(labels), "value": torch.tensor(y)})
    assert torch.equal(head.loss(x, {"label": labels, "value": y}), want)
    assert torch.equal(head.loss(x, {"label": np.array(labels), "value": np.array(y)}), want)
    clf = PrototypeClassifier(cls, in_features=5)
    clf.enable_dynamic_assignment()  # the class means take the labels too
    assert torch.equal(
        clf.loss(x, np.array(labels, dtype=np.int16)), clf.loss(x, torch.tensor(labels))
    )


def test_regressor_pole_is_normalised_exactly_and_sets_the_direction():
    head = PrototypeRegressor(2, 10.0, 20.0, pole=[0.0, 1e-6])  # far below the output floor
    assert torch.equal(head.pole, torch.tensor([0.0, 1.0]))
    x = torch.tensor([[0.0, 3.0], [0.0, -1.0], [5.0, 0.0]])
    assert head.predict(x).tolist() == [20.0, 10.0, 15.0]
    clf = PrototypeClassifier(torch.tensor([[1e-7, 0.0], [0.0, 2.0]]))
    assert torch.equal(clf.prototypes, torch.eye(2))


def test_predict_refuses_non_finite_outputs_instead_of_calling_them_class_0():
    head = PrototypeClassifier(torch.eye(3))
    x = torch.tensor([[0.0, 1.0, 0.0], [float("nan"), 0.0, 0.0], [0.0, 0.0, float("-inf")]])
    with pytest.raises(ValueError, match=r"^2 of 3 rows of z hold NaN or inf \(first: row 1\)$"):
        head.predict(x)
    assert head.predict(x[:1]).tolist() == [1]


# --------------------------------------------------------------------------- neighbour softmax


def test_neighbours_loss_keeps_a_table_of_the_nearest_prototypes_as_a_buffer():
    P = protos.generate(30, 6, method="random", seed=2)
    head = PrototypeClassifier(
        P, in_features=5, loss="neighbour_softmax", neighbours=4, scale=10.0, random_negatives=0
    )
    assert head.neighbours.shape == (30, 4) and head.neighbours.dtype == torch.long
    cos = P @ P.T - 3 * torch.eye(30)  # own class last
    assert torch.equal(head.neighbours, cos.topk(4, dim=1).indices)
    restored = PrototypeClassifier(P, in_features=5, loss="neighbour_softmax", neighbours=4)
    restored.neighbours.zero_()
    restored.load_state_dict(_roundtrip(head))
    assert torch.equal(restored.neighbours, head.neighbours)
    assert "neighbours" not in PrototypeClassifier(P).state_dict()  # only this loss has one
    x, y = torch.randn(9, 5), torch.randint(0, 30, (9,))
    expected = F.neighbour_softmax_loss(head.proj(x), P, y, head.neighbours, 10.0, 0.0, "sum")
    assert torch.allclose(head.loss(x, y), expected)
    assert torch.equal(head.predict(x), head(x).argmax(dim=1))  # prediction unchanged


def test_neighbours_capped_at_every_other_class_is_the_softmax_head():
    P = protos.generate(6, 4, method="random", seed=3)
    near = PrototypeClassifier(
        P, in_features=5, loss="neighbour_softmax", neighbours=32, margin=0.2
    )
    full = PrototypeClassifier(P, in_features=5, loss="cosine_softmax", margin=0.2)
    full.load_state_dict(near.state_dict(), strict=False)
    assert near.neighbours.shape == (6, 5)
    x, y = torch.randn(8, 5), torch.randint(0, 6, (8,))
    assert torch.allclose(near.loss(x, y, "mean"), full.loss(x, y, "mean"), atol=1e-6)


def test_neighbours_loss_trains_a_head_on_many_classes():
    g = torch.Generator().manual_seed(0)
    k, width = 40, 64
    centres = torch.randn(k, width, generator=g)
    y = torch.randint(0, k, (2000,), generator=g)
    x = centres[y] + 0.3 * torch.randn(2000, width, generator=g)
    torch.manual_seed(0)
    P = protos.generate(k, 8, method="random", seed=0)
    head = PrototypeClassifier(
        P, in_features=width, loss="neighbour_softmax", neighbours=5, scale=10.0, random_negatives=8
    )
    accuracy = lambda: float((head.predict(x) == y).float().mean())  # noqa: E731
    before = accuracy()
    opt = torch.optim.Adam(head.parameters(), lr=0.01)
    for _ in range(150):
        rows = torch.randint(0, 2000, (64,), generator=g)
        opt.zero_grad()
        head.loss(x[rows], y[rows], "mean").backward()
        opt.step()
    assert before < 0.2 and accuracy() > 0.9


def test_random_negatives_are_drawn_in_training_mode_only():
    P = protos.generate(20, 4, method="random", seed=1)
    head = PrototypeClassifier(P, loss="neighbour_softmax", neighbours=3, random_negatives=5)
    z, y = torch.randn(6, 4), torch.randint(0, 20, (6,))
    torch.manual_seed(0)
    drawn = torch.randint(20, (5,))
    torch.manual_seed(0)
    expected = F.neighbour_softmax_loss(z, P, y, head.neighbours, head.scale, 0.0, "sum", drawn)
    assert torch.allclose(head.loss(z, y), expected)
    head.eval()
    plain = F.neighbour_softmax_loss(z, P, y, head.neighbours, head.scale, 0.0, "sum")
    assert torch.allclose(head.loss(z, y), plain)


@pytest.mark.parametrize("first", [True, False])
def test_neighbour_table_follows_dynamic_assignment(first):
    """After a re-match, row c lists the classes owning the prototypes nearest to the one
    class c now owns, as a fresh search over the permuted prototypes finds them."""
    g = torch.Generator().manual_seed(4)
    P = protos.generate(25, 5, method="random", seed=4)
    head = PrototypeClassifier(P, loss="neighbour_softmax", neighbours=4)
    head.enable_dynamic_assignment(momentum=0.0)
    for _ in range(3):
        means, seen = torch.randn(25, 5, generator=g), torch.ones(25, dtype=torch.bool)
        if first:
            changed = head.initial_reassign(means, seen)
        else:
            head.assignment.tracker.update(means, torch.arange(25))
            changed = head.reassign()
        assert changed > 0
        assert not torch.equal(head.prototypes, P)
        assert torch.equal(head.neighbours, protos.nearest_neighbours(head.prototypes, 4)[1])
    head.prototypes.copy_(P)  # by hand: the table waits for refresh_neighbours
    head.refresh_neighbours()
    assert torch.equal(head.neighbours, protos.nearest_neighbours(P, 4)[1])


def test_multitask_head_takes_the_neighbours_loss():
    P = protos.generate(10, 3, method="random", seed=0)
    head = MultiTaskHead(P, 0.0, 1.0, in_features=6, loss="neighbour_softmax", neighbours=3)
    assert head.classifier.neighbours.shape == (10, 3)
    x, y, v = torch.randn(5, 6), torch.randint(0, 10, (5,)), torch.rand(5)
    assert torch.isfinite(head.loss(x, {"label": y, "value": v}))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"neighbours": 0}, "neighbours must be an integer >= 1, got 0"),
        ({"neighbours": True}, "neighbours must be an integer >= 1, got True"),
        ({"neighbours": 2.5}, "neighbours must be an integer >= 1, got 2.5"),
        ({"random_negatives": -1}, "random_negatives must be an integer >= 0, got -1"),
        ({"loss": "neighbors"}, r"loss must be one of \['squared_cosine', 'cosine_softmax'"),
    ],
)
def test_neighbours_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrototypeClassifier(torch.eye(4), **{"loss": "neighbour_softmax", **kwargs})
