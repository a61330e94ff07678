"""Property-based tests (hypothesis): finite losses and gradients for any finite input,
zero vectors included, and the invariances the method relies on."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hpn import functional as F
from hpn import prototypes as protos

# finite float64 values over a wide range, with plenty of exact zeros
VALUES = st.one_of(
    st.just(0.0), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
)
SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def batches(draw):
    n = draw(st.integers(1, 6))
    k = draw(st.integers(2, 6))
    d = draw(st.integers(1, 5))
    z = draw(arrays("float64", (n, d), elements=VALUES))
    p = draw(arrays("float64", (k, d), elements=VALUES))
    y = draw(arrays("int64", (n,), elements=st.integers(0, k - 1)))
    return torch.from_numpy(z), torch.from_numpy(p), torch.from_numpy(y)


def _finite_loss_and_grad(loss_fn, z):
    z = z.clone().requires_grad_(True)
    loss = loss_fn(z)
    (grad,) = torch.autograd.grad(loss, z)
    return torch.isfinite(loss).all() and torch.isfinite(grad).all(), loss, grad


@SETTINGS
@given(batches())
def test_paper_loss_is_finite_with_finite_gradient_for_any_finite_input(batch):
    z, p, y = batch
    ok, loss, _ = _finite_loss_and_grad(lambda v: F.prototype_loss(v, p, y), z)
    assert ok
    assert 0.0 <= float(loss.detach()) <= 4.0 * len(z) + 1e-9  # (1 - cos)^2 <= 4 per example


@SETTINGS
@given(batches(), st.floats(0.5, 64.0), st.floats(0.0, 1.0))
def test_softmax_loss_is_finite_with_finite_gradient_for_any_finite_input(batch, scale, margin):
    z, p, y = batch
    ok, loss, _ = _finite_loss_and_grad(
        lambda v: F.prototype_softmax_loss(v, p, y, scale, margin), z
    )
    assert ok and float(loss.detach()) >= 0.0


@SETTINGS
@given(batches(), st.floats(-1e3, 1e3), st.floats(1e-3, 1e3))
def test_regression_and_multitask_losses_are_finite(batch, low, width):
    z, p, _ = batch
    y = torch.linspace(low, low + width, len(z), dtype=torch.float64)
    ok, _, _ = _finite_loss_and_grad(
        lambda v: F.multitask_loss(
            F.prototype_loss(v, p, torch.zeros(len(v), dtype=torch.long)),
            F.regression_loss(v, p[0], y, low, low + width),
            0.3,
        ),
        z,
    )
    assert ok


def _rotation(d, seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed orthogonal matrix


@SETTINGS
@given(batches(), st.integers(0, 2**31 - 1))
def test_losses_are_invariant_to_rotating_outputs_and_prototypes_together(batch, seed):
    z, p, y = batch
    q = _rotation(z.shape[1], seed)
    for loss in (F.prototype_loss, F.prototype_softmax_loss):
        assert torch.allclose(loss(z @ q, p @ q, y), loss(z, p, y), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(batches(), st.floats(1e-3, 1e3))
def test_paper_loss_is_invariant_to_positive_scaling_of_outputs(batch, c):
    z, p, y = batch
    # below the norm floor EPS a row counts as zero by design; keep rows above it
    z[z.norm(dim=1) * min(c, 1.0) < 1e3 * F.EPS] = 1.0
    assert torch.allclose(
        F.prototype_loss(c * z, p, y), F.prototype_loss(z, p, y), rtol=1e-9, atol=1e-9
    )


@SETTINGS
@given(batches(), st.integers(1, 7))
def test_nearest_prototype_does_not_depend_on_the_chunk_size(batch, chunk):
    z, p, _ = batch
    p = p + 1e-3 * torch.arange(p.numel(), dtype=p.dtype).view_as(p)  # break exact ties
    _, full_cos = F.nearest_prototype(z, p, chunk_size=len(p))
    idx, cos = F.nearest_prototype(z, p, chunk_size=chunk)
    assert torch.allclose(cos, full_cos, atol=1e-6)
    # a different index is only allowed for a tie in cosine
    cosines = F.unit(z.float()) @ F.unit(p.float()).T
    picked = cosines.gather(1, idx[:, None])[:, 0]
    assert torch.allclose(picked, cosines.max(dim=1).values, atol=1e-6)


@SETTINGS
@given(
    st.floats(-1e6, 1e6), st.floats(1e-3, 1e6), arrays("float64", (5,), elements=st.floats(0, 1))
)
def test_regression_target_and_inverse_round_trip(low, width, fractions):
    y = low + torch.from_numpy(fractions) * width
    r = F.regression_target(y, low, low + width)
    assert float(r.min()) >= -1 - 1e-9 and float(r.max()) <= 1 + 1e-9
    back = F.regression_inverse(r, low, low + width)
    assert torch.allclose(back, y, rtol=1e-9, atol=1e-9 * max(1.0, abs(low) + width))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 40), st.integers(2, 12), st.sampled_from(["random", "auto"]), st.integers(0, 99)
)
def test_generated_prototypes_are_unit_rows_and_report_a_worst_pair_above_the_bound(
    k, d, method, seed
):
    p = protos.generate(k, d, method=method, seed=seed)
    assert p.shape == (k, d) and torch.isfinite(p).all()
    assert torch.allclose(p.norm(dim=1), torch.ones(k), atol=1e-5)
    rep = protos.report(p)
    assert rep.worst_cosine >= rep.bound - 1e-5  # no set beats the geometric limit
    assert -1.0 - 1e-6 <= rep.worst_cosine <= 1.0 + 1e-6
    assert rep.mean_nn_cosine <= rep.worst_cosine + 1e-6


def test_zero_output_has_cosine_zero_and_the_paper_loss_one():
    p = torch.eye(3, dtype=torch.float64)
    z = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    loss = F.prototype_loss(z, p, torch.tensor([0, 2]), reduction="none")
    assert torch.equal(loss.detach(), torch.ones(2, dtype=torch.float64))
    (grad,) = torch.autograd.grad(loss.sum(), z)
    assert torch.isfinite(grad).all()
