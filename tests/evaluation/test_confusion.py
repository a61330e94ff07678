"""Confusion counts kept sparse, checked against scikit-learn and naive per-class loops."""

import pytest
import torch

from hpn.evaluation.confusion import DENSE_LIMIT, Confusion
from hpn.evaluation.metrics import prediction_counts, recall_from_counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_match_scikit_learn_and_per_class_loops(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(seed)
    k = 7
    truth = torch.randint(0, k - 1, (300,), generator=g)  # class 6 never occurs: no examples
    guess = torch.where(
        torch.rand(300, generator=g) < 0.6, truth, torch.randint(0, k, (300,), generator=g)
    )
    confusion = Confusion.from_labels(truth, guess, k)
    reference = torch.as_tensor(metrics.confusion_matrix(truth, guess, labels=list(range(k))))
    assert torch.equal(confusion.matrix(), reference)
    assert confusion.examples == 300
    assert confusion.accuracy == pytest.approx((truth == guess).double().mean().item())
    rows = confusion.per_class([f"c{c}" for c in range(k)])
    recall = recall_from_counts(prediction_counts(truth, guess, k))
    assert rows["accuracy"][:6] == pytest.approx(recall[:6].tolist())
    assert rows["accuracy"][6] is None
    assert rows["predicted"] == torch.bincount(guess, minlength=k).tolist()
    for c in range(k):  # the most frequent wrong prediction, ties to the smaller id
        wrong = reference[c].clone()
        wrong[c] = 0
        expected = int(wrong.argmax()) if wrong.max() > 0 else None
        assert rows["confused_with"][c] == expected
        assert rows["confused_count"][c] == int(wrong.max())


def test_tables_dense_up_to_the_limit_then_one_row_per_pair():
    small = Confusion.from_labels(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0]), 2)
    assert small.table(["a", "b"]) == {"true/predicted": ["a", "b"], "a": [0, 1], "b": [1, 1]}
    k = DENSE_LIMIT + 10
    truth = torch.arange(200) % k
    guess = (truth + (torch.arange(200) % 3 == 0).long()) % k
    big = Confusion.from_labels(truth, guess, k).table()
    assert set(big) == {"true", "predicted", "count"} and sum(big["count"]) == 200
    pairs = {(int(t), int(p)) for t, p in zip(truth, guess, strict=True)}
    assert {(int(t), int(p)) for t, p in zip(big["true"], big["predicted"], strict=True)} == pairs


def test_bad_labels_name_the_problem():
    with pytest.raises(ValueError, match=r"predicted class ids must lie in \[0, 3\)"):
        Confusion.from_labels(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="two \\(N,\\) tensors"):
        Confusion.from_labels(torch.tensor([0, 1]), torch.tensor([0]), 3)


@pytest.mark.parametrize("k", [5, DENSE_LIMIT + 1])
def test_figures_for_few_and_many_classes(tmp_path, k):
    pytest.importorskip("matplotlib")
    from hpn.evaluation.plots import confusion_figure

    truth = torch.arange(4 * k) % k
    guess = torch.where(truth % 2 == 0, truth, (truth + 1) % k)
    path = confusion_figure(Confusion.from_labels(truth, guess, k), tmp_path / "c.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
