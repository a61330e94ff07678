"""The one epoch loop (hpn.training.loop): steps, weights, non-finite losses, the best-epoch watch."""

import copy
import math

import pytest
import torch
from torch import nn

from hpn.training.loop import Batch, NonFiniteLoss, Watch, train_epoch


def _problem(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, generator=g), torch.randn(n, generator=g)
    torch.manual_seed(seed)
    return x, y, nn.Linear(3, 1)


def _mse(model):
    def batch_loss(x, y, reduction):
        per = (model(x)[:, 0] - y) ** 2
        return {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]

    return batch_loss


def _batches(x, y, size=8, weight=None):
    return [
        Batch(x[i : i + size], y[i : i + size], None if weight is None else weight[i : i + size])
        for i in range(0, len(x), size)
    ]


def test_an_epoch_is_the_plain_minibatch_loop_and_reports_the_mean_loss():
    x, y, model = _problem()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = train_epoch(_batches(x, y), _mse(model), opt)

    ref_opt, total = torch.optim.SGD(ref.parameters(), lr=0.1), 0.0
    for i in range(0, 40, 8):
        ref_opt.zero_grad()
        step = ((ref(x[i : i + 8])[:, 0] - y[i : i + 8]) ** 2).mean()
        step.backward()
        ref_opt.step()
        total += float(step.detach()) * 8
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert (loss.total, loss.examples, loss.mean) == (total, 40, total / 40)


def test_unit_sample_weights_train_exactly_as_none_and_weights_reweight():
    x, y, model = _problem()
    twin, other = copy.deepcopy(model), copy.deepcopy(model)
    train_epoch(_batches(x, y), _mse(model), torch.optim.SGD(model.parameters(), lr=0.1))
    ones = torch.ones(40)
    train_epoch(_batches(x, y, weight=ones), _mse(twin), torch.optim.SGD(twin.parameters(), lr=0.1))
    assert torch.equal(model.weight, twin.weight)
    weight = torch.linspace(0.0, 2.0, 40)
    train_epoch(
        _batches(x, y, weight=weight), _mse(other), torch.optim.SGD(other.parameters(), lr=0.1)
    )
    assert not torch.equal(model.weight, other.weight)


def test_sum_reduction_and_a_penalty_enter_the_step_and_the_reported_loss():
    x, y, model = _problem()
    loss = train_epoch(
        _batches(x, y),
        _mse(model),
        torch.optim.SGD(model.parameters(), lr=0.0),
        reduction="sum",
        penalty=lambda n: torch.tensor(1.0),
    )
    per = float(((model(x)[:, 0] - y) ** 2).sum().detach())  # lr 0: the model did not move
    assert loss.total == pytest.approx(per + 5 * 1.0)  # one penalty per batch, 5 batches


def test_a_non_finite_loss_stops_before_its_step():
    x, y, model = _problem()
    y = y.clone()
    y[20] = math.inf  # the third batch
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLoss, match="loss became inf at epoch 7, step 2") as err:
        train_epoch(_batches(x, y), _mse(model), opt, epoch=7)
    assert (err.value.step, err.value.epoch) == (2, 7)
    assert isinstance(err.value, FloatingPointError)
    # two steps were taken, not three
    ref = nn.Linear(3, 1)
    ref.load_state_dict(before)
    train_epoch(_batches(x[:16], y[:16]), _mse(ref), torch.optim.SGD(ref.parameters(), lr=0.1))
    assert torch.equal(model.weight, ref.weight)


def test_on_step_sees_every_step_with_the_running_mean():
    x, y, model = _problem()
    seen = []
    loss = train_epoch(
        _batches(x, y, size=16),
        _mse(model),
        torch.optim.SGD(model.parameters(), lr=0.01),
        on_step=lambda step, n, mean: seen.append((step, n, mean)),
    )
    assert [(s, n) for s, n, _ in seen] == [(1, 16), (2, 16), (3, 8)]
    assert seen[-1][2] == pytest.approx(loss.mean)


def _reference_counter(scores, higher, tol, inclusive):
    """scikit-learn's MLP rule (inclusive) or a strict one, written as a plain loop."""
    best, count, stops = (-math.inf if higher else math.inf), 0, []
    for s in scores:
        gain = (s - best) if higher else (best - s)
        progress = gain >= tol if inclusive else gain > tol
        count = 0 if progress else count + 1
        best = max(best, s) if higher else min(best, s)
        stops.append(count)
    return stops


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("tol", [0.0, 0.25])
def test_watch_counts_epochs_without_progress_like_a_plain_loop(higher, inclusive, tol):
    scores = [1.0, 1.0, 1.25, 1.5, 1.5, 1.0, 2.0, 2.25, 2.25, 0.5]
    watch = Watch(higher=higher, tol=tol, inclusive=inclusive)
    counts = []
    for epoch, s in enumerate(scores, start=1):
        watch.update(s, epoch)
        counts.append(watch.stale)
    assert counts == _reference_counter(scores, higher, tol, inclusive)
    assert watch.best == (max(scores) if higher else min(scores))
    best_at = scores.index(watch.best) + 1  # the first epoch that reached it
    assert watch.best_epoch == best_at


def test_watch_patience_and_resumed_state():
    watch = Watch(higher=False, patience=2)
    assert not watch.exhausted
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.0], start=1):
        watch.update(loss, epoch)
    assert (watch.best, watch.best_epoch, watch.stale, watch.exhausted) == (2.0, 2, 2, True)
    resumed = Watch(higher=False, patience=2, best=2.0, best_epoch=2, stale=4 - 2)
    assert resumed.exhausted  # a stopped run stays stopped after a resume
    assert Watch(higher=True).best == -math.inf and Watch(higher=False).best == math.inf


@pytest.mark.parametrize(
    ("higher", "limit", "scores"), [(True, 1.0, [0.9, 1.0]), (False, 0.0, [0.5, 0.0])]
)
def test_watch_stops_at_once_when_the_best_score_is_at_its_limit(higher, limit, scores):
    bounded, unbounded = Watch(higher, patience=3, limit=limit), Watch(higher, patience=3)
    for epoch, score in enumerate(scores, start=1):
        bounded.update(score, epoch)
        unbounded.update(score, epoch)
    # nothing can beat the limit, so the epochs of patience could not change the best one
    assert bounded.exhausted and bounded.best_epoch == 2
    assert not unbounded.exhausted
    assert not Watch(higher, patience=None, limit=limit, best=limit).exhausted  # no early stop


def test_scikit_learn_estimators_name_a_non_finite_training_loss():
    pytest.importorskip("sklearn")
    import numpy as np

    from hpn.sklearn import HPNClassifier

    rng = np.random.default_rng(0)
    X = rng.choice([-3e38, 3e38], size=(20, 50))  # float32 sums overflow: NaN outputs
    clf = HPNClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="training loss became nan at epoch 1; lower"):
        clf.fit(X, np.arange(20) % 2)
