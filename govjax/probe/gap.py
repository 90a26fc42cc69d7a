"""The memorization gap: how far an example's loss has fallen since the model generalised best.

Counterfactual memorization (Zhang et al. 2021) is an example's loss under models that never trained on it minus
its loss under models that did. A single training run has no model without the example, but it passes through
one that is the closest stand-in it has: the model at the point where the held-out loss was lowest. Before that
point the model still learns what transfers to unseen music; after it, the training loss keeps falling while the
held-out loss rises, and what the model gains on a training example from then on does not transfer. So

    memorization_gap(x) = reference_loss(x) - loss_now(x)

where ``loss_now(x)`` is an EMA (weight ``reference_ema``) of the example's fresh losses, measured on its own
sightings (the train step's forward pass, before the update), and ``reference_loss(x)`` is that EMA as it stood
at the calibration at which the held-out loss reached its lowest value so far. No extra forward pass and no
value older than the example's last sighting.

The gap is kept on two scales. Examples are *ranked* (``ProbePlugin.evidence``) on the root loss (the mean over
a window's tokens of ``sqrt(token loss)``, :func:`govjax.probe.stats.root_loss`), with the same EMA and the same
snapshot: a concave reading counts how many tokens were still uncertain at the held-out optimum more than how
uncertain the worst ones were, and the loss that models which never trained on a window end with is driven by
the count (on the probe bench's development seeds a window's root loss at the optimum ranked counterfactual
memorization at 0.903 against 0.871 for its loss; ``experiments/RESULTS.md``). For the ranking the reference root
loss can also be averaged with a second estimate of how hard the window is without it, the n-gram reference of
the other works (:mod:`govjax.probe.reference`, ``ProbeSpec.reference_order``; it helps on folk melodies and
hurts on chorales). The decisions below stay in nats.

The decision to lower an example's depth needs an absolute scale. A never-trained
window's loss rises after the optimum by the *drift* (the held-out mean loss now minus its minimum), so a
training example's loss without it would be about ``reference_loss(x) + drift`` and

    estimated counterfactual memorization(x) = memorization_gap(x) + drift      (nats per token).

On the held-out windows themselves this estimate is centred on zero by construction; its upper percentile is the
estimate's noise. An example is flagged when its estimate exceeds both ``memorization_margin`` (a policy: how
many nats per token of memorization a run tolerates) and that noise level, i.e. when

    memorization_gap(x) > max(memorization_margin - drift, percentile_{100 - percentile}(held-out gaps)).

Mechanics (the probe state of :mod:`govjax.probe.monitor` holds the arrays):

* every step folds each row's fresh loss into ``running_reference`` (``loss_now``) and its fresh root loss into
  ``running_root``;
* every calibration measures the held-out (never trained) windows; when their mean loss is a new minimum,
  ``reference = running_reference`` and ``reference_root = running_root`` (snapshots) and the held-out windows'
  own losses become ``heldout_reference``; otherwise the reference stays frozen and :func:`heldout_update` sets
  the flagging threshold above, and a restoring threshold lower by the held-out spread between the
  ``100 - percentile``-th and ``100 - restore_percentile``-th percentiles (hysteresis). While the held-out loss
  is still falling nothing is flagged (thresholds ``+inf`` / ``-inf``).

The memorization-signal study and the probe bench (``experiments/RESULTS.md``) measure how well the gap ranks
counterfactual memorization among windows trained equally often, and how the flags match counterfactual
memorization above the margin.

Example:
  >>> import numpy as np
  >>> update = heldout_update(best=np.float32(2.0), heldout_reference=np.full(HELDOUT_ROWS, np.nan, np.float32),
  ...                         heldout_loss=np.array([1.5, 1.7], np.float32), percentile=5.0, restore_percentile=20.0,
  ...                         margin=0.5)
  >>> bool(update.improved), round(float(update.best), 3)
  (True, 1.6)
  >>> update = heldout_update(best=update.best, heldout_reference=update.heldout_reference,
  ...                         heldout_loss=np.array([1.6, 1.9], np.float32), percentile=5.0, restore_percentile=20.0,
  ...                         margin=0.5)
  >>> round(float(update.drift), 3), round(float(update.upper), 3)   # margin 0.5 - drift 0.15 > noise -0.105
  (0.15, 0.35)
  >>> round(float(update.restore), 3)                                 # 0.35 - (-0.105 - (-0.12))
  0.335
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

# Held-out rows kept for the held-out gaps; calibrations read at most ``calibration_batches`` batches.
HELDOUT_ROWS = 4096


class HeldoutUpdate(NamedTuple):
  """What one calibration decides for the memorization gap.

  Attributes:
    improved: the held-out mean loss is a new minimum (take a new reference snapshot).
    best: the lowest held-out mean loss so far.
    heldout_reference: float32 ``[HELDOUT_ROWS]``: the held-out windows' losses at the best calibration (NaN
      beyond the rows measured).
    upper: flag an example whose gap is above this (``+inf`` at a new minimum).
    restore: restore an example whose gap is below this (``-inf`` at a new minimum).
    drift: the held-out mean loss now minus its minimum (0 at a new minimum).
  """

  improved: bool
  best: np.float32
  heldout_reference: np.ndarray
  upper: np.float32
  restore: np.float32
  drift: np.float32


def fold_reference(running: jnp.ndarray, loss: jnp.ndarray, seen: jnp.ndarray, weight: float) -> jnp.ndarray:
  """The running reference after one sighting: ``loss`` at the first, else ``weight * running + (1 - weight) * loss``.

  Args:
    running: ``[B]`` the rows' running references.
    loss: ``[B]`` their fresh losses.
    seen: ``[B]`` how often each row was seen before this sighting.
    weight: the EMA weight of the old value.

  Returns:
    ``[B]`` the new running references.
  """
  return jnp.where(seen > 0, weight * running + (1.0 - weight) * loss, loss)


def heldout_update(*, best, heldout_reference: np.ndarray, heldout_loss: np.ndarray, percentile: float,
                   restore_percentile: float, margin: float) -> HeldoutUpdate:
  """One calibration: a new reference snapshot, or thresholds from the margin, the drift and the held-out gaps.

  Args:
    best: the lowest held-out mean loss so far (``+inf`` before the first calibration).
    heldout_reference: ``[HELDOUT_ROWS]`` the held-out losses at the best calibration.
    heldout_loss: ``[m]`` the held-out windows' losses now, in the same order at every calibration (the
      calibration batches are deterministic); rows beyond ``HELDOUT_ROWS`` are not used.
    percentile: the flagging tail (flag above the ``100 - percentile``-th percentile of held-out gaps).
    restore_percentile: the restoring percentile (restore below the ``100 - restore_percentile``-th).
    margin: the tolerated counterfactual memorization in nats per token (``memorization_margin``).

  Returns:
    A :class:`HeldoutUpdate`.
  """
  loss = np.asarray(heldout_loss, np.float32)[:HELDOUT_ROWS]
  if loss.size == 0 or not np.isfinite(loss).any():
    raise ValueError("memorization gap: the calibration batches hold no held-out rows with a finite loss")
  mean = np.float32(np.nanmean(loss))
  reference = np.asarray(heldout_reference, np.float32)
  if reference.shape != (HELDOUT_ROWS,):
    raise ValueError(f"memorization gap: heldout_reference must have shape ({HELDOUT_ROWS},), got {reference.shape}")
  if not mean < np.float32(best):
    drift = np.float32(mean - np.float32(best))
    gaps = reference[:loss.size] - loss
    gaps = gaps[np.isfinite(gaps)]
    if not gaps.size:
      return HeldoutUpdate(False, np.float32(best), reference, np.float32(np.inf), np.float32(-np.inf), drift)
    noise = np.float32(np.percentile(gaps, 100.0 - percentile))
    spread = noise - np.float32(np.percentile(gaps, 100.0 - restore_percentile))
    upper = np.float32(max(np.float32(margin) - drift, noise))
    return HeldoutUpdate(False, np.float32(best), reference, upper, np.float32(upper - spread), drift)
  fresh = np.full(HELDOUT_ROWS, np.nan, np.float32)
  fresh[:loss.size] = loss
  return HeldoutUpdate(True, mean, fresh, np.float32(np.inf), np.float32(-np.inf), np.float32(0.0))
