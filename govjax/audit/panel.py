"""The study's audit: one fixed panel of windows per seed, measured the same way under every model.

Comparisons between models (counterfactual extraction, reference-calibrated membership inference, paired
differences between methods) need the *same* windows under each model. :func:`audit_panel` therefore audits a
panel that does not depend on what the model trained on:

- every work of the study's training split (including works a policy excluded from this run), at most
  ``windows_per_work`` non-overlapping windows each, chosen by the sha256 of ``work_id:start`` (so the same
  windows in every run);
- *every* non-overlapping window of the held-out works (never trained by any run): the non-members;
- every distinct planted canary (random and chorale kinds).

Each window row records whether *this* run trained its work (``member``), its loss, and k-prefix extraction of
``m`` tokens: exact match for every window (one teacher-forced pass, equivalent to greedy decoding), and for a
fixed subsample of ``decode_per_split`` windows per split (by hash, the same in every run) the greedy continuation's
token match and edit similarity (approximate reproduction; decoding costs ``m`` forward passes). Each canary row
records its loss, rank exposure and extrapolated exposure (skew-normal fit of reference losses: random references
for random canaries, held-out chorale windows of the canary's length for chorale canaries) and exact extraction
of its last ``canary_m`` tokens after the rest as prompt.

Example:
  >>> import numpy as np
  >>> from flax import nnx
  >>> from govjax.data.loader import Work
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=72, num_layers=1, width=16, num_heads=2, context=32),
  ...                     rngs=nnx.Rngs(0))
  >>> rng = np.random.default_rng(0)
  >>> def work(i):
  ...   return Work(f"w{i}", "", "", "", "", "", "", rng.integers(3, 72, 96).astype(np.int32), 96, {})
  >>> train, held = [work(i) for i in range(3)], [work(i) for i in range(3, 5)]
  >>> out = audit_panel(model, train_works=train, trained_ids={"w0", "w1"}, heldout_works=held, context=32,
  ...                   k=8, m=16, windows_per_work=2, decode_per_split=3)
  >>> len(out["windows"]), sum(r["member"] for r in out["windows"]), out["windows"][0]["split"]
  (12, 4, 'train')
  >>> sum(r["edit_similarity"] is not None for r in out["windows"])  # 3 decoded per split
  6
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from govjax.audit.exposure import exposure, extrapolated_exposure, fit_reference_losses
from govjax.audit.extraction import extraction_audit, window_losses
from govjax.data.loader import PAD, build_window_table

__all__ = ["audit_panel", "panel_windows"]


def _hash(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def panel_windows(works: Sequence, context: int, limit: int | None) -> tuple[np.ndarray, list[tuple[str, int]]]:
  """Non-overlapping windows of ``works`` (at most ``limit`` per work, by hash of ``work_id:start``).

  Returns:
    ``(int32 [N, context] windows, [(work_id, start), ...])``.
  """
  if not works:
    return np.zeros((0, context), np.int32), []
  table = build_window_table(works, context=context, stride=context - context % 4)
  work_index, start = np.asarray(table.work_index), np.asarray(table.start)
  keys = []
  for w, work in enumerate(works):
    mine = [int(s) for s in start[work_index == w]]
    if limit is not None and len(mine) > limit:
      mine = sorted(sorted(mine, key=lambda s, wid=work.work_id: _hash(f"{wid}:{s}"))[:limit])
    keys.extend((work.work_id, s) for s in mine)
  by_id = {w.work_id: w for w in works}
  out = np.full((len(keys), context), PAD, np.int32)
  for row, (work_id, s) in enumerate(keys):
    piece = np.asarray(by_id[work_id].tokens)[s:s + context]
    out[row, :piece.size] = piece
  return out, keys


def _decode_rows(keys: list[tuple[str, int]], limit: int | None) -> np.ndarray:
  """Rows greedy-decoded: the ``limit`` keys first by hash of ``work_id:start`` (all when None)."""
  if limit is None:
    return np.arange(len(keys))
  order = sorted(range(len(keys)), key=lambda i: _hash(f"{keys[i][0]}:{keys[i][1]}"))
  return np.sort(np.asarray(order[:limit], np.int64))


def _opt(value: float) -> float | None:
  return None if np.isnan(value) else float(value)


def _rows(result, keys, split: str, trained_ids: set, info: dict) -> list[dict]:
  rows = []
  for i, (work_id, s) in enumerate(keys):
    valid = bool(result.valid[i])
    rows.append({"work_id": work_id, "start": s, "split": split, "member": work_id in trained_ids,
                 **info.get(work_id, {}), "valid": valid, "loss": float(result.loss[i]),
                 "exact": bool(result.exact[i]) if valid else None,
                 "token_match": _opt(result.token_match[i]) if valid else None,
                 "edit_similarity": _opt(result.edit_similarity[i]) if valid else None})
  return rows


def audit_panel(model, *, train_works: Sequence, trained_ids: Iterable[str], heldout_works: Sequence, context: int,
                k: int, m: int, windows_per_work: int | None = 2, work_info: dict | None = None,
                canaries: np.ndarray | None = None, canary_ids: Sequence[str] = (), canary_kinds: Sequence[str] = (),
                canary_repetitions: Sequence[int] = (), random_references: np.ndarray | None = None,
                canary_m: int | None = None, decode_per_split: int | None = 32, batch_size: int = 64) -> dict:
  """Audits the panel (see the module docstring) under ``model``.

  Args:
    model: a Transformer.
    train_works: the study's training-split works (chorales; excluded ones included).
    trained_ids: work ids this model trained on (``member`` is True for their windows).
    heldout_works: works no run trained on (every window audited).
    context: window length in tokens (the model's context).
    k: prompt length; ``m``: continuation length (``k + m <= context``).
    windows_per_work: windows per training-split work (None: all).
    work_info: ``work_id -> dict`` merged into each window row (licence class, treatment, ...).
    canaries: int32 ``[C, T]`` distinct canaries (None: no canary audit).
    canary_ids, canary_kinds, canary_repetitions: per canary.
    random_references: int32 ``[R, T]`` never-planted random sequences (exposure of random canaries).
    canary_m: canary continuation length (default ``min(m, T // 2)``, prompt = the rest).
    decode_per_split: windows per split greedy-decoded for token match and edit similarity (None: all).
    batch_size: rows decoded at once.

  Returns:
    ``{"windows": [row, ...], "canaries": [row, ...], "k", "m", "canary_k", "canary_m"}``.
  """
  trained_ids = set(trained_ids)
  info = work_info or {}
  rows = []
  for split, works, limit in (("train", list(train_works), windows_per_work), ("heldout", list(heldout_works), None)):
    windows, keys = panel_windows(works, context, limit)
    if keys:
      result = extraction_audit(model, windows, k=k, m=m, batch_size=batch_size,
                                decode_rows=_decode_rows(keys, decode_per_split))
      rows += _rows(result, keys, split, trained_ids, info)
  out = {"windows": rows, "canaries": [], "k": k, "m": m, "canary_k": None, "canary_m": None}
  if canaries is None or not len(canaries):
    return out
  canaries = np.asarray(canaries, np.int32)
  length = canaries.shape[1]
  cm = min(m, length // 2) if canary_m is None else canary_m
  ck = length - cm
  result = extraction_audit(model, canaries, k=ck, m=cm, batch_size=batch_size, decode_rows=np.zeros(0, np.int64))
  references = {}
  if random_references is not None:
    references["random"] = window_losses(model, random_references, batch_size=batch_size)[0]
  held_windows, _ = panel_windows(list(heldout_works), length, None)
  held_windows = held_windows[np.all(held_windows != PAD, axis=1)]
  if len(held_windows) >= 3:
    references["chorale"] = window_losses(model, held_windows, batch_size=batch_size)[0]
  fits = {kind: fit_reference_losses(losses) for kind, losses in references.items()}
  for i in range(len(canaries)):
    kind = str(canary_kinds[i]) if len(canary_kinds) else "random"
    loss = float(result.loss[i])
    row = {"canary": canary_ids[i] if len(canary_ids) else str(i), "kind": kind,
           "repetitions": int(canary_repetitions[i]) if len(canary_repetitions) else None, "loss": loss,
           "exact": bool(result.exact[i])}
    if kind in references:
      row["exposure_rank"] = exposure(loss, references[kind])
      row["exposure"] = extrapolated_exposure(loss, fit=fits[kind])
      row["num_references"] = int(references[kind].size)
    out["canaries"].append(row)
  out.update({"canary_k": ck, "canary_m": cm,
              "reference_fits": {kind: list(fit) for kind, fit in fits.items()}})
  return out
