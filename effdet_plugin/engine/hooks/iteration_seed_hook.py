"""Random numbers of the training process that depend on the iteration, not on the history.

Why a resumed run diverged: mmengine seeds the python/numpy/torch generators once, when the
Runner is built. Everything drawn in the training process afterwards (drop-path masks of the
EfficientNet backbone, the seed torch draws for every new DataLoader iterator, e.g. at each
validation) continues that one stream, and a checkpoint does not store its state: a resumed
run starts the stream over at the resumed iteration, so from the first iteration after the
resume its drop-path masks differ. The data side is already reproducible: the sampler is
seeded, and mmengine's IterBasedTrainLoop re-reads the skipped batches, so dataloader workers
(seeded by ``worker_init_fn``) replay their augmentation draws.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def iteration_seed(seed: int, iteration: int) -> int:
    """A 32-bit seed for ``iteration`` of a run seeded with ``seed`` (numpy's SeedSequence
    keeps neighbouring iterations' streams independent)."""
    return int(np.random.SeedSequence([seed % 2**32, iteration]).generate_state(1)[0])


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Reseed python, numpy and torch in the training process from (seed, iteration).

    Called first at every training iteration (and epoch), it makes what the model draws at
    iteration ``i`` a function of the run's seed and ``i`` only, so a run resumed from a
    checkpoint draws what the uninterrupted run drew. With ``num_workers >= 1`` the
    augmentation draws, made in the dataloader workers, are replayed by mmengine; with
    ``num_workers=0`` they are made in this process and, in iteration-based training, differ
    after a resume.
    """

    priority = 'HIGHEST'

    @staticmethod
    def _reseed(runner) -> None:
        seed = iteration_seed(runner.seed, runner.iter)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # seeds CUDA as well

    def before_train_epoch(self, runner) -> None:
        """Reseed before the epoch's first batch is read (epoch-based loops)."""
        self._reseed(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Reseed before the forward pass of iteration ``runner.iter``."""
        self._reseed(runner)
