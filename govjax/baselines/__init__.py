"""Baselines the governance study compares against: goldfish loss, DP-SGD and deduplication.

- :mod:`govjax.baselines.goldfish`: hashed token dropping in the loss (a ``loss_fn`` for ``make_train_step``);
- :mod:`govjax.baselines.dpsgd`: per-example clipping + noise (its own train step with the same contract);
- :mod:`govjax.baselines.dedup`: near-duplicate removal before training.
"""
