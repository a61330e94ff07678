import pytest
import torch

from hpn.evaluation.transfer import class_separation, linear_probe
from hpn.training.finished import transfer_report


def _brute_separation(x, y):
    u = x / x.norm(dim=1, keepdim=True)
    dist = 1 - u @ u.T
    off = ~torch.eye(len(x), dtype=torch.bool)
    same = (y[:, None] == y[None, :]) & off
    return float(1 - dist[same].mean() / dist[off].mean())


def test_class_separation_matches_all_pairs_computed_directly():
    g = torch.Generator().manual_seed(0)
    x = (
        torch.randn(60, 5, generator=g, dtype=torch.float64)
        + 2 * torch.eye(5)[torch.arange(60) % 5]
    )
    y = torch.arange(60) % 5
    assert class_separation(x, y) == pytest.approx(_brute_separation(x, y), abs=1e-10)
    collapsed = torch.eye(3)[y % 3] * 4.0
    assert class_separation(collapsed, y % 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 examples"):
        class_separation(torch.ones(1, 3), torch.zeros(1, dtype=torch.long))


def test_linear_probe_matches_scikit_learns_logistic_regression_and_ignores_noise():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(1)
    y = torch.arange(400) % 4
    x = torch.randn(400, 6, generator=g) + 3 * torch.eye(6)[y]
    ours = linear_probe(x[:300], y[:300], x[300:], y[300:])
    scaler = StandardScaler().fit(x[:300].numpy())
    ref = LogisticRegression(C=1e3, max_iter=2000).fit(scaler.transform(x[:300].numpy()), y[:300])
    theirs = ref.score(scaler.transform(x[300:].numpy()), y[300:].numpy())
    assert ours == pytest.approx(theirs, abs=0.02) and ours > 0.85
    noise = torch.randn(400, 6, generator=g)
    assert linear_probe(noise[:300], y[:300], noise[300:], y[300:]) < 0.45  # chance 0.25


def test_transfer_report_of_a_finished_run(tmp_path):
    from hpn.training.run import load_config, run

    opts = "{num_classes: 5, samples_per_class: 60, dims: 12, std: 0.6}"
    cfg = load_config(
        None,
        [
            "data.name=clusters",
            f"data.options={opts}",
            "model.backbone=mlp",
            "model.options={hidden: [16]}",
            "head.dims=4",
            "optim.epochs=3",
            "optim.optimizer=adam",
            "optim.lr=0.01",
            f"out_dir={tmp_path / 'src'}",
        ],
    )
    run(cfg, log=lambda *_: None)
    rep = transfer_report(
        tmp_path / "src",
        "clusters",
        {"num_classes": 3, "samples_per_class": 60, "dims": 12, "seed": 9},
    )
    assert rep["head"] == "prototype" and rep["target"] == "clusters"
    assert -1.0 <= rep["target_separation"] <= 1.0 and 0.0 < rep["source_separation"] <= 1.0
    assert 0.0 <= rep["probe_accuracy"] <= 1.0
    with pytest.raises(ValueError, match=r"inputs are \(7,\)"):
        transfer_report(
            tmp_path / "src", "clusters", {"num_classes": 3, "samples_per_class": 10, "dims": 7}
        )
    with pytest.raises(FileNotFoundError, match="not a finished run folder"):
        transfer_report(tmp_path / "nothing", "clusters")

    from hpn.cli import main

    argv = ["transfer", str(tmp_path / "src"), "--data", "clusters"]
    argv += ["--option", "num_classes=3", "--option", "samples_per_class=60", "--option", "dims=12"]
    assert main(argv) == 0
    assert main(["transfer", str(tmp_path / "src"), "--data", "clusters", "--option", "x"]) == 2
