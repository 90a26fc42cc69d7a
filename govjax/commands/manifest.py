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

Either way every documented work is fingerprinted, opted-out and excluded ones included, so that ``govjax
lookup`` finds a copy of any of them. This module only parses and prints; the work is done by
:func:`~govjax.documentation.run_manifest.document_run` and
:func:`~govjax.documentation.dataset_manifest.document_dataset`.

Example::

    govjax manifest --workdir runs/chorales          # -> runs/chorales/manifest/
    govjax manifest --data-dir ~/data --out manifest
    govjax lookup my_chorale.mid --manifest runs/chorales/manifest --workdir runs/chorales
"""

from __future__ import annotations

import argparse
import json
import sys

from govjax.core.errors import UserError
from govjax.documentation.dataset_manifest import document_dataset
from govjax.documentation.run_manifest import document_run, load_run_config
from govjax.rights.policy import PolicyError
from govjax.rights.records import RecordValidationError
from govjax.train import data as training_data


def _run_manifest(args: argparse.Namespace, out: str) -> dict:
  """The manifest of the run in ``--workdir`` (the training data are rebuilt from its config)."""
  config, config_hash = load_run_config(args.workdir)  # NotARunError / RunFileError name the file at fault
  data = training_data.build_training_data(config)
  return document_run(out, config, data.catalogue, training_data.load_works(config), config_hash=config_hash,
                      fingerprint_from=args.fingerprint_from, num_workers=args.workers,
                      name=args.name, version=args.version, url=args.url, date_published=args.date)


def run(args: argparse.Namespace) -> int:
  out = args.out or (f"{args.workdir}/manifest" if args.workdir else "manifest")
  try:
    if args.workdir:
      summary = _run_manifest(args, out)
    else:
      summary = document_dataset(
          out, data_dir=args.data_dir, from_corpus=args.from_corpus, max_works=args.max_works,
          include_structural=args.include_structural, records=args.records, seed=args.seed, policy=args.policy,
          num_groups=args.num_groups, fingerprint_from=args.fingerprint_from,
          num_workers=args.workers, name=args.name, version=args.version, url=args.url,
          date_published=args.date, progress=not args.json)
  except FileNotFoundError as error:  # includes the data module's DataNotPreparedError
    print(f"govjax manifest: error: {error}\n(prepare the data with `govjax prepare chorales`, pass "
          "--from-corpus, or give a run directory with --workdir)", file=sys.stderr)
    return 2
  except (UserError, PolicyError, RecordValidationError, ValueError) as error:
    print(f"govjax manifest: error: {error}", file=sys.stderr)
    return 2
  if "corpus" in summary:
    print(f"corpus: kept {summary['corpus']['kept']} works, skipped {summary['corpus']['skipped']}",
          file=sys.stderr)
  for note in summary.get("notes", []):
    print(f"govjax manifest: note: {note}", file=sys.stderr)
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
