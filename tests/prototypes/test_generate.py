import sys

import pytest
import torch

from hpn import prototypes as protos
from hpn.prototypes import optimize


def _worst(p):
    return protos.report(p).worst_cosine


@pytest.mark.parametrize("method", ["random", "paper_optimizer", "optimized", "code", "auto"])
def test_unit_rows_float32_and_deterministic_per_seed(method):
    opts = {"steps": 50} if method in ("paper_optimizer", "optimized") else {}
    a = protos.generate(40, 8, method=method, seed=3, **opts)
    b = protos.generate(40, 8, method=method, seed=3, **opts)
    c = protos.generate(40, 8, method=method, seed=4, **opts)
    assert a.shape == (40, 8) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(40), atol=1e-6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_auto_picks_the_exact_closed_forms():
    assert protos.build(100, 100).method == "simplex"
    assert _worst(protos.generate(100, 100)) == pytest.approx(-1 / 99, abs=1e-6)
    assert protos.build(150, 100).method == "orthoplex"
    assert _worst(protos.generate(150, 100)) == pytest.approx(0.0, abs=1e-6)


def test_optimised_methods_beat_random_and_the_better_optimiser_beats_the_paper():
    k, d = 60, 10
    rand = _worst(protos.generate(k, d, method="random"))
    paper = _worst(protos.generate(k, d, method="paper_optimizer", steps=300))
    ours = _worst(protos.generate(k, d, method="optimized", steps=600))
    assert ours < paper < rand
    assert ours - protos.best_possible_cosine(k, d)[0] < 0.15


def test_paper_recipe_loss_is_the_mean_of_row_maxima():
    p = torch.nn.functional.normalize(
        torch.randn(7, 3, generator=torch.Generator().manual_seed(0)), dim=1
    )
    gram = p @ p.T
    ref = torch.stack([torch.cat([gram[i, :i], gram[i, i + 1 :]]).max() for i in range(7)]).mean()
    assert float(optimize.separation_loss(p)) == pytest.approx(float(ref), abs=1e-6)
    # the smooth maximum approaches the hard one from above as the temperature rises
    soft = [float(optimize.separation_loss(p, t)) for t in (10.0, 100.0, 1e4)]
    assert soft[0] > soft[1] > soft[2] >= float(ref) - 1e-6
    assert soft[2] == pytest.approx(float(ref), abs=1e-3)


def test_reset_momentum_reproduces_plain_sgd():
    # Rebuilding SGD every step (the reference code) equals momentum 0.
    a, _ = optimize.paper_prototypes(12, 4, epochs=20, reset_momentum=True)
    b, _ = optimize.paper_prototypes(12, 4, epochs=20, momentum=0.0)
    c, _ = optimize.paper_prototypes(12, 4, epochs=20)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-3)


def test_neighbour_list_mode_matches_dense_quality_and_never_returns_worse_than_init():
    k, d = 400, 16
    init = protos.generate(k, d, method="random", seed=1)
    dense, info_d = optimize.optimized_prototypes(k, d, steps=300, init=init)
    sparse, info_s = optimize.optimized_prototypes(
        k, d, steps=300, init=init, neighbours=24, rebuild_every=50
    )
    assert info_d["mode"] == "dense" and info_s["mode"] == "neighbours"
    assert info_s["worst_cosine"] == pytest.approx(_worst(sparse), abs=1e-5)
    assert _worst(sparse) < _worst(init)
    assert abs(_worst(sparse) - _worst(dense)) < 0.05
    # a converged start is kept: the best iterate is returned
    again, _ = optimize.optimized_prototypes(k, d, steps=20, lr=0.5, init=dense)
    assert _worst(again) <= _worst(dense) + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1, "dims": 3}, "num_classes must be >= 2"),
        ({"num_classes": 3, "dims": 0}, "dims must be >= 1"),
        ({"num_classes": 3, "dims": 1}, "at most 2 prototypes"),
        ({"num_classes": 5, "dims": 3, "method": "magic"}, "unknown method 'magic'"),
        ({"num_classes": 5, "dims": 3, "method": "simplex"}, "at most 4 classes"),
        ({"num_classes": 7, "dims": 3, "method": "orthoplex"}, "at most 6 classes"),
        ({"num_classes": 30_000, "dims": 3, "method": "paper_optimizer"}, "at most 20000"),
        ({"num_classes": 2.5, "dims": 3}, "integer"),
        ({"num_classes": 3, "dims": 2, "class_names": ["a"]}, "1 class names"),
        ({"num_classes": 3, "dims": 2, "method": "semantic"}, "class_names or embeddings"),
    ],
)
def test_bad_requests_name_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        protos.build(**kwargs)


def test_hand_written_dense_gradient_equals_autograd():
    gen = torch.Generator().manual_seed(5)
    p = torch.nn.functional.normalize(torch.randn(30, 6, generator=gen, dtype=torch.float64), dim=1)
    worst, grad = optimize._dense_smooth_max_grad(p.clone(), 50.0)
    q = p.clone().requires_grad_(True)
    optimize.separation_loss(q, 50.0).backward()
    assert torch.allclose(grad, q.grad, atol=1e-10)
    assert worst == pytest.approx(protos.report(p).worst_cosine, abs=1e-12)


def test_sparse_neighbour_gradient_equals_autograd_over_the_lists():
    gen = torch.Generator().manual_seed(6)
    p = torch.nn.functional.normalize(torch.randn(50, 5, generator=gen, dtype=torch.float64), dim=1)
    _, nbr = protos.nearest_neighbours(p, k=7)
    graph = optimize._NeighbourGraph(nbr)
    worst, grad = optimize._neighbour_smooth_max_grad(p.clone(), graph, 40.0)
    q = p.clone().requires_grad_(True)
    qn = torch.nn.functional.normalize(q, dim=1)
    cos = torch.einsum("kd,kmd->km", qn, qn[nbr])
    (torch.logsumexp(40.0 * cos, dim=1) / 40.0).mean().backward()
    assert torch.allclose(grad, q.grad, atol=1e-10)
    assert worst == pytest.approx(float(cos.detach().max()), abs=1e-12)


def test_the_old_method_name_hpn_is_the_paper_optimizer_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'hpn' is deprecated; use 'paper_optimizer'"):
        old = protos.build(5, 3, method="hpn", steps=20)
    assert old.method == "paper_optimizer"
    assert torch.equal(old.prototypes, protos.generate(5, 3, "paper_optimizer", steps=20))


def test_optimiser_progress_bar_only_inside_progress_bars_and_on_a_terminal(monkeypatch, capsys):
    import io

    from hpn.prototypes import optimize

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    optimize.optimized_prototypes(20, 3, steps=5)
    assert screen.getvalue() == ""  # library calls print nothing
    with optimize.progress_bars():
        _, info = optimize.optimized_prototypes(20, 3, steps=5)
    assert "optimiser, K = 20, d = 3:   0%|" in screen.getvalue()
    assert info["steps"] == 5
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no bar
    with optimize.progress_bars():
        optimize.optimized_prototypes(20, 3, steps=5)
    assert sys.stderr.getvalue() == ""
