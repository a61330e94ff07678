import pytest
import torch

from hpn.cli import main
from hpn.threads import THREADS_ENV, choose_threads, use_threads


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cpus", "load", "expected"),
    [(2, 0.0, 2), (2, 0.6, 1), (2, 1.4, 1), (2, 5.0, 1), (16, 3.2, 13), (4, 0.4, 4)],
)
def test_auto_takes_the_cores_the_load_average_leaves_free(cpus, load, expected):
    assert choose_threads("auto", cpus=cpus, load=load) == expected


def test_order_of_sources_argument_then_hpn_threads_then_omp_then_auto(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(5) == 5  # the argument wins
    assert choose_threads(None, cpus=8, load=0) == 3  # then HPN_THREADS
    monkeypatch.setenv(THREADS_ENV, "auto")
    assert choose_threads(None, cpus=8, load=2) == 6
    monkeypatch.delenv(THREADS_ENV)
    torch.set_num_threads(2)
    assert choose_threads(None, cpus=8, load=0) == 2  # OMP_NUM_THREADS: torch's own setting
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert choose_threads(None, cpus=8, load=0) == 8


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", " ", True])
def test_bad_thread_counts_name_the_value(bad, monkeypatch):
    with pytest.raises(ValueError, match="threads must be a positive int or 'auto'"):
        choose_threads(bad)
    if isinstance(bad, str) and bad.strip():
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ValueError, match=f"HPN_THREADS must be .* got '{bad}'"):
            choose_threads()


def test_use_threads_sets_torch():
    assert use_threads(1) == 1 == torch.get_num_threads()


def test_cli_threads_option_before_or_after_the_command(capsys, monkeypatch):
    torch.set_num_threads(2)
    assert main(["--threads", "1", "prototypes", "--report", "missing.npy"]) == 2
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert main(["prototypes", "--report", "missing.npy", "--threads", "1"]) == 2
    assert torch.get_num_threads() == 1
    assert main(["prototypes", "-k", "4", "-d", "3", "--threads", "none"]) == 2
    assert "threads must be a positive int or 'auto', got 'none'" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "hpn 0.1.0"
