import itertools

import pytest
import torch

from hpn import functional as F
from hpn.assignment import ClassMeans, match
from hpn.heads import PrototypeClassifier


def _brute_force_best(sim: torch.Tensor) -> float:
    k = len(sim)
    return max(
        sum(float(sim[c, p]) for c, p in enumerate(perm))
        for perm in itertools.permutations(range(k))
    )


@pytest.mark.parametrize("seed", range(6))
def test_hungarian_matching_is_an_optimal_permutation(seed):
    g = torch.Generator().manual_seed(seed)
    means, protos = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    result = match(means, protos, "hungarian")
    assert sorted(result.perm.tolist()) == list(range(6))
    sim = F.unit(means.double()) @ F.unit(protos.double()).T
    assert result.total_cosine == pytest.approx(_brute_force_best(sim))
    assert result.method == "hungarian"


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_matching_is_equivariant_to_relabelling_the_classes(method):
    g = torch.Generator().manual_seed(7)
    means, protos = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    relabel = torch.randperm(40, generator=g)
    base = match(means, protos, method).perm
    moved = match(means[relabel], protos, method).perm
    assert torch.equal(moved, base[relabel])  # class relabel[i] keeps its prototype


def test_greedy_is_a_permutation_close_to_the_optimum_and_recovers_a_planted_matching():
    g = torch.Generator().manual_seed(1)
    protos = F.unit(torch.randn(300, 16, generator=g))
    planted = torch.randperm(300, generator=g)
    means = protos[planted] + 0.05 * torch.randn(300, 16, generator=g)
    greedy = match(means, protos, "greedy", candidates=4)
    assert torch.equal(greedy.perm, planted)
    noisy = torch.randn(300, 16, generator=g)
    exact, approx = match(noisy, protos, "hungarian"), match(noisy, protos, "greedy", candidates=8)
    assert sorted(approx.perm.tolist()) == list(range(300))
    assert approx.total_cosine >= 0.9 * exact.total_cosine
    assert approx.method == "greedy+hungarian"


def test_class_means_scatter_every_row_and_move_by_the_momentum():
    tracker = ClassMeans(3, 2, momentum=0.5)
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    tracker.update(z, torch.tensor([0, 0, 2]))  # class 0 twice in one batch: both rows count
    assert torch.allclose(tracker.means[0], torch.tensor([0.5, 0.5]))  # mean of (1,0) and (0,1)
    assert torch.allclose(tracker.means[2], torch.tensor([0.0, 1.0]))  # first sight: taken as is
    assert tracker.seen.tolist() == [True, False, True]
    tracker.update(torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    assert torch.allclose(tracker.means[2], torch.tensor([0.5, 0.5]))  # 0.5 old + 0.5 new
    assert torch.allclose(tracker.means[0], torch.tensor([0.5, 0.5]))  # untouched
    with pytest.raises(ValueError, match="1.0"):
        ClassMeans(3, 2, momentum=1.0)


def test_head_reassigns_survives_state_dict_and_predicts_with_the_new_owners():
    protos = torch.eye(3)
    head = PrototypeClassifier(protos)  # identity projection: z is the output itself
    head.enable_dynamic_assignment(momentum=0.0)
    head.train()
    # class 0 outputs point at prototype 2, class 2 at prototype 0, class 1 stays
    z = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    head.loss(z, torch.tensor([0, 1, 2]))
    assert head.reassign() == 2
    assert head.assignment.perm.tolist() == [2, 1, 0]
    assert torch.equal(head.prototypes, protos[[2, 1, 0]])
    head.eval()
    assert head.predict(z).tolist() == [0, 1, 2]  # prediction uses the new owners
    copy = PrototypeClassifier(protos)
    copy.enable_dynamic_assignment()
    copy.load_state_dict(head.state_dict())
    assert copy.assignment.perm.tolist() == [2, 1, 0] and copy.predict(z).tolist() == [0, 1, 2]


def test_unseen_classes_keep_their_prototype():
    head = PrototypeClassifier(torch.eye(4))
    head.enable_dynamic_assignment(momentum=0.0)
    head.train()
    head.loss(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), torch.tensor([1]))  # only class 1 seen
    assert head.reassign() == 0 and head.assignment.perm.tolist() == [0, 1, 2, 3]


def test_match_rejects_mismatched_shapes_and_methods():
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        match(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="'fast'"):
        match(torch.zeros(3, 2), torch.zeros(3, 2), "fast")
    with pytest.raises(ValueError, match="not enabled"):
        PrototypeClassifier(torch.eye(3)).reassign()
