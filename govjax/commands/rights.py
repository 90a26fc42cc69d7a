"""``govjax rights ...``: validate rights records, summarise a policy's decisions, write scenarios.

- ``govjax rights validate FILE``: every bad row and field of a JSON Lines / CSV records file; exit 1 if any.
- ``govjax rights summary [--records FILE | --scenario default|real] [--policy FILE] [--num-groups L]``:
  counts by licence and treatment, and the exclusion report.
- ``govjax rights scenario --out FILE [--seed S] [--data-dir DIR]``: the default simulated scenario (or the
  real records with ``--kind real``) for the prepared chorales.
- ``govjax rights policy [--out FILE]``: the default policy as JSON (a template for custom policies).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from govjax.core.config import ModelSpec
from govjax.data.scenario import load_dataset_works, resolve_records
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import PolicyError, default_policy, load_policy, policy_to_json
from govjax.rights.records import RecordValidationError, load_records, read_records, save_records


def _default_num_groups() -> int:

  return ModelSpec().num_layers + 2


def _error(message: str) -> int:
  print(f"govjax rights: error: {message}", file=sys.stderr)
  return 2


def run_validate(args: argparse.Namespace) -> int:

  path = pathlib.Path(args.file)
  if not path.is_file():
    return _error(f"{path} does not exist")
  try:
    report = read_records(path, format=args.format, allow_empty=args.allow_empty)
  except ValueError as err:  # unknown suffix
    return _error(str(err))
  if args.json:
    print(json.dumps({"source": report.source, "ok": report.ok, "num_rows": report.num_rows,
                      "num_valid": len(report.records),
                      "problems": [vars(p) for p in report.problems],
                      "warnings": [vars(w) for w in report.warnings]}, indent=2))
  else:
    print(report.format())
  return 0 if report.ok else 1


def _works(args: argparse.Namespace):

  return load_dataset_works(args.data_dir, include_structural=args.include_structural)


def run_summary(args: argparse.Namespace) -> int:

  num_groups = args.num_groups if args.num_groups is not None else _default_num_groups()
  if num_groups < 1:
    return _error(f"--num-groups must be >= 1, got {num_groups}")
  try:
    policy = load_policy(args.policy)
    if args.records:
      records, work_ids = load_records(args.records), None
    else:
      try:
        works = _works(args)
      except FileNotFoundError as err:
        return _error(f"{err}\n(prepare the data with `govjax prepare chorales`, or pass --records FILE)")
      records = resolve_records(args.scenario or "default", works, seed=args.seed)
      work_ids = [w.work_id if hasattr(w, "work_id") else w["work_id"] for w in works]
    decisions = apply_policy(records, policy, num_groups, work_ids=work_ids)
  except (RecordValidationError, PolicyError, FileNotFoundError) as err:
    return _error(str(err))
  if args.json:
    print(json.dumps({"summary": decisions.summary(), "exclusions": decisions.exclusion_report.to_dict()},
                     indent=2))
  else:
    print(decisions.format_summary())
  return 0


def run_scenario(args: argparse.Namespace) -> int:

  try:
    works = _works(args)
  except FileNotFoundError as err:
    return _error(f"{err}\n(prepare the data with `govjax prepare chorales` first)")
  try:
    records = resolve_records(args.kind, works, seed=args.seed)
    save_records(records, args.out)
  except ValueError as err:
    return _error(str(err))
  simulated = sum(r.simulated for r in records)
  print(f"wrote {len(records)} records ({simulated} simulated, scenario "
        f"{'default-v1 seed=' + str(args.seed) if args.kind == 'default' else 'real'}) to {args.out}")
  return 0


def run_policy(args: argparse.Namespace) -> int:

  text = policy_to_json(default_policy(strict_encodings=args.strict_encodings)) + "\n"
  if args.out:
    pathlib.Path(args.out).write_text(text)
    print(f"wrote the default policy to {args.out}")
  else:
    print(text, end="")
  return 0
