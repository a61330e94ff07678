"""Two gloo processes under torchrun take the same steps as one process on the same global
batch (DistributedDataParallel, sharded global batches, scaled loss)."""

import os
import subprocess
import sys

import pytest
import torch

from hpn.training import distributed as dist_


def _run(args, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *args, "train", "--config", str(out.parent / "c.yaml"), f"out_dir={out}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_two_gloo_processes_match_one_process_on_the_same_global_batch(
    tmp_path, reduction, run_config, write_config
):
    config = run_config(
        seed=5, classes=5, per_class=50, dims=12, hidden=(32,),
        model={"batch_norm": False, "dropout": 0.0},
        head={"kind": "prototype", "dims": 4, "reduction": reduction},
        optim={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 3, "batch_size": 24},
    )  # fmt: skip
    write_config(tmp_path / "c.yaml", config)
    _run(["-m", "hpn"], tmp_path / "single")
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hpn"]
    ddp = _run(torchrun, tmp_path / "ddp")
    assert ddp.stdout.count("test ") == 1  # only rank 0 reports
    one = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key, value in one["model"].items():
        assert torch.allclose(value, two["model"][key], rtol=1e-4, atol=1e-5), key
    for a, b in zip(one["rows"], two["rows"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["val_accuracy"] == b["val_accuracy"]


def test_shards_cover_each_global_batch_exactly_once():
    perm = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    single, sizes = dist_.shard_batches(perm, 8, dist_.Context(0, 1))
    assert sizes == [8, 8, 7] and [len(b) for b in single] == sizes
    parts = [dist_.shard_batches(perm, 8, dist_.Context(r, 3))[0] for r in range(3)]
    for b, batch in enumerate(single):
        joined = [i for rank in range(3) for i in parts[rank][b]]
        assert joined == batch  # rank order restores the global batch
    assert [len(parts[r][2]) for r in range(3)] == [3, 2, 2]


def test_a_last_batch_of_one_joins_the_batch_before_it():
    perm = torch.randperm(17, generator=torch.Generator().manual_seed(0))
    batches, sizes = dist_.shard_batches(perm, 8, dist_.Context(0, 1))
    assert (
        sizes == [8, 9] and torch.cat([torch.tensor(b) for b in batches]).tolist() == perm.tolist()
    )
    assert dist_.shard_batches(perm[:1], 8, dist_.Context(0, 1))[1] == [1]  # nothing to join
