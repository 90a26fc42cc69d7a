"""The scoring side of the attribution experiment (``experiments/attribution.py``): every full model's features
(projected gradients, raw and Adam, and the Gram matrices of the unprojected ones) and the score matrices of every
scorer compared (:func:`scorer_scores`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from govjax.provenance.featurize import FeatureConfig, transformer_featurizer
from govjax.provenance.record import RunCheckpoints, read_training_record
from govjax.provenance.runs import training_examples
from govjax.provenance.scorers import (
    checkpoint_features,
    ensemble,
    exact_trak_scores,
    gradient_grams,
    gram_damping,
    tracin_scores,
    trak_damping,
    trak_scores,
)

# ------------------------------------------------------------------------------------------------ features


def model_features(workdir: pathlib.Path, data, queries: np.ndarray, k: int, seed: int, *, unmasked: bool = False
                   ) -> dict[str, np.ndarray]:
  """Raw and Adam training features ``[C, N, k]``, raw query features ``[C, Q, k]`` and learning rates ``[C]``
  of one trained run, at all its checkpoints (the routing log's masks, as ``govjax index`` uses them); with
  ``unmasked`` also the training features without the masks (``raw_unmasked``, ``adam_unmasked``: a scorer that
  ignores the depth each example trained at)."""
  examples = training_examples(data)
  record = read_training_record(workdir, num_examples=len(examples))
  raw, adam, query, raw_all, adam_all = [], [], [], [], []
  masks = record.credit_masks()
  with RunCheckpoints(workdir) as run:
    featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers,
                                        config=FeatureConfig(k=k, seed=seed))
    for c, step in enumerate(record.steps):
      ckpt = run.load(step)
      inputs = {"tokens": examples.tokens}
      raw.append(checkpoint_features(featurizer, ckpt, inputs, masks[c]))
      adam.append(checkpoint_features(featurizer, ckpt, inputs, masks[c], adam=True))
      query.append(checkpoint_features(featurizer, ckpt, {"tokens": queries}))
      if unmasked:
        raw_all.append(checkpoint_features(featurizer, ckpt, inputs))
        adam_all.append(checkpoint_features(featurizer, ckpt, inputs, adam=True))
  extra = {"raw_unmasked": np.stack(raw_all), "adam_unmasked": np.stack(adam_all)} if unmasked else {}
  return {"raw": np.stack(raw), "adam": np.stack(adam), "query": np.stack(query), **extra,
          "learning_rates": record.learning_rates, "example_work": examples.work_index,
          "tokens": examples.tokens}


def output_features(workdir: pathlib.Path, num_examples: int, outputs: np.ndarray, k: int, seed: int) -> np.ndarray:
  """Raw query features ``[C, O, k]`` of ``outputs`` at every checkpoint of one trained run (the same projection
  and checkpoints as :func:`model_features`, so they score against its training features)."""
  steps = read_training_record(workdir, num_examples=num_examples).steps
  with RunCheckpoints(workdir) as run:
    featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers,
                                        config=FeatureConfig(k=k, seed=seed))
    return np.stack([checkpoint_features(featurizer, run.load(step), {"tokens": outputs}) for step in steps])


def model_grams(workdir: pathlib.Path, data, query_sets: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
  """Gram matrices of the unprojected gradients of one trained run at all its checkpoints: ``"gram"``
  ``[C, N, N]`` (training windows, with the routing log's masks) and ``"cross<i>"`` ``[C, Q_i, N]`` per query
  set (:func:`govjax.provenance.scorers.gradient_grams`)."""
  examples = training_examples(data)
  record = read_training_record(workdir, num_examples=len(examples))
  masks = record.credit_masks()
  grams, crosses = [], [[] for _ in query_sets]
  with RunCheckpoints(workdir) as run:
    featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers,
                                        config=FeatureConfig())
    for c, step in enumerate(record.steps):
      gram, cross = gradient_grams(featurizer, run.load(step).params, {"tokens": examples.tokens},
                                   [{"tokens": q} for q in query_sets], masks[c])
      grams.append(gram)
      for i, x in enumerate(cross):
        crosses[i].append(x)
  return {"gram": np.stack(grams), **{f"cross{i}": np.stack(x) for i, x in enumerate(crosses)}}


def unit(x: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def exact_trak(features: Sequence[dict[str, np.ndarray]], damping: float, checkpoints: slice) -> np.ndarray:
  """Unprojected TRAK ``[Q, N]`` averaged over models and ``checkpoints`` (``damping`` relative, per Gram)."""
  return ensemble([exact_trak_scores(f["gram"][c], f["cross"][c], damping=gram_damping(f["gram"][c], relative=damping))
                   for f in features for c in range(len(f["gram"]))[checkpoints]])


def scorer_scores(features: Sequence[dict[str, np.ndarray]], dampings: dict[str, float]) -> dict[str, np.ndarray]:
  """``{scorer: [Q, N]}`` from the per-model features (model 0 first); ``dampings`` relative, per TRAK scorer
  (the unprojected ones only when the features hold ``"gram"`` and ``"cross"``)."""
  first = features[0]
  damping = dampings["trak"]
  tracin = [tracin_scores(f["raw"], f["query"], f["learning_rates"]) for f in features]
  adam = [tracin_scores(f["adam"], f["query"], f["learning_rates"]) for f in features]
  trak = [trak_scores(f["raw"][-1], f["query"][-1], damping=trak_damping(f["raw"][-1], relative=damping))
          for f in features]
  return {
      "tracin": tracin[0],
      "tracin_unit": tracin_scores(unit(first["raw"]), unit(first["query"]), first["learning_rates"]),
      "tracin_adam": adam[0],
      "tracin_ensemble": ensemble(tracin),
      "tracin_adam_ensemble": ensemble(adam),
      "trak": ensemble(trak),
      # TRAK without the inverse (the limit of large damping): final-checkpoint gradient products, ensembled.
      "final_dot_ensemble": ensemble([f["query"][-1].astype(np.float64) @ f["raw"][-1].T.astype(np.float64)
                                      for f in features]),
      **({"trak_exact_final": exact_trak(features, dampings["trak_exact_final"], slice(-1, None)),
          "trak_exact": exact_trak(features, dampings["trak_exact"], slice(None))} if "gram" in first else {}),
      # Depth-blind TracIn (routed runs only): the same gradients, every example credited through every group.
      **({"tracin_unmasked": tracin_scores(first["raw_unmasked"], first["query"], first["learning_rates"]),
          "tracin_adam_unmasked": tracin_scores(first["adam_unmasked"], first["query"], first["learning_rates"])}
         if "raw_unmasked" in first else {}),
  }
