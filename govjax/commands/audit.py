"""``govjax audit --workdir DIR [--json] [--k 32 --m 32]``: memorization audit of a trained run.

Writes ``DIR/audit/per_work.jsonl``, ``per_work.csv`` and ``summary.json`` (see :mod:`govjax.audit.run`) and
prints the summary (one JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import json

from govjax.audit.run import audit_run, write_audit


def run(args: argparse.Namespace) -> int:

  result = audit_run(args.workdir, k=args.k, m=args.m, step=args.step, batch_size=args.batch_size,
                     max_windows_per_work=args.max_windows_per_work, seed=args.seed)
  paths = write_audit(args.workdir, result)
  summary = dict(result.summary, files=paths)
  if args.json:
    print(json.dumps(summary, sort_keys=True))
    return 0
  print(f"audit of {args.workdir} (step {summary.get('step')}, k={args.k}, m={args.m})")
  for split, values in summary["splits"].items():
    print(f"  {split:<8} windows {values['num_audited']:>6} (skipped {values['num_skipped']}): "
          f"extraction {values['extraction_rate']}, token match {values['token_match']}, "
          f"loss {values['mean_loss']}")
  if summary.get("membership"):
    mia = summary["membership"]
    print(f"  membership: AUC {mia['auc']}, TPR@0.1%FPR {mia['tpr_at_0.1pct_fpr']}, "
          f"TPR@1%FPR {mia['tpr_at_1pct_fpr']}")
  print("  files: " + ", ".join(paths.values()))
  return 0
