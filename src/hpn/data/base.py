"""The one shape every data source returns.

A source gives a :class:`DataSplits`: train / val / test datasets whose items are
``(x, target)``, with ``target`` a dict holding ``"label"`` (int64 class id) for
classification, ``"value"`` (float32) for regression, or both for multi-task. The default
collate function stacks dicts, so a batch is ``(x: (N, ...), {"label": (N,), "value": (N,)})``.
Validation splits are carved from the training data (never from test) by a seeded
permutation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, Self, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

Task = Literal["classification", "regression", "multitask"]

#: One example or one batch: ``(x, {"label": ..., "value": ...})``.
Example = tuple[torch.Tensor, dict[str, torch.Tensor]]

#: A callable on one float input tensor (an augmentation), returning a tensor of that shape.
Transform = Callable[[torch.Tensor], torch.Tensor]

#: Row indices of one batch: a list, a range or an int64 tensor.
Indices = TypeVar("Indices", Sequence[int], torch.Tensor)


class SplitDataset(Protocol):
    """What a split of :class:`DataSplits` is: a map-style dataset of ``(x, target-dict)``.

    Any object with these two methods will do (a ``torch.utils.data.Dataset`` subclass
    usually); :class:`TensorDataset` and :class:`hpn.data.folders.ImageFileDataset` are the
    library's own.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Example: ...


class TableDataset(SplitDataset, Protocol):
    """A :class:`SplitDataset` whose targets sit in one table, and which makes row subsets
    without reading its inputs (:class:`TensorDataset`, ``ImageFileDataset``)."""

    targets: dict[str, torch.Tensor]

    def subset(self, indices: torch.Tensor) -> Self: ...


class TensorDataset(Dataset):
    """In-memory dataset: inputs (N, ...) and a dict of (N,) targets.

    Inputs may be uint8 images; ``transform`` (a callable on one float tensor) runs per item.
    It is the training augmentation, and only that (:func:`without_augmentation` drops it):
    a fixed preprocessing belongs in the inputs or the backbone.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: dict[str, torch.Tensor],
        transform: Transform | None = None,
    ):
        for key, value in targets.items():
            if len(value) != len(inputs):
                raise ValueError(f"target {key!r} has {len(value)} rows for {len(inputs)} inputs")
        self.inputs, self.targets, self.transform = inputs, targets, transform

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Example:
        x = self.inputs[index]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.transform is not None:
            x = self.transform(x)
        return x, {key: value[index] for key, value in self.targets.items()}

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> Example:
        """Items ``indices`` as one batch, as a DataLoader would collate them, in one
        indexing operation instead of one per item (the transform still runs per item).

        Args:
            indices: M row indices (a list or an int64 tensor).

        Returns:
            ``(x, targets)``: float32 inputs (M, ...) (uint8 scaled to [0, 1]) and a dict of
            (M,) targets.

        Example:
            >>> images = torch.zeros(5, 2, dtype=torch.uint8)
            >>> data = TensorDataset(images, {"label": torch.arange(5)})
            >>> x, target = data.get_batch([3, 1])
            >>> x.shape, x.dtype, target["label"].tolist()
            (torch.Size([2, 2]), torch.float32, [3, 1])
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        x = self.inputs[index]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.transform is not None:
            x = torch.stack([self.transform(item) for item in x])
        return x, {key: value[index] for key, value in self.targets.items()}

    def subset(self, indices: torch.Tensor) -> TensorDataset:
        """A new dataset of the rows ``indices``, with the same transform.

        Args:
            indices: (M,) int64 row indices (or an (N,) bool mask) into the N rows.

        Returns:
            A :class:`TensorDataset` of M rows; inputs and targets are indexed copies.

        Example:
            >>> data = TensorDataset(torch.arange(5.0)[:, None], {"label": torch.arange(5)})
            >>> part = data.subset(torch.tensor([4, 0]))
            >>> len(part), part.targets["label"].tolist()
            (2, [4, 0])
        """
        return TensorDataset(
            self.inputs[indices], {k: v[indices] for k, v in self.targets.items()}, self.transform
        )


@dataclass
class DataSplits:
    """Train / validation / test data of one source, and what it holds.

    Attributes:
        train, val, test: datasets of ``(x, target-dict)`` items.
        task: ``classification``, ``regression`` or ``multitask``.
        input_shape: shape of one x, e.g. (1, 28, 28) or (300,).
        num_classes: K for classification / multi-task, else None.
        class_names: optional K names.
        info: source details for the run record (paths, counts, seeds).
    """

    train: SplitDataset
    val: SplitDataset
    test: SplitDataset
    task: Task
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def for_task(self, task: Task | None) -> DataSplits:
        """The same data seen as one of its tasks.

        A multi-task source can be used for classification only (its labels) or regression
        only (its values), e.g. to train the single-task references of a multi-task
        experiment; ``None`` or the source's own task returns it unchanged.

        Raises:
            ValueError: an unknown task, or one the source cannot serve (a classification
                source has no regression values, and the other way round).
        """
        if task is None or task == self.task:
            return self
        if task not in ("classification", "regression", "multitask"):
            raise ValueError(f"unknown task {task!r}; use classification, regression or multitask")
        if self.task != "multitask":
            raise ValueError(
                f"a {self.task} source cannot be used for {task}; only a multitask source "
                "narrows to classification or regression"
            )
        return replace(
            self,
            task=task,
            num_classes=self.num_classes if task == "classification" else None,
            class_names=self.class_names if task == "classification" else None,
            info={**self.info, "task": task, "source_task": self.task},
        )


D = TypeVar("D", bound=TableDataset)


def split_train_val(data: D, val_fraction: float, seed: int) -> tuple[D, D]:
    """Seeded split of training data into train and validation parts.

    Args:
        data: N rows.
        val_fraction: share of rows for validation, in (0, 1); at least one row.
        seed: seed of the permutation.

    Returns:
        ``(train, val)``: disjoint subsets of ``round(N * val_fraction)`` validation rows and
        the rest (not stratified: see :func:`stratified_split`).

    Example:
        >>> data = TensorDataset(torch.zeros(10, 3), {"label": torch.arange(10)})
        >>> train, val = split_train_val(data, 0.2, seed=0)
        >>> len(train), len(val)
        (8, 2)
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(len(data) * val_fraction))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[n_val:]), data.subset(perm[:n_val])


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded per-class split of indices into a kept part and a held-out part.

    Each class gives ``round(n_c * fraction)`` of its ``n_c`` examples to the held-out part
    (so class proportions are kept); a class with a single example stays in the kept part.

    Args:
        labels: (N,) integer class ids.
        fraction: share held out, in (0, 1).
        seed: seed of the permutation.

    Returns:
        ``(kept, held)``: sorted int64 index tensors, disjoint, together ``0..N-1``.

    Example:
        >>> kept, held = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
        >>> kept.tolist(), held.tolist()
        ([1, 2, 3, 5, 6, 7], [0, 4])
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=generator)
    # Each class's members in seeded random order, classes one after another (a stable sort
    # of the permuted labels: O(N log N), where a pass per class would be O(N K)).
    order = torch.sort(labels[perm], stable=True).indices
    members = perm[order]
    _, counts = torch.unique_consecutive(labels[members], return_counts=True)
    quota = torch.tensor([round(n * fraction) for n in counts.tolist()], dtype=torch.long)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(members)) - torch.repeat_interleave(starts, counts)
    held_idx = members[rank < torch.repeat_interleave(quota, counts)].sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_idx] = False
    return torch.nonzero(mask).flatten(), held_idx


def holdout_splits(
    data: TensorDataset,
    labels: torch.Tensor,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_seed: int,
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """(train, val, test) for a source without an official test split.

    The test part is held out per class with ``test_seed`` (so runs with different ``seed``
    are scored on the same test set when ``test_seed`` is fixed); validation is then carved
    from the rest with ``seed``.
    """
    kept, held = stratified_split(labels, test_fraction, test_seed)
    train, val = split_train_val(data.subset(kept), val_fraction, seed)
    return train, val, data.subset(held)


def without_augmentation(dataset: SplitDataset) -> SplitDataset:
    """``dataset`` with its items as they are: a shallow copy without its ``transform``
    (the training augmentation of :class:`TensorDataset` and ``ImageFileDataset``), or
    ``dataset`` itself when it has none.

    Example:
        >>> data = TensorDataset(torch.zeros(2, 3), {"label": torch.arange(2)}, lambda x: x + 1)
        >>> without_augmentation(data)[0][0].tolist(), data[0][0].tolist()
        ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    """
    if getattr(dataset, "transform", None) is None:
        return dataset
    plain = copy.copy(dataset)
    plain.transform = None  # type: ignore[attr-defined]
    return plain


def iterate_batches(
    dataset: SplitDataset, batches: Iterable[Sequence[int] | torch.Tensor]
) -> Iterator[Example]:
    """Yield ``(x, targets)`` for each list of indices in ``batches``.

    A dataset with ``get_batch`` (:class:`TensorDataset`) is indexed once per batch; any
    other map-style dataset goes through a ``DataLoader`` with those batches, so both give
    the same tensors.

    Example:
        >>> data = TensorDataset(torch.zeros(5, 3), {"label": torch.arange(5)})
        >>> [(tuple(x.shape), t["label"].tolist()) for x, t in iterate_batches(data, [[0, 1], [4]])]
        [((2, 3), [0, 1]), ((1, 3), [4])]
    """
    get_batch = getattr(dataset, "get_batch", None)
    if get_batch is not None:
        for indices in batches:
            yield get_batch(indices)
        return
    # DataLoader takes any map-style dataset; its annotation names torch's Dataset class
    as_lists = [torch.as_tensor(indices, dtype=torch.long).tolist() for indices in batches]
    yield from DataLoader(dataset, batch_sampler=as_lists)  # type: ignore[arg-type]


def in_batches(indices: Indices, batch_size: int) -> list[Indices]:
    """``indices`` cut into consecutive batches of ``batch_size`` (the last may be shorter);
    e.g. ``in_batches(range(len(data)), 256)`` for one pass in order.

    Example:
        >>> in_batches([0, 1, 2, 3, 4], 2)
        [[0, 1], [2, 3], [4]]
    """
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def training_batches(indices: Indices, batch_size: int) -> list[Indices]:
    """:func:`in_batches`, except that a last batch of one example joins the batch before
    it: batch norm cannot train on a batch of one, and no example is dropped.

    Example:
        >>> training_batches([0, 1, 2, 3, 4], 2)
        [[0, 1], [2, 3, 4]]
    """
    batches = in_batches(indices, batch_size)
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [indices[(len(batches) - 2) * batch_size :]]
    return batches
