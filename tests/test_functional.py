import math

import numpy as np
import pytest
import torch

from hpn import functional as F
from hpn import prototypes as protos


def _paper_gradient(z, p):
    """The paper's analytic dL/dz for one example, L = (1 - cos)^2 (seed 000)."""
    zn, pn = z.norm(), p.norm()
    cos = (z @ p) / (zn * pn)
    return 2 * (1 - cos) * (cos * z / zn**2 - p / (zn * pn))


def test_loss_gradient_equals_the_papers_analytic_formula():
    gen = torch.Generator().manual_seed(0)
    prototypes = protos.generate(7, 5, method="random", seed=1).double()
    z = torch.randn(9, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (9,), generator=gen)
    F.prototype_loss(z, prototypes, labels).backward()
    expected = torch.stack(
        [_paper_gradient(z[i].detach(), prototypes[labels[i]]) for i in range(9)]
    )
    assert torch.allclose(z.grad, expected, atol=1e-12)


def test_gradcheck_float64_classification_and_regression():
    gen = torch.Generator().manual_seed(1)
    prototypes = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 1, 2])
    z = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: F.prototype_loss(x, prototypes, labels), (z,))
    y = torch.tensor([1.0, 4.0, 2.5, 3.0, 0.0], dtype=torch.float64)
    pole = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: F.regression_loss(x, pole, y, 0.0, 4.0), (z,))


def test_loss_reference_values_and_reductions():
    p = torch.eye(2)
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-3.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    c = 2**-0.5
    expected = torch.tensor([0.0, (1 - c) ** 2, 4.0])
    assert torch.allclose(F.prototype_loss(z, p, labels, reduction="none"), expected)
    assert float(F.prototype_loss(z, p, labels)) == pytest.approx(float(expected.sum()))
    assert float(F.prototype_loss(z, p, labels, reduction="mean")) == pytest.approx(
        float(expected.mean())
    )
    # invariant to the scale of outputs and prototypes
    assert torch.allclose(F.prototype_loss(7 * z, 3 * p, labels, reduction="none"), expected)


def test_zero_output_is_finite_and_loss_is_one():
    z = torch.zeros(2, 4, requires_grad=True)
    loss = F.prototype_loss(z, torch.eye(4), torch.tensor([0, 3]), reduction="none")
    assert torch.equal(loss.detach(), torch.ones(2))
    loss.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_loss_is_float32_under_bfloat16_inputs():
    z = torch.randn(3, 4).bfloat16()
    assert F.prototype_loss(z, torch.eye(4), torch.tensor([0, 1, 2])).dtype == torch.float32


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_nearest_prototype_chunked_equals_dense_argmax(chunk):
    gen = torch.Generator().manual_seed(2)
    p = torch.randn(50, 6, generator=gen)
    z = torch.randn(20, 6, generator=gen)
    idx, cos = F.nearest_prototype(z, p, chunk_size=chunk)
    dense = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(p, dim=1).T
    assert torch.equal(idx, dense.argmax(dim=1))
    assert torch.allclose(cos, dense.max(dim=1).values, atol=1e-6)


def test_regression_round_trips_the_bounds_exactly():
    y = torch.tensor([1890.0, 1950.5, 2010.0], dtype=torch.float64)
    low, high = F.regression_bounds(y)
    assert (low, high) == (1890.0, 2010.0)
    r = F.regression_target(y, low, high)
    assert r[0] == -1.0 and r[-1] == 1.0
    assert torch.equal(F.regression_inverse(r, low, high), y)
    # an output on the upper pole predicts v_u, on the lower pole v_l
    pole = torch.tensor([0.0, 1.0])
    cos = F.cosine_to(torch.tensor([[0.0, 5.0], [0.0, -2.0]]), pole)
    assert F.regression_inverse(cos, low, high).tolist() == [2010.0, 1890.0]


def test_regression_loss_reference_value():
    z = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    pole = torch.tensor([1.0, 0.0])
    y = torch.tensor([10.0, 0.0])  # r = 1 and -1
    c = 2**-0.5
    assert float(F.regression_loss(z, pole, y, 0.0, 10.0)) == pytest.approx((1 - c) ** 2 + 1.0)


def test_multitask_loss_weights_and_validates():
    assert float(F.multitask_loss(torch.tensor(2.0), torch.tensor(4.0), 0.25)) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="task_weight must be in"):
        F.multitask_loss(torch.tensor(1.0), torch.tensor(1.0), 1.5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: F.prototype_loss(torch.ones(2, 3), torch.eye(3), torch.tensor([0, 3])),
            "label 3 outside the 3 classes",
        ),
        (
            lambda: F.prototype_loss(torch.ones(2, 3), torch.eye(3), torch.tensor([0])),
            "labels must have shape",
        ),
        (
            lambda: F.prototype_loss(torch.ones(1, 3), torch.eye(3), torch.tensor([0]), "avg"),
            "reduction",
        ),
        (lambda: F.regression_bounds(torch.tensor([3.0, 3.0])), "all regression targets equal 3.0"),
        (lambda: F.regression_target(torch.ones(1), 2.0, 1.0), "lower < upper"),
        (lambda: F.nearest_prototype(torch.ones(1, 2), torch.eye(2), chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input_names_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _softmax_reference(z, P, labels, s, m):
    zn = z / z.norm(dim=1, keepdim=True)
    pn = P / P.norm(dim=1, keepdim=True)
    logits = s * (zn @ pn.T)
    logits[torch.arange(len(z)), labels] -= s * m
    log_q = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -log_q[torch.arange(len(z)), labels]


@pytest.mark.parametrize(("scale", "margin"), [(1.0, 0.0), (8.0, 0.0), (16.0, 0.35)])
def test_prototype_softmax_loss_matches_cross_entropy_written_out(scale, margin):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64)
    P = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (12,), generator=g)
    got = F.prototype_softmax_loss(z, P, y, scale, margin, reduction="none")
    ref = _softmax_reference(z, P, y, scale, margin)
    assert torch.allclose(got, ref, atol=1e-12)
    assert torch.allclose(F.prototype_softmax_loss(z, P, y, scale, margin), ref.mean())
    assert torch.allclose(F.prototype_softmax_loss(z, P, y, scale, margin, "sum"), ref.sum())


def test_prototype_softmax_loss_gradcheck():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    P = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    assert torch.autograd.gradcheck(lambda v: F.prototype_softmax_loss(v, P, y, 10.0, 0.2), (z,))


def test_softmax_loss_pushes_away_from_other_prototypes_where_the_paper_loss_is_flat():
    P = F.unit(torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]))
    z = P[:1].clone().requires_grad_(True)  # exactly on its target prototype
    y = torch.tensor([0])
    paper_grad = torch.autograd.grad(F.prototype_loss(z, P, y), z)[0]
    assert torch.allclose(paper_grad, torch.zeros(1, 3), atol=1e-7)  # nothing to gain
    grad = torch.autograd.grad(F.prototype_softmax_loss(z, P, y, 10.0), z)[0]
    stepped = z.detach() - 0.05 * grad
    before = (F.unit(z.detach()) @ P[1:].T).max()
    after = (F.unit(stepped) @ P[1:].T).max()
    assert after < before - 1e-3  # moved away from the nearest wrong prototype


def test_default_scale_is_adacos_fixed_scale():
    assert F.default_scale(1001) == pytest.approx(2**0.5 * math.log(1000))
    assert F.default_scale(2) == 1.0  # floor: ln 1 = 0
    with pytest.raises(ValueError, match="got 1"):
        F.default_scale(1)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"scale": -1.0}, "-1.0"), ({"margin": -0.1}, "-0.1")]
)
def test_prototype_softmax_loss_rejects_bad_scale_and_margin(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.prototype_softmax_loss(torch.ones(2, 3), torch.eye(3), torch.tensor([0, 1]), **kwargs)


# Near z = 0: for |z| < eps the gradient is -2 (1 - cos) p/|p| (norm <= 4, exactly 2 at 0);
# above eps it is the paper's, of norm <= (3 sqrt(3) / 2) / |z|. So it never exceeds
# (3 sqrt(3) / 2) / eps of the loss dtype.
GRAD_BOUND_FACTOR = 1.5 * 3**0.5


def _grad(z, p, labels):
    z = z.clone().requires_grad_(True)
    F.prototype_loss(z, p, labels).backward()
    return z.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_at_and_near_zero_output_is_bounded(dtype):
    p = protos.generate(3, 4, method="random", seed=0).to(dtype)
    labels = torch.tensor([0, 2, 1])
    grad = _grad(torch.zeros(3, 4, dtype=dtype), p, labels)
    assert torch.allclose(grad, -2 * p[labels], atol=1e-6)  # -2 (1 - 0) p, norm 2
    eps = F.default_eps(dtype)
    z = 1e-12 * F.unit(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    z = z.to(dtype)
    cos = (z @ p.T).gather(1, labels[:, None]) / eps  # the cosine below the floor
    grad = _grad(z, p, labels)
    assert torch.isfinite(grad).all() and grad.norm(dim=1).max() <= 4.0
    assert torch.allclose(grad, -2 * (1 - cos) * p[labels], atol=1e-6)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 7.6e3), (torch.float64, 1.8e8)])
def test_gradient_norm_never_exceeds_the_stated_bound(dtype, bound):
    g = torch.Generator().manual_seed(5)
    p = F.unit(torch.randn(1, 6, generator=g, dtype=dtype))
    norms = torch.logspace(-30, 3, 400, dtype=dtype)[:, None]
    z = norms * F.unit(torch.randn(400, 6, generator=g, dtype=dtype))
    grad = _grad(z, p, torch.zeros(400, dtype=torch.long))
    stated = GRAD_BOUND_FACTOR / F.default_eps(dtype)
    assert stated < bound
    assert torch.isfinite(grad).all() and grad.norm(dim=1).max() <= stated * (1 + 1e-6)


def test_gradient_just_above_the_floor_is_still_the_papers():
    p = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    z = F.unit(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64))
    z = 10 * F.default_eps(torch.float64) * z  # |z| = 10 eps
    grad = _grad(z, p[None], torch.tensor([0]))
    assert torch.allclose(grad[0], _paper_gradient(z[0], p), rtol=1e-9)


def test_one_sgd_step_from_a_dead_output_moves_the_bias_a_bounded_amount():
    from hpn.heads import PrototypeClassifier

    p = protos.generate(4, 3, method="simplex")
    head = PrototypeClassifier(p, in_features=5)
    torch.nn.init.zeros_(head.proj.weight)
    torch.nn.init.zeros_(head.proj.bias)  # every z is exactly 0
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    labels = torch.tensor([0, 0, 0, 1, 2, 0, 0, 3])
    head.loss(torch.randn(8, 5), labels, "mean").backward()
    opt.step()
    # the step is minus the mean of -2 p_y: norm <= 2 (it was 2e8 with a 1e-8 floor)
    assert torch.allclose(head.proj.bias.detach(), 2 * p[labels].mean(0), atol=1e-6)
    assert head.proj.bias.norm() <= 2.0


@pytest.mark.parametrize(
    ("dtype", "tol"),
    [(torch.float16, 2e-3), (torch.bfloat16, 1e-2), (torch.float32, 1e-6), (torch.float64, 1e-12)],
)
def test_unit_keeps_zero_rows_zero_and_makes_others_unit_in_every_dtype(dtype, tol):
    x = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 12.0], [-0.5, 0.1, 0.2], [0.0, 0.0, 0.0]])
    x = x.to(dtype).requires_grad_(True)
    u = F.unit(x)
    assert u.dtype == dtype
    assert torch.equal(u[[0, 3]], torch.zeros(2, 3, dtype=dtype))
    assert torch.allclose(u[1:3].double().norm(dim=1), torch.ones(2, dtype=torch.float64), atol=tol)
    u.sum().backward()
    assert torch.isfinite(x.grad).all()
    eps = F.default_eps(dtype)
    assert 0 < torch.tensor(eps, dtype=dtype) and torch.isfinite(torch.tensor(1 / eps, dtype=dtype))


def test_labels_as_a_list_or_array_give_the_tensor_result():
    g = torch.Generator().manual_seed(6)
    z, p = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    labels = [4, 0, 2, 2]
    want = F.prototype_loss(z, p, torch.tensor(labels), "none")
    for given in (
        labels,
        np.array(labels, dtype=np.int32),
        torch.tensor(labels, dtype=torch.uint8),
    ):
        assert torch.equal(F.prototype_loss(z, p, given, "none"), want)
        assert torch.equal(
            F.prototype_softmax_loss(z, p, given, 4.0, 0.1, "none"),
            F.prototype_softmax_loss(z, p, torch.tensor(labels), 4.0, 0.1, "none"),
        )
    y = [1.0, 2.0, 0.5, 3.0]
    assert torch.equal(
        F.regression_loss(z, p[0], y, 0.0, 4.0),
        F.regression_loss(z, p[0], torch.tensor(y), 0.0, 4.0),
    )


def test_nearest_prototype_of_finite_rows_is_unchanged_by_the_finite_check():
    p = torch.eye(3)
    z = torch.tensor([[0.0, 0.0, 0.0], [1e15, -1e15, 2e15], [0.2, 0.9, 0.1]])
    idx, cos = F.nearest_prototype(z, p)
    assert idx.tolist() == [0, 2, 1] and cos[0] == 0.0


# --------------------------------------------------------------------------- neighbour softmax


def _neighbour_problem(k=7, d=5, n=12, seed=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    P = F.unit(torch.randn(k, d, generator=g, dtype=dtype))
    z = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, k, (n,), generator=g)
    return z, P, y


@pytest.mark.parametrize(("scale", "margin"), [(None, 0.0), (4.0, 0.0), (16.0, 0.35)])
def test_neighbour_softmax_with_every_other_class_is_the_full_softmax(scale, margin):
    z, P, y = _neighbour_problem()
    table = protos.nearest_neighbours(P, k=len(P) - 1)[1]  # every other class, nearest first
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    got = F.neighbour_softmax_loss(za, P, y, table, scale, margin, reduction="none")
    full = F.prototype_softmax_loss(zb, P, y, scale, margin, reduction="none")
    torch.testing.assert_close(got, full, rtol=0, atol=1e-14)
    got.sum().backward()
    full.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad, rtol=0, atol=1e-14)
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            F.neighbour_softmax_loss(z, P, y, table, scale, margin, reduction),
            F.prototype_softmax_loss(z, P, y, scale, margin, reduction),
        )


def test_neighbour_softmax_is_the_cross_entropy_over_the_listed_classes():
    z, P, y = _neighbour_problem()
    table = protos.nearest_neighbours(P, k=3)[1]
    got = F.neighbour_softmax_loss(z, P, y, table, 8.0, 0.2, reduction="none")
    cos = F.unit(z) @ P.T
    for i in range(len(z)):
        logits = 8.0 * torch.cat([cos[i, y[i], None] - 0.2, cos[i, table[y[i]]]])
        assert torch.isclose(got[i], torch.logsumexp(logits, 0) - logits[0], atol=1e-12)


def test_neighbour_softmax_gradcheck():
    z, P, y = _neighbour_problem(n=6)
    z.requires_grad_(True)
    table = protos.nearest_neighbours(P, k=3)[1]
    negatives = torch.tensor([0, 5, 2, 5])  # some clash with targets or neighbours: masked
    for extra in (None, negatives):
        assert torch.autograd.gradcheck(
            lambda v, extra=extra: F.neighbour_softmax_loss(
                v, P, y, table, 10.0, 0.2, "none", negatives=extra
            ),
            (z,),
        )


def test_random_negatives_that_clash_are_masked_and_the_rest_complete_the_softmax():
    z, P, y = _neighbour_problem()
    table = protos.nearest_neighbours(P, k=2)[1]
    alone = F.neighbour_softmax_loss(z, P, y, table, 6.0, 0.1, "none")
    # each row's own target and neighbours as negatives: all masked, nothing changes
    for c in range(len(P)):
        rows = y == c
        own = torch.cat([torch.tensor([c]), table[c]])
        masked = F.neighbour_softmax_loss(z[rows], P, y[rows], table, 6.0, 0.1, "none", own)
        torch.testing.assert_close(masked, alone[rows], rtol=0, atol=1e-14)
    # every class as a negative: the listed ones are masked, the others complete the softmax
    every = torch.arange(len(P))
    got = F.neighbour_softmax_loss(z, P, y, table, 6.0, 0.1, "none", every)
    torch.testing.assert_close(got, F.prototype_softmax_loss(z, P, y, 6.0, 0.1, "none"))


def test_repeated_negatives_count_as_often_as_drawn():
    """The loss written out with one term per draw (K / r each, clashing draws left out)."""
    z, P, y = _neighbour_problem(k=9)
    table = protos.nearest_neighbours(P, k=2)[1]
    s, k = 5.0, len(P)
    draws = torch.tensor([4, 4, 4, 0, 7, 0])
    got = F.neighbour_softmax_loss(z, P, y, table, s, 0.0, "none", draws)
    cos = F.unit(z) @ P.T  # (N, K)
    for i in range(len(z)):
        listed = [int(y[i]), *table[y[i]].tolist()]
        terms = [torch.exp(s * cos[i, j]) for j in listed]
        terms += [k / len(draws) * torch.exp(s * cos[i, j]) for j in draws if j not in listed]
        want = -s * cos[i, y[i]] + torch.log(torch.stack(terms).sum())
        torch.testing.assert_close(got[i], want)
    # a class drawn twice out of two is the class drawn once out of one
    twice = F.neighbour_softmax_loss(z, P, y, table, s, 0.0, "none", torch.tensor([4, 4]))
    once = F.neighbour_softmax_loss(z, P, y, table, s, 0.0, "none", torch.tensor([4]))
    torch.testing.assert_close(twice, once)


def test_no_negatives_and_an_empty_draw_are_the_same():
    z, P, y = _neighbour_problem()
    table = protos.nearest_neighbours(P, k=2)[1]
    alone = F.neighbour_softmax_loss(z, P, y, table, 6.0)
    for empty in (torch.zeros(0, dtype=torch.long), []):
        assert torch.equal(F.neighbour_softmax_loss(z, P, y, table, 6.0, negatives=empty), alone)


def test_one_uniform_negative_estimates_the_rest_of_the_softmax_without_bias():
    """Averaged over the K possible single draws, e^loss is the full softmax's e^loss: each
    draw stands for K classes, and draws of listed classes are masked."""
    z, P, y = _neighbour_problem(k=9)
    table = protos.nearest_neighbours(P, k=3)[1]
    draws = [
        F.neighbour_softmax_loss(z, P, y, table, 5.0, 0.2, "none", torch.tensor([j]))
        for j in range(len(P))
    ]
    mean = torch.stack(draws).exp().mean(0)
    full = F.prototype_softmax_loss(z, P, y, 5.0, 0.2, "none").exp()
    torch.testing.assert_close(mean, full, rtol=1e-12, atol=0)


class _LargestOutput(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest number of elements any op (forward or backward) produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_neighbour_softmax_cost_does_not_grow_with_k():
    k, d, n, m, r = 200_000, 32, 8, 16, 64
    g = torch.Generator().manual_seed(0)
    P = F.unit(torch.randn(k, d, generator=g))
    table = (torch.arange(k)[:, None] + 1 + torch.arange(m)) % k  # any table without c itself
    z = torch.randn(n, d, generator=g, requires_grad=True)
    y = torch.randint(0, k, (n,), generator=g)
    negatives = torch.randint(0, k, (r,), generator=g)
    with _LargestOutput() as mode:
        loss = F.neighbour_softmax_loss(z, P, y, table, 20.0, 0.1, negatives=negatives)
        loss.backward()
    # the gathered prototypes (N, m + 1, d) at most: the clash mask is (N, r), not
    # (N, m + 1, r); never N x K or K x d
    assert mode.largest <= max(n * (m + 1) * d, n * r) < n * (m + 1) * r < k
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("table", "negatives", "match"),
    [
        (torch.zeros(7, 0, dtype=torch.long), None, r"\(K, m\) table with K = 7 and m >= 1"),
        (torch.zeros(6, 2, dtype=torch.long), None, r"K = 7 .* got shape \(6, 2\)"),
        (torch.zeros(7, 2), None, "integer class indices, got torch.float32"),
        (torch.full((7, 2), 9), None, "neighbours holds 9, outside the 7 classes"),
        (torch.arange(7)[:, None].repeat(1, 2), None, r"row (\d) of neighbours lists class \1"),
        (None, torch.tensor([0.5]), r"an \(r,\) vector of class indices, got shape \(1,\)"),
        (None, torch.tensor([[1]]), r"an \(r,\) vector of class indices, got shape \(1, 1\)"),
        (None, torch.tensor([3, 7]), r"negatives must lie in \[0, 7\), got 7"),
    ],
)
def test_neighbour_softmax_refuses_bad_tables_and_negatives(table, negatives, match):
    z, P, y = _neighbour_problem()
    table = protos.nearest_neighbours(P, k=2)[1] if table is None else table
    with pytest.raises(ValueError, match=match):
        F.neighbour_softmax_loss(z, P, y, table, negatives=negatives)
