"""``govjax manifest``: the training-set manifest (Croissant 1.1 + tiered records + duplicate report).

Two sources of works and treatments:

- ``--workdir RUN``: a training run. Its ``config.json`` rebuilds the run's training data
  (``govjax.train.data.build_training_data``), so every work's treatment is the one the run applied (excluded
  with reason / depth d / region); writes ``RUN/manifest/`` (:mod:`govjax.documentation.run_manifest`).
- otherwise the dataset alone: the prepared chorales of ``--data-dir`` (``govjax prepare chorales``), or with
  ``--from-corpus`` straight from music21's corpus. Rights records: ``--records real`` (the works' actual
  metadata, the default), ``default`` (the simulated scenario) or a JSON Lines / CSV file; ``--policy``
  decides each training work's treatment (:mod:`govjax.documentation.dataset_manifest`). Writes ``--out``
  (default ``./manifest``).

Example::

    govjax manifest --workdir runs/chorales          # -> runs/chorales/manifest/
    govjax manifest --data-dir ~/data --out manifest
    govjax lookup my_chorale.mid --manifest runs/chorales/manifest --workdir runs/chorales
"""

from __future__ import annotations

import argparse
import json
import sys

from govjax.core import config as train_config
from govjax.core.config import ModelSpec
from govjax.data.chorales import load_chorale_works
from govjax.data.corpus import collect_works
from govjax.data.scenario import load_dataset_works, resolve_records
from govjax.data.structural import structural_works
from govjax.documentation.dataset_manifest import build_dataset_manifest
from govjax.documentation.manifest import ManifestError
from govjax.documentation.run_manifest import build_run_manifest
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import PolicyError, load_policy
from govjax.rights.records import RecordValidationError
from govjax.train import data as training_data
from govjax.train.data import load_works


def _default_num_groups() -> int:

  return ModelSpec().num_layers + 2


def register(subparsers) -> None:
  parser = subparsers.add_parser("manifest",
                                 help="write the training-set manifest (Croissant 1.1, tiers 1-3)")
  parser.add_argument("--workdir", default=None,
                      help="training run directory: document the run's works and treatments in WORKDIR/manifest")
  parser.add_argument("--out", default=None, help="output directory (default: WORKDIR/manifest or ./manifest)")
  parser.add_argument("--data-dir", default=None,
                      help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.add_argument("--from-corpus", action="store_true",
                      help="parse music21's corpus directly instead of reading the prepared data")
  parser.add_argument("--max-works", type=int, default=None,
                      help="with --from-corpus: at most this many works")
  parser.add_argument("--records", default="real",
                      help="rights records: 'real', 'default' (simulated scenario) or a .jsonl/.csv file")
  parser.add_argument("--seed", type=int, default=0, help="seed of the simulated scenario")
  parser.add_argument("--policy", default="default", help="policy: 'default' or a .json/.py file")
  parser.add_argument("--num-groups", type=int, default=None,
                      help="model depth groups L = num_layers + 2 (default: the default model's)")
  parser.add_argument("--include-structural", action="store_true", help="add the generated structural works")
  parser.add_argument("--fingerprint-from", choices=("source", "tokens"), default="source",
                      help="fingerprint the source files' SATB voices (default) or the tokens")
  parser.add_argument("--workers", type=int, default=2, help="parsing processes (default 2)")
  parser.add_argument("--name", default="govjax-chorales", help="dataset name")
  parser.add_argument("--version", default="1.0.0", help="dataset version")
  parser.add_argument("--url", default=None, help="dataset URL (default: a urn:govjax: URN)")
  parser.add_argument("--date", default=None, help="datePublished (ISO date; default today)")
  parser.add_argument("--json", action="store_true", help="print the summary as JSON")
  parser.set_defaults(func=run)


def _works_by_split(args: argparse.Namespace) -> dict[str, list]:
  if args.from_corpus:

    parsed, report = collect_works(max_works=args.max_works, num_workers=max(1, min(args.workers, 2)),
                                   progress=not args.json)
    print(f"corpus: kept {report.kept} works, skipped {report.counts_by_reason()}", file=sys.stderr)
    by_split: dict[str, list] = {}
    for item in parsed:
      by_split.setdefault(item.split, []).append(item.work)
  else:

    by_split = {split: load_chorale_works(args.data_dir, split) for split in ("train", "validation", "test")}
  if args.include_structural:

    by_split.setdefault("train", []).extend(structural_works())
  return by_split


def _run_manifest(args: argparse.Namespace, out: str) -> dict:
  import pathlib


  workdir = pathlib.Path(args.workdir)
  config_file = workdir / "config.json"
  if not config_file.is_file():
    raise FileNotFoundError(f"{workdir} is not a govjax run directory (no config.json)")
  saved = json.loads(config_file.read_text())
  config = train_config.from_dict(saved.get("config", saved))

  try:
    data = training_data.build_training_data(config)
  except NotImplementedError as error:
    raise ValueError(f"the run's training data cannot be rebuilt yet ({error})") from error
  reasons = None if getattr(data, "treatments", None) else _policy_reasons(config, data)
  chash = saved.get("config_hash") or train_config.config_hash(config)
  return build_run_manifest(
      out, data, other_works=_other_works(config, data), reasons=reasons, fingerprint_from=args.fingerprint_from,
      num_workers=max(1, min(args.workers, 2)), name=f"{args.name}-run-{chash}", version=args.version,
      url=args.url or f"urn:govjax:run:{chash}", date_published=args.date)


def _policy_reasons(config, data) -> dict | None:
  """Rule / reason text of every work from the run's policy (None when the policy cannot be applied)."""

  try:
    decisions = apply_policy(list(data.records.values()), load_policy(config.governance.policy), data.num_groups)
  except (PolicyError, ValueError, FileNotFoundError) as error:
    print(f"govjax manifest: note: treatment reasons not available ({error})", file=sys.stderr)
    return None
  return {row["work_id"]: row for row in decisions.rows()}


def _other_works(config, data) -> list:
  """Content of the works with a record that were neither trained nor held out (excluded, test split)."""
  present = {w.work_id for w in data.works} | {w.work_id for w in (data.heldout_works or [])}
  wanted = set(data.records) - present
  if not wanted:
    return []
  try:

    works = [w for split in load_works(config).values() for w in split]
  except ImportError:

    try:
      works = load_dataset_works(config.data_dir, include_structural=config.governance.include_structural)
    except FileNotFoundError as error:
      print(f"govjax manifest: note: {len(wanted)} works documented without content ({error})", file=sys.stderr)
      return []
  except FileNotFoundError as error:
    print(f"govjax manifest: note: {len(wanted)} works documented without content ({error})", file=sys.stderr)
    return []
  return [w for w in works if w.work_id in wanted]


def run(args: argparse.Namespace) -> int:

  num_groups = args.num_groups if args.num_groups is not None else _default_num_groups()
  out = args.out or (f"{args.workdir}/manifest" if args.workdir else "manifest")
  try:
    if args.workdir:
      summary = _run_manifest(args, out)
    else:
      works_by_split = _works_by_split(args)
      works = [w for split in works_by_split.values() for w in split]
      rights = resolve_records(args.records, works, seed=args.seed)
      summary = build_dataset_manifest(
          out, works_by_split, rights=rights, policy=args.policy, num_groups=num_groups,
          fingerprint_from=args.fingerprint_from, num_workers=max(1, min(args.workers, 2)), name=args.name,
          version=args.version, url=args.url, date_published=args.date)
  except FileNotFoundError as error:  # includes the data module's DataNotPreparedError
    print(f"govjax manifest: error: {error}\n(prepare the data with `govjax prepare chorales`, pass "
          "--from-corpus, or give a run directory with --workdir)", file=sys.stderr)
    return 2
  except (ManifestError, PolicyError, RecordValidationError, ValueError) as error:
    print(f"govjax manifest: error: {error}", file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps(summary, sort_keys=True))
  else:
    print(f"manifest: {summary['croissant']} ({summary['num_works']} works, "
          f"{summary['bytes_per_work']:.0f} bytes/work)")
    print(f"  by split: {summary['by_split']}; treatments: {summary['by_treatment_status']}")
    print(f"  fingerprinted from: {summary['fingerprint_sources']}")
    print(f"  duplicate pairs ({summary['duplicates_scope']}): {summary['duplicate_pairs']}")
    for group in summary["near_copy_groups"]:
      print(f"  near-copy group: {', '.join(group)}")
  return 0
