"""The learned-centre heads (hpn.learned) against references written another way: plain
torch cross-entropy on logits built by hand, a candidate set built with Python sets, and
invariants (the sampled softmax never reads an unsampled centre)."""

import pytest
import torch
from torch.nn import functional as nnf

from hpn import functional as F
from hpn import losses as L
from hpn.learned import CosineClassifier, SampledSoftmaxClassifier

K, WIDTH, D = 40, 10, 6


def _logits(z, centres, labels, scale, margin):
    """s * cos(z, w_k), the target's cosine lowered by m, written out."""
    zn = z / z.norm(dim=1, keepdim=True)
    wn = centres / centres.norm(dim=1, keepdim=True)
    cos = zn @ wn.T
    cos[torch.arange(len(z)), labels] -= margin
    return scale * cos


@pytest.mark.parametrize(("scale", "margin", "dims"), [(16.0, 0.0, None), (30.0, 0.35, D)])
def test_cosine_classifier_is_cross_entropy_on_scaled_cosines(scale, margin, dims):
    torch.manual_seed(0)
    head = CosineClassifier(WIDTH, K, dims, scale=scale, margin=margin)
    x, y = torch.randn(17, WIDTH), torch.randint(0, K, (17,))
    z = head.proj(x)
    want = nnf.cross_entropy(_logits(z, head.centres, y, scale, margin), y, reduction="none")
    got = head.loss(x, {"label": y}, "none")
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(head.loss(x, y, "sum"), want.sum())
    assert head.centres.shape == (K, dims or WIDTH) and head.centres.requires_grad
    # forward: cosines; predict: their argmax, in chunks of centres
    cos = head(x)
    torch.testing.assert_close(cos, _logits(z, head.centres, y, 1.0, 0.0) + 0.0)
    assert torch.equal(head.predict(x, chunk_size=7), cos.argmax(1))


def test_cosine_classifier_defaults_to_the_default_scale_and_learns_its_centres():
    head = CosineClassifier(WIDTH, K)
    assert head.loss_kind == "cosine_softmax" and head.scale == pytest.approx(F.default_scale(K))
    head.loss(torch.randn(5, WIDTH), torch.randint(0, K, (5,))).backward()
    assert head.centres.grad is not None and head.centres.grad.abs().sum() > 0


def _sampled_reference(z, centres, labels, drawn, scale, margin):
    """The sampled softmax built by hand: the sorted set of the batch's labels and the draws,
    logits over those centres only, the target at its place in the set."""
    kept = sorted(set(labels.tolist()) | set(drawn.tolist()))
    place = {c: i for i, c in enumerate(kept)}
    local = torch.tensor([place[c] for c in labels.tolist()])
    sub = centres[torch.tensor(kept)]
    return nnf.cross_entropy(_logits(z, sub, local, scale, margin), local, reduction="none")


def test_sampled_softmax_is_cross_entropy_over_the_batch_classes_and_the_draws():
    torch.manual_seed(0)
    loss = L.SampledSoftmaxLoss(negatives=12, scale=10.0, margin=0.2)
    centres = torch.randn(K, D)
    z, y = torch.randn(9, D), torch.randint(0, K, (9,))
    torch.manual_seed(5)
    got = loss(L.PrototypeOutput(z, centres), y, "none")
    torch.manual_seed(5)
    drawn = torch.randint(K, (12,))  # the draws the loss made, from the same generator state
    torch.testing.assert_close(got, _sampled_reference(z, centres, y, drawn, 10.0, 0.2))


def test_sampled_softmax_never_reads_an_unsampled_centre():
    """Its cost does not grow with K: centres outside the sample are not touched, forward or
    backward (NaN rows there would poison any op over all K)."""
    torch.manual_seed(1)
    y = torch.tensor([3, 7, 7, 100])
    centres = torch.full((10_000, D), float("nan"))
    centres[y] = torch.randn(4, D)
    centres.requires_grad_()
    head_loss = L.SampledSoftmaxLoss(negatives=0, scale=8.0)
    value = head_loss(L.PrototypeOutput(torch.randn(4, D), centres), y)
    value.backward()
    assert torch.isfinite(value)
    touched = (centres.grad != 0).any(1).nonzero().flatten().tolist()
    assert touched == [3, 7, 100] and torch.isfinite(centres.grad).all()


def test_sampled_softmax_draws_nothing_in_eval_mode():
    loss = L.SampledSoftmaxLoss(negatives=50).eval()
    centres, z, y = torch.randn(K, D), torch.randn(6, D), torch.tensor([0, 1, 1, 2, 5, 5])
    state = torch.get_rng_state()
    got = loss(L.PrototypeOutput(z, centres), y, "none")
    assert torch.equal(torch.get_rng_state(), state)
    scale = F.default_scale(K)  # the default scale is K's, not the sample's
    want = _sampled_reference(z, centres, y, torch.tensor([], dtype=torch.long), scale, 0.0)
    torch.testing.assert_close(got, want)


def test_sampled_classifier_trains_and_predicts_over_all_centres():
    torch.manual_seed(0)
    head = SampledSoftmaxClassifier(WIDTH, K, dims=D, negatives=8)
    assert head.loss_kind == "sampled_softmax" and head.criterion.negatives == 8
    x = torch.randn(20, WIDTH)
    assert torch.equal(head.predict(x, chunk_size=3), head(x).argmax(1))
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    y = torch.arange(20) % 5
    first = None
    for _ in range(30):
        loss = head.loss(x, y)
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first / 2


def test_sampled_softmax_passes_gradcheck_in_float64():
    loss = L.SampledSoftmaxLoss(negatives=4, scale=3.0, margin=0.1).eval()
    z = torch.randn(5, D, dtype=torch.float64, requires_grad=True)
    centres = torch.randn(K, D, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 2, 2, 9, 30])
    assert torch.autograd.gradcheck(lambda z, c: loss(L.PrototypeOutput(z, c), y), (z, centres))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CosineClassifier(WIDTH, 1), "num_classes must be an integer >= 2"),
        (lambda: CosineClassifier(WIDTH, K, neighbours=3), "takes no neighbours"),
        (lambda: CosineClassifier(WIDTH, K, output_norm="batchnorm"), "needs a projection"),
        (lambda: SampledSoftmaxClassifier(WIDTH, K, negatives=-1), "negatives must be"),
        (lambda: CosineClassifier(WIDTH, K)(torch.randn(2, 3)), r"features must be \(N, 10\)"),
    ],
)
def test_bad_settings_are_one_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
