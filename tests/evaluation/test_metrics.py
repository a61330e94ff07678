"""hpn.evaluation.metrics: counts that add up, and metrics checked against references."""

import pytest
import torch

from hpn.evaluation.metrics import (
    SHOT_GROUPS,
    MetricCounts,
    accuracy_from_counts,
    group_accuracy,
    macro_f1_from_counts,
    prediction_counts,
    recall_from_counts,
)


def _batch(n, k, seed):
    """Labels, predictions right about 60 % of the time, values, predicted values."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, k, (n,), generator=g)
    guess = torch.where(
        torch.rand(n, generator=g) < 0.6, truth, torch.randint(0, k, (n,), generator=g)
    )
    value = torch.randn(n, generator=g)
    return truth, guess, value, value + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)


def _counted(truth, guess, value, value_guess, k, loss_sum=1.0):
    counts = MetricCounts.zeros(k)
    counts.update(
        loss_sum, {"label": guess, "value": value_guess}, {"label": truth, "value": value}
    )
    return counts


@pytest.mark.parametrize("task", ["classification", "regression", "multitask"])
def test_counts_of_two_halves_add_up_to_the_counts_of_the_whole(task):
    k = 6
    truth, guess, value, value_guess = _batch(200, k, seed=0)
    whole = _counted(truth, guess, value, value_guess, k, loss_sum=3.0)
    first = _counted(truth[:70], guess[:70], value[:70], value_guess[:70], k, loss_sum=1.0)
    second = _counted(truth[70:], guess[70:], value[70:], value_guess[70:], k, loss_sum=2.0)
    both = first + second
    assert torch.allclose(both.totals, whole.totals, rtol=0, atol=1e-12)
    assert torch.equal(both.per_class, whole.per_class)
    a, b = both.compute(task), whole.compute(task)
    assert (a.loss, a.accuracy, a.macro_f1) == pytest.approx((b.loss, b.accuracy, b.macro_f1))
    assert a.mae == pytest.approx(b.mae)
    # updating one state batch by batch is the same as adding states
    running = MetricCounts.zeros(k)
    for rows, loss in ((slice(0, 70), 1.0), (slice(70, 200), 2.0)):
        running.update(
            loss,
            {"label": guess[rows], "value": value_guess[rows]},
            {"label": truth[rows], "value": value[rows]},
        )
    assert torch.equal(running.per_class, whole.per_class)
    assert torch.allclose(running.totals, whole.totals, rtol=0, atol=1e-12)


def test_map_reduces_every_tensor_as_a_sum_over_processes_would():
    truth, guess, value, value_guess = _batch(50, 4, seed=1)
    counts = _counted(truth, guess, value, value_guess, 4)
    doubled = counts.map(lambda t: t * 2)  # two ranks that counted the same examples
    assert torch.equal(doubled.per_class, 2 * counts.per_class)
    assert torch.equal(doubled.totals, 2 * counts.totals)
    assert doubled.compute("multitask").accuracy == counts.compute("multitask").accuracy


def test_the_metrics_of_a_task_are_computed_the_direct_way():
    k = 5
    truth, guess, value, value_guess = _batch(300, k, seed=2)
    m = _counted(truth, guess, value, value_guess, k, loss_sum=30.0).compute("multitask")
    assert m.loss == pytest.approx(0.1)
    assert m.accuracy == pytest.approx(float((truth == guess).double().mean()))
    assert m.mae == pytest.approx(float((value_guess - value.double()).abs().mean()))
    recall = [float((guess[truth == c] == c).double().mean()) for c in range(k)]
    assert m.recall.tolist() == pytest.approx(recall)
    assert m.recall.dtype == torch.float64
    only_labels = _counted(truth, guess, value, value_guess, k).compute("classification")
    assert only_labels.mae is None and only_labels.accuracy is not None
    only_values = _counted(truth, guess, value, value_guess, k).compute("regression")
    assert (only_values.accuracy, only_values.macro_f1, only_values.recall) == (None, None, None)
    empty = MetricCounts.zeros(0).compute("regression")  # nothing counted: no division by 0
    assert (empty.loss, empty.mae) == (0.0, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_matches_scikit_learn(seed):
    from sklearn.metrics import f1_score

    k = 7
    truth, guess, _, _ = _batch(400, 5, seed)  # classes 5 and 6 never occur
    guess[guess == 4] = 6  # class 6 occurs only among the predictions
    counts = prediction_counts(truth, guess, k)
    assert macro_f1_from_counts(*counts) == pytest.approx(f1_score(truth, guess, average="macro"))
    state = MetricCounts.zeros(k)
    state.update(0.0, {"label": guess}, {"label": truth})
    assert state.compute("classification").macro_f1 == pytest.approx(
        f1_score(truth, guess, average="macro")
    )
    assert accuracy_from_counts(counts) == pytest.approx(float((truth == guess).double().mean()))
    assert macro_f1_from_counts(*torch.zeros(3, k, dtype=torch.long)) == 0.0


def test_recall_of_a_class_without_examples_is_zero():
    counts = prediction_counts(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 3)
    assert recall_from_counts(counts).tolist() == [0.5, 1.0, 0.0]


def test_group_accuracy_against_a_direct_computation():
    g = torch.Generator().manual_seed(3)
    k = 40
    train_counts = torch.randint(0, 300, (k,), generator=g)
    recall = torch.rand(k, generator=g, dtype=torch.float64)
    direct = {}
    for name, (low, high) in SHOT_GROUPS.items():
        members = [recall[c].item() for c in range(k) if low <= train_counts[c].item() <= high]
        direct[name] = sum(members) / len(members) if members else None
    assert group_accuracy(recall, train_counts) == pytest.approx(direct)
    assert set(SHOT_GROUPS) == {"many", "medium", "few"}
    few_only = group_accuracy(recall[:2], torch.tensor([3, 5]))
    assert few_only["many"] is None and few_only["medium"] is None
