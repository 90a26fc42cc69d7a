"""``govjax lookup WORK_FILE [--manifest PATH] [--workdir DIR] [--json]``: is this work in the training set?

For rights holders: given a MusicXML / MIDI / ABC / Humdrum file (or an image / text), says whether it, a
near-copy or a partial copy of it (an excerpt, some of its voices, or the work with added parts; the matched bars
and voices named) is documented in the manifest, which documented works set the same tune, at which tier each
matched, the treatment each received (excluded / depth d / region), and with ``--workdir`` the trained model's
audit results (``audit/per_work.jsonl``) and how many lineage files of generated outputs
(``provenance/lineage/*.json``) list it. Uses only the manifest (see :mod:`govjax.documentation.lookup`);
``--manifest`` defaults to ``WORKDIR/manifest`` with ``--workdir``, else ``./manifest``. Exit code 0 when found,
1 when not found, 2 on errors.

Example::

    govjax lookup my_chorale.mid --workdir runs/chorales --json
"""

from __future__ import annotations

import argparse
import json
import sys

from govjax.commands.arguments import DEFAULT_MANIFEST
from govjax.documentation.lookup import ManifestIndex, QueryError, lookup_file
from govjax.documentation.manifest import ManifestError, load_manifest


def run(args: argparse.Namespace) -> int:

  try:
    manifest = args.manifest or (f"{args.workdir}/{DEFAULT_MANIFEST}" if args.workdir else DEFAULT_MANIFEST)
    index = ManifestIndex(load_manifest(manifest), near_copy_threshold=args.near_copy_threshold,
                          melody_threshold=args.melody_threshold, copy_threshold=args.copy_threshold,
                          partial_threshold=args.partial_threshold,
                          one_voice_threshold=args.one_voice_threshold)
    result = lookup_file(args.work_file, index, workdir=args.workdir, exhaustive=args.exhaustive)
  except (ManifestError, QueryError, ValueError) as error:
    print(f"govjax lookup: error: {error}", file=sys.stderr)
    return 2
  print(json.dumps(result.to_json(), sort_keys=True) if args.json else result.format())
  return 0 if result.found else 1
