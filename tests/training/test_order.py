"""The batch order: one shuffled pass per epoch, or fixed-size epochs from a stream of passes."""

import pytest
import torch

from hpn.training.order import SEED_STRIDE, epoch_order, pass_order


def test_a_pass_per_epoch_keeps_the_order_of_earlier_releases():
    # runs started before steps_per_epoch existed resume in the order they began with
    reference = torch.randperm(50, generator=torch.Generator().manual_seed(3 * 1_000_003 + 2))
    assert SEED_STRIDE == 1_000_003
    assert torch.equal(epoch_order(50, 3, 2, None, 8), reference)


@pytest.mark.parametrize(("n", "steps", "batch"), [(10, 3, 4), (7, 1, 7), (12, 2, 6), (5, 4, 3)])
def test_step_epochs_tile_the_stream_of_passes(n, steps, batch):
    epochs = [epoch_order(n, 1, e, steps, batch) for e in range(6)]
    assert all(len(e) == steps * batch for e in epochs)
    stream = torch.cat(epochs)
    passes = len(stream) // n
    for index in range(passes):  # every full pass visits each example once, in its order
        assert torch.equal(stream[index * n : (index + 1) * n], pass_order(n, 1, index))
    assert torch.equal(stream[passes * n :], pass_order(n, 1, passes)[: len(stream) - passes * n])


def test_step_epochs_differ_by_seed_and_repeat_by_seed():
    assert torch.equal(epoch_order(100, 4, 5, 2, 16), epoch_order(100, 4, 5, 2, 16))
    assert not torch.equal(epoch_order(100, 4, 5, 2, 16), epoch_order(100, 5, 5, 2, 16))
