"""hpn.losses: each loss object against its formula worked out another way (plain Python on
small tensors), the paper's analytic gradient, and the one contract every head keeps:
``head.loss(features, target, reduction)`` with the target dict the data sources yield."""

import math

import pytest
import torch
from torch import nn

from hpn import functional as F
from hpn import losses as L
from hpn import prototypes as protos
from hpn.baselines import MSERegressor, MultiTaskBaseline, SoftmaxClassifier
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor


def _cos(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _reduce(values: list[float], reduction: str):
    if reduction == "sum":
        return sum(values)
    if reduction == "mean":
        return sum(values) / len(values)
    return values


def _close(got: torch.Tensor, want, rel: float = 1e-12) -> None:
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(want, rel=rel, abs=1e-14)


Z = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 1.0], [-1.0, 0.2, 0.3], [0.4, -0.4, 2.0]])
Z = Z.double()
P = F.unit(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, -1.0, 0.0]]))
P = P.double()
Y = torch.tensor([0, 1, 3, 2])
V = torch.tensor([10.0, 25.0, 17.5, 40.0], dtype=torch.float64)
LOW, HIGH = 10.0, 40.0


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_prototype_loss_is_one_minus_the_target_cosine_squared(reduction):
    per_example = [
        (1 - _cos(z, P[y].tolist())) ** 2 for z, y in zip(Z.tolist(), Y.tolist(), strict=True)
    ]
    got = L.PrototypeLoss()(L.PrototypeOutput(Z, P), {"label": Y}, reduction)
    _close(got, _reduce(per_example, reduction))


def _softmax_by_hand(z, y, candidates, scale, margin, weights=None):
    """-log of the target's share among ``candidates`` (target first), each other candidate's
    exponential multiplied by its weight (1 unless given)."""
    target = math.exp(scale * (_cos(z, P[y].tolist()) - margin))
    others = sum(
        (1.0 if weights is None else weights[j]) * math.exp(scale * _cos(z, P[c].tolist()))
        for j, c in enumerate(candidates)
    )
    return -math.log(target / (target + others))


@pytest.mark.parametrize(("scale", "margin"), [(None, 0.0), (3.0, 0.0), (8.0, 0.25)])
def test_cosine_softmax_is_the_cross_entropy_of_scaled_cosines_with_a_target_margin(scale, margin):
    s = F.default_scale(4) if scale is None else scale
    per_example = [
        _softmax_by_hand(z, y, [c for c in range(4) if c != y], s, margin)
        for z, y in zip(Z.tolist(), Y.tolist(), strict=True)
    ]
    loss = L.CosineSoftmaxLoss(scale, margin)
    for reduction in ("sum", "mean", "none"):
        got = loss(L.PrototypeOutput(Z, P), {"label": Y}, reduction)
        _close(got, _reduce(per_example, reduction))


TABLE = torch.tensor([[1, 3], [0, 2], [0, 1], [1, 0]])  # two wrong classes per class


def test_neighbour_softmax_in_evaluation_mode_is_the_softmax_over_the_target_and_its_table():
    loss = L.NeighbourSoftmaxLoss(neighbours=2, random_negatives=5, scale=4.0, margin=0.1).eval()
    per_example = [
        _softmax_by_hand(z, y, TABLE[y].tolist(), 4.0, 0.1)
        for z, y in zip(Z.tolist(), Y.tolist(), strict=True)
    ]
    got = loss(L.PrototypeOutput(Z, P, TABLE), {"label": Y}, "none")
    _close(got, per_example)


def test_neighbour_softmax_in_training_mode_adds_the_drawn_negatives_weighted_k_over_r():
    loss = L.NeighbourSoftmaxLoss(neighbours=2, random_negatives=3, scale=4.0)
    torch.manual_seed(5)
    drawn = torch.randint(4, (3,)).tolist()  # what the loss will draw, same seed
    torch.manual_seed(5)
    got = loss(L.PrototypeOutput(Z, P, TABLE), {"label": Y}, "none")
    per_example = []
    for z, y in zip(Z.tolist(), Y.tolist(), strict=True):
        near = TABLE[y].tolist()
        # a draw equal to the target or a listed neighbour is dropped; each other stands for
        # K / r classes
        extra = [c for c in drawn if c != y and c not in near]
        per_example.append(
            _softmax_by_hand(z, y, near + extra, 4.0, 0.0, [1.0] * len(near) + [4 / 3] * len(extra))
        )
    _close(got, per_example)
    with pytest.raises(ValueError, match="neighbour table"):
        loss(L.PrototypeOutput(Z, P), Y)


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_regression_loss_is_the_scaled_target_minus_the_pole_cosine_squared(reduction):
    pole = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)  # normalised inside
    per_example = [
        (2 * (v - LOW) / (HIGH - LOW) - 1 - _cos(z, [0.0, 0.0, 1.0])) ** 2
        for z, v in zip(Z.tolist(), V.tolist(), strict=True)
    ]
    got = L.RegressionLoss()(L.PoleOutput(Z, pole, LOW, HIGH), {"value": V}, reduction)
    _close(got, _reduce(per_example, reduction))


def test_baseline_losses_are_cross_entropy_of_logits_and_mse_on_the_scaled_targets():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    labels = torch.tensor([2, 0])
    want = [
        -row[y] + math.log(sum(math.exp(v) for v in row))
        for row, y in zip(logits.tolist(), labels.tolist(), strict=True)
    ]
    got = L.SoftmaxCrossEntropyLoss()(logits, {"label": labels}, "none")
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    out = torch.tensor([-1.0, 0.5, 0.0, 2.0])
    values = torch.tensor([10.0, 25.0, 17.5, 40.0])
    want = [
        (o - (2 * (v - LOW) / (HIGH - LOW) - 1)) ** 2
        for o, v in zip(out.tolist(), values.tolist(), strict=True)
    ]
    got = L.ScaledMSELoss()(L.ScaledOutput(out, LOW, HIGH), {"value": values}, "sum")
    assert float(got) == pytest.approx(sum(want), rel=1e-6)


def test_multitask_loss_weighs_the_two_losses_t_and_one_minus_t():
    pole = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    output = L.MultiTaskOutput(L.PrototypeOutput(Z, P), L.PoleOutput(Z, pole, LOW, HIGH))
    target = {"label": Y, "value": V}
    lc = [(1 - _cos(z, P[y].tolist())) ** 2 for z, y in zip(Z.tolist(), Y.tolist(), strict=True)]
    lr = [
        (2 * (v - LOW) / (HIGH - LOW) - 1 - _cos(z, pole.tolist())) ** 2
        for z, v in zip(Z.tolist(), V.tolist(), strict=True)
    ]
    loss = L.MultiTaskLoss(L.PrototypeLoss(), L.RegressionLoss(), task_weight=0.3)
    _close(loss(output, target, "none"), [0.3 * c + 0.7 * r for c, r in zip(lc, lr, strict=True)])
    _close(loss(output, target), 0.3 * sum(lc) + 0.7 * sum(lr))  # default: the paper's sum
    with pytest.raises(ValueError, match="target dict with 'label' and 'value'"):
        loss(output, Y)
    with pytest.raises(ValueError, match="task_weight must be in"):
        L.MultiTaskLoss(L.PrototypeLoss(), L.RegressionLoss(), task_weight=1.5)


def test_paper_loss_gradient_is_the_papers_formula():
    """dL/dz = 2 (1 - c) (c z / |z|^2 - p / (|z| |p|)) for one example, c = cos(z, p)."""
    g = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(6, 5, generator=g, dtype=torch.float64)).requires_grad_()
    prototypes = torch.randn(4, 5, generator=g, dtype=torch.float64)  # not unit: |p| matters
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    L.PrototypeLoss()(L.PrototypeOutput(z, prototypes), {"label": labels}).backward()
    zd, p = z.detach(), prototypes[labels]
    zn, pn = zd.norm(dim=1, keepdim=True), p.norm(dim=1, keepdim=True)
    c = (zd * p).sum(dim=1, keepdim=True) / (zn * pn)
    expected = 2 * (1 - c) * (c * zd / zn**2 - p / (zn * pn))
    assert torch.allclose(z.grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "loss",
    [
        L.PrototypeLoss(),
        L.CosineSoftmaxLoss(scale=3.0, margin=0.2),
        L.NeighbourSoftmaxLoss(neighbours=2, random_negatives=0, scale=3.0),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_classification_losses_pass_gradcheck_in_float64(loss):
    z = Z.clone().requires_grad_()
    output = lambda z: L.PrototypeOutput(z, P, TABLE)  # noqa: E731
    assert torch.autograd.gradcheck(lambda z: loss(output(z), {"label": Y}), (z,))


def test_loss_objects_hold_no_state_and_names_build_the_same_objects():
    made = [
        L.classification_loss("squared_cosine"),
        L.classification_loss("cosine_softmax", scale=5.0, margin=0.1),
        L.classification_loss("neighbour_softmax", scale=8, neighbours=3, random_negatives=0),
    ]
    assert [type(m) for m in made] == [
        L.PrototypeLoss,
        L.CosineSoftmaxLoss,
        L.NeighbourSoftmaxLoss,
    ]
    assert [m.kind for m in made] == list(L.LOSSES)[:3]
    assert (made[1].scale, made[1].margin) == (5.0, 0.1)
    assert (made[2].neighbours, made[2].random_negatives, made[2].scale) == (3, 0, 8.0)
    others = [L.RegressionLoss(), L.SoftmaxCrossEntropyLoss(), L.ScaledMSELoss()]
    for loss in [*made, *others, L.MultiTaskLoss(made[0], others[0])]:
        assert loss.state_dict() == {} and not list(loss.parameters())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: L.classification_loss("hinge"), r"loss must be one of \['squared_cosine'"),
        (lambda: L.classification_loss("cosine_softmax", scale=-1.0), "scale must be a positive"),
        (lambda: L.classification_loss("squared_cosine", scale=2.0), "takes no scale"),
        (lambda: L.CosineSoftmaxLoss(margin=-0.1), "margin must be >= 0, got -0.1"),
        (lambda: L.NeighbourSoftmaxLoss(neighbours=0), "neighbours must be an integer >= 1"),
        (lambda: L.NeighbourSoftmaxLoss(random_negatives=-2), "random_negatives must be"),
        (lambda: PrototypeClassifier(P, loss=L.PrototypeLoss(), scale=3.0), "loss object's"),
        (lambda: PrototypeClassifier(P, loss=print), "or a loss object, got <built-in"),
        (lambda: L.target_part({"value": V}, "label"), r"no 'label' \(it has \['value'\]\)"),
    ],
)
def test_bad_loss_settings_are_one_value_error_naming_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- the contract

K, D, WIDTH = 6, 4, 5


def _heads() -> dict[str, nn.Module]:
    P6 = protos.generate(K, D, method="random", seed=1)
    return {
        "paper": PrototypeClassifier(P6, WIDTH),
        "softmax": PrototypeClassifier(P6, WIDTH, loss="cosine_softmax", margin=0.1),
        "neighbours": PrototypeClassifier(
            P6, WIDTH, loss="neighbour_softmax", neighbours=2, random_negatives=3
        ),
        "regressor": PrototypeRegressor(3, LOW, HIGH, in_features=WIDTH),
        "multitask": MultiTaskHead(P6, LOW, HIGH, in_features=WIDTH, loss="cosine_softmax"),
        "softmax baseline": SoftmaxClassifier(WIDTH, K),
        "mse baseline": MSERegressor(WIDTH, LOW, HIGH),
        "multitask baseline": MultiTaskBaseline(WIDTH, K, LOW, HIGH, task_weight=0.25),
    }


@pytest.mark.parametrize("name", list(_heads()))
def test_every_head_takes_the_target_dict_with_one_signature(name):
    head = _heads()[name].eval()  # no random negatives: calls compare exactly
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, WIDTH, generator=g)
    target = {"label": torch.randint(0, K, (7,), generator=g), "value": LOW + 30 * torch.rand(7)}
    per_example = head.loss(x, target, reduction="none")
    assert per_example.shape == (7,)
    assert torch.allclose(head.loss(x, target, "sum"), per_example.sum())
    assert torch.allclose(head.loss(x, target, "mean"), per_example.mean())
    if len(head.target_keys) == 1:  # a single-task head also takes its one part alone
        (key,) = head.target_keys
        assert torch.equal(head.loss(x, target[key], "none"), per_example)
        assert torch.equal(head.loss(x, {key: target[key]}, "none"), per_example)
    predicted = head.predict(x)
    parts = predicted if len(head.target_keys) > 1 else (predicted,)
    assert len(parts) == len(head.target_keys)


def test_a_head_given_a_loss_object_computes_what_the_name_computes():
    P6 = protos.generate(K, D, method="random", seed=1)
    x, y = torch.randn(9, WIDTH), torch.randint(0, K, (9,))
    for name, obj in [
        (dict(loss="cosine_softmax", scale=7.0, margin=0.2), L.CosineSoftmaxLoss(7.0, 0.2)),
        (dict(loss="neighbour_softmax", neighbours=3), L.NeighbourSoftmaxLoss(3)),
        (dict(loss="squared_cosine"), L.PrototypeLoss()),
    ]:
        torch.manual_seed(0)
        by_name = PrototypeClassifier(P6, WIDTH, **name)
        torch.manual_seed(0)
        by_object = PrototypeClassifier(P6, WIDTH, loss=obj)
        assert by_object.criterion is obj and by_object.loss_kind == by_name.loss_kind
        assert (by_object.scale, by_object.margin) == (by_name.scale, by_name.margin)
        assert by_object.state_dict().keys() == by_name.state_dict().keys()
        torch.manual_seed(1)
        want = by_name.loss(x, {"label": y})
        torch.manual_seed(1)  # the same negatives for the neighbour softmax
        assert torch.equal(by_object.loss(x, {"label": y}), want)


def test_head_losses_are_the_functional_losses_bit_for_bit():
    """The loss objects add no arithmetic: each head's loss is the functional value."""
    g = torch.Generator().manual_seed(3)
    P6 = protos.generate(K, D, method="random", seed=1)
    x, y = torch.randn(8, WIDTH, generator=g), torch.randint(0, K, (8,), generator=g)
    v = LOW + 30 * torch.rand(8, generator=g)
    soft = PrototypeClassifier(P6, WIDTH, loss="cosine_softmax", margin=0.3)
    z = soft.proj(x)
    want = F.prototype_softmax_loss(z, P6, y, soft.scale, 0.3, "sum")
    assert torch.equal(soft.loss(x, {"label": y}), want)
    multi = MultiTaskHead(P6, LOW, HIGH, in_features=WIDTH, task_weight=0.25)
    z = multi.proj(x)
    lc = F.prototype_loss(z[:, 1:], P6, y, "mean")
    lr = F.regression_loss(z, torch.eye(D + 1)[0], v, LOW, HIGH, "mean")
    assert torch.equal(multi.loss(x, {"label": y, "value": v}, "mean"), 0.25 * lc + 0.75 * lr)


def test_the_neighbour_loss_draws_negatives_only_while_its_head_trains():
    P20 = protos.generate(20, 4, method="random", seed=1)
    head = PrototypeClassifier(P20, loss=L.NeighbourSoftmaxLoss(3, random_negatives=4))
    multi = MultiTaskHead(P20, LOW, HIGH, loss=L.NeighbourSoftmaxLoss(3, random_negatives=4))
    for h in (head, multi):
        h.eval()
        assert not h.criterion.training
        h.train()
        assert h.criterion.training
    z, y = torch.randn(5, 4), torch.randint(0, 20, (5,))
    state = torch.get_rng_state()
    head.loss(z, y)
    assert not torch.equal(torch.get_rng_state(), state)  # a draw in training mode
    head.eval()
    state = torch.get_rng_state()
    head.loss(z, y)
    assert torch.equal(torch.get_rng_state(), state)  # none in evaluation mode
