"""The top-level names: ``import hpn`` gives what a user reaches for first."""

import subprocess
import sys

import torch

import hpn


def test_main_names_are_at_the_top_level_and_work_together():
    for name in (
        "PrototypeClassifier",
        "generate",
        "report",
        "prototype_loss",
        "replace_classifier",
    ):
        assert name in dir(hpn)
    P = hpn.generate(10, 4)
    assert hpn.report(P).worst_cosine < 0.17
    head = hpn.PrototypeClassifier(P, in_features=6)
    z = torch.randn(5, 6)
    assert head(z).shape == (5, 10)


def test_scikit_learn_estimators_are_imported_on_first_use_only():
    code = "import sys, hpn; assert 'sklearn' not in sys.modules; hpn.HPNClassifier; assert 'sklearn' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
