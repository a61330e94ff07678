import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from hpn.data.cifar import RandomCropFlip, load_cifar100, load_pickle


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING), as the CIFAR release does."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_str8(self, obj):
        if isinstance(obj, str):
            obj = obj.encode("latin-1")
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # numpy 1.x (as in 2009) named the module numpy.core.multiarray
    return buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


FINE = [f"fine{i:02d}" for i in range(100)]
COARSE = [f"coarse{i:02d}" for i in range(20)]


def make_cifar(root, n_train=40, n_test=10, py2=True):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    dump = py2_pickle if py2 else (lambda obj: pickle.dumps(obj, protocol=2))
    rng = np.random.default_rng(0)
    splits = {}
    for name, n in (("train", n_train), ("test", n_test)):
        record = {
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
            b"batch_label": f"{name} batch".encode(),
            b"fine_labels": [int(i * 7 % 100) for i in range(n)],
            b"coarse_labels": [int(i * 7 % 100) // 5 for i in range(n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(dump(record))
        splits[name] = record
    meta = {
        b"fine_label_names": [n.encode() for n in FINE],
        b"coarse_label_names": [n.encode() for n in COARSE],
    }
    (folder / "meta").write_bytes(dump(meta))
    return folder, splits


@pytest.mark.parametrize("py2", [True, False])
def test_load_fine(tmp_path, py2):
    folder, records = make_cifar(tmp_path, py2=py2)
    splits = load_cifar100(folder, val_fraction=0.25, seed=0)
    assert splits.task == "classification" and splits.input_shape == (3, 32, 32)
    assert splits.num_classes == 100 and splits.class_names == FINE
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 10)
    assert splits.info["counts"] == {"train": 30, "val": 10, "test": 10}
    # test split in file order; each row is the R, G, B planes of a 32 x 32 image
    data = records["test"][b"data"]
    x, target = splits.test[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert float(x[0, 0, 0]) == pytest.approx(data[3, 0] / 255)
    assert float(x[0, 0, 1]) == pytest.approx(data[3, 1] / 255)
    assert float(x[0, 1, 0]) == pytest.approx(data[3, 32] / 255)
    assert float(x[1, 0, 0]) == pytest.approx(data[3, 1024] / 255)
    assert float(x[2, 31, 31]) == pytest.approx(data[3, 3071] / 255)
    assert int(target["label"]) == records["test"][b"fine_labels"][3]
    assert target["label"].dtype == torch.int64
    # train + val hold every training image once
    train_rows = {
        bytes(r): int(lab)
        for r, lab in zip(
            torch.cat([splits.train.inputs, splits.val.inputs]).reshape(-1, 3072).numpy(),
            torch.cat([splits.train.targets["label"], splits.val.targets["label"]]),
            strict=True,
        )
    }
    expected = {
        bytes(r): lab
        for r, lab in zip(records["train"][b"data"], records["train"][b"fine_labels"], strict=True)
    }
    assert train_rows == expected


def test_load_coarse_and_parent_folder(tmp_path):
    _, records = make_cifar(tmp_path)
    splits = load_cifar100(tmp_path, label_mode="coarse", val_fraction=0.1, seed=2)
    assert splits.num_classes == 20 and splits.class_names == COARSE
    assert splits.test.targets["label"].tolist() == records["test"][b"coarse_labels"]
    assert splits.info["folder"].endswith("cifar-100-python")
    with pytest.raises(ValueError, match="label_mode must be 'fine' or 'coarse', got 'both'"):
        load_cifar100(tmp_path, label_mode="both")


def test_seeded_split(tmp_path):
    make_cifar(tmp_path)
    a, b, c = (load_cifar100(tmp_path, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.val.inputs, b.val.inputs)
    assert not torch.equal(a.val.inputs, c.val.inputs)


def test_augmentation_on_train_only(tmp_path):
    make_cifar(tmp_path)
    splits = load_cifar100(tmp_path, augment=True)
    assert isinstance(splits.train.transform, RandomCropFlip)
    assert splits.val.transform is None and splits.test.transform is None
    assert "RandomCropFlip(padding=4" in splits.info["augment"]
    torch.manual_seed(0)
    views = torch.stack([splits.train[0][0] for _ in range(20)])
    assert views.shape == (20, 3, 32, 32)
    assert len({v.numpy().tobytes() for v in views}) > 1  # random views differ
    assert torch.equal(splits.val[0][0], splits.val[0][0])
    assert load_cifar100(tmp_path).train.transform is None


def test_random_crop_flip():
    x = torch.rand(3, 8, 8) + 1.0  # strictly positive, so padding shows as zeros
    torch.manual_seed(0)
    outs = [RandomCropFlip(padding=2)(x) for _ in range(200)]
    assert all(o.shape == (3, 8, 8) for o in outs)
    flipped_or_same = [o for o in outs if (o > 0).all()]  # no padding visible: offset (2, 2)
    assert any(torch.equal(o, x) for o in flipped_or_same)
    assert any(torch.equal(o, x.flip(-1)) for o in flipped_or_same)
    zero_rows = [int((o[0] == 0).all(1).sum()) for o in outs]
    assert max(zero_rows) == 2 and min(zero_rows) == 0
    no_flip = RandomCropFlip(padding=0, flip=False)
    assert torch.equal(no_flip(x), x)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        RandomCropFlip(padding=-1)


def test_truncated_and_garbled_pickles_are_named(tmp_path):
    folder, _ = make_cifar(tmp_path)
    train = folder / "train"
    train.write_bytes(train.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cifar-100-python[/\\]train: not a readable CIFAR"):
        load_cifar100(folder)
    train.write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match=r"train: not a readable CIFAR pickle"):
        load_cifar100(folder)


def test_code_running_pickle_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    path = tmp_path / "meta"
    path.write_bytes(pickle.dumps({b"fine_label_names": Exploit()}, protocol=2))
    with pytest.raises(ValueError, match=r"meta: .*refusing to load global (posix|nt)\.system"):
        load_pickle(path)
    assert not (tmp_path / "owned").exists()


def test_inconsistent_contents(tmp_path):
    folder, records = make_cifar(tmp_path)

    def rewrite(name, **changes):
        record = dict(records[name])
        for key, value in changes.items():
            if value is None:
                del record[key.encode()]
            else:
                record[key.encode()] = value
        (folder / name).write_bytes(py2_pickle(record))

    rewrite("test", fine_labels=[100] * 10)
    with pytest.raises(ValueError, match=r"test: label 100 in b'fine_labels' outside the 100"):
        load_cifar100(folder)
    rewrite("test", fine_labels=[1] * 9)
    with pytest.raises(ValueError, match=r"test: 10 images but b'fine_labels' has shape \(9,\)"):
        load_cifar100(folder)
    rewrite(
        "test", fine_labels=records["test"][b"fine_labels"], data=np.zeros((10, 3000), np.uint8)
    )
    with pytest.raises(ValueError, match=r"test: b'data' must be uint8 \(N, 3072\)"):
        load_cifar100(folder)
    rewrite("test", data=None)
    with pytest.raises(ValueError, match=r"test: no b'data' entry"):
        load_cifar100(folder)
    (folder / "meta").write_bytes(py2_pickle({b"fine_label_names": [b"a"] * 99}))
    with pytest.raises(ValueError, match=r"meta: b'fine_label_names' must list 100 names"):
        load_cifar100(folder)
    (folder / "meta").write_bytes(py2_pickle([1, 2]))
    with pytest.raises(ValueError, match=r"meta: expected a pickled dict, got list"):
        load_cifar100(folder)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-100 folder not found: .*nothing"):
        load_cifar100(tmp_path / "nothing")
    folder, _ = make_cifar(tmp_path)
    (folder / "meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"CIFAR file not found: .*meta"):
        load_cifar100(folder)
