"""Data sources; each returns a :class:`hpn.data.base.DataSplits`. Nothing is downloaded."""

from hpn.data.base import DataSplits, TensorDataset, split_train_val

__all__ = ["DataSplits", "TensorDataset", "split_train_val"]
