"""``govjax lookup WORK_FILE [--manifest PATH] [--workdir DIR] [--json]``: is this work in the training set?

For rights holders: given a MusicXML / MIDI / ABC / Humdrum file (or an image / text), says whether it or a
near-copy is documented in the manifest, which record, at which tier it matched, the treatment it received
(excluded / depth d / region), and with ``--workdir`` the trained model's audit results
(``audit/per_work.jsonl``) and how many lineage files of generated outputs (``provenance/lineage/*.json``) list
it. Uses only the manifest (see :mod:`govjax.documentation.lookup`); ``--manifest`` defaults to
``WORKDIR/manifest`` with ``--workdir``, else ``./manifest``. Exit code 0 when found, 1 when not found, 2 on
errors.

Example::

    govjax lookup my_chorale.mid --workdir runs/chorales --json
"""

from __future__ import annotations

import argparse
import json
import sys

from govjax.documentation.lookup import ManifestIndex, QueryError, lookup_file
from govjax.documentation.manifest import ManifestError, load_manifest

DEFAULT_MANIFEST = "manifest"


def register(subparsers) -> None:
  parser = subparsers.add_parser("lookup", help="look a work file up in the training-set manifest")
  parser.add_argument("work_file", metavar="WORK_FILE",
                      help="MusicXML / MIDI / ABC / Humdrum, image or text file")
  parser.add_argument("--manifest", default=None,
                      help=f"manifest directory or croissant.json (default: WORKDIR/{DEFAULT_MANIFEST} or "
                           f"./{DEFAULT_MANIFEST})")
  parser.add_argument("--workdir", default=None,
                      help="training run directory (audit/per_work.jsonl, provenance/lineage/*.json)")
  parser.add_argument("--near-copy-threshold", type=float, default=0.45, help="minimum estimated Jaccard")
  parser.add_argument("--melody-threshold", type=float, default=0.5, help="minimum melody Jaccard to report")
  parser.add_argument("--exhaustive", action="store_true", help="score every record, not only LSH candidates")
  parser.add_argument("--json", action="store_true", help="print the result as JSON")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

  try:
    manifest = args.manifest or (f"{args.workdir}/{DEFAULT_MANIFEST}" if args.workdir else DEFAULT_MANIFEST)
    index = ManifestIndex(load_manifest(manifest), near_copy_threshold=args.near_copy_threshold,
                          melody_threshold=args.melody_threshold)
    result = lookup_file(args.work_file, index, workdir=args.workdir, exhaustive=args.exhaustive)
  except (ManifestError, QueryError, ValueError) as error:
    print(f"govjax lookup: error: {error}", file=sys.stderr)
    return 2
  print(json.dumps(result.to_json(), sort_keys=True) if args.json else result.format())
  return 0 if result.found else 1
