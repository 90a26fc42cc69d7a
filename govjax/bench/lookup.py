"""Rights-holder lookup: recall on transformed corpus works, false positives on held-out works, speed, size.

Protocol (``govjax bench lookup --json [--max-works N]``):

1. Parse the four-voice Bach chorales of music21's corpus (one file per work id, .mxl preferred; at most
   ``--max-works``, chosen at random with ``--seed``), with at most 2 processes.
2. Hold out a random ``--holdout-fraction`` of them; build the manifest (tiers 1-3, Croissant) of the others,
   write it, and load it back: lookups use the manifest files only.
3. Query every manifest work under five transformations, each written to a file and parsed back with music21:
   ``transpose`` (+-1..6 semitones, MusicXML), ``time_scale`` (durations x2 or x0.5, MusicXML), ``midi``
   (MIDI round trip), ``edit`` (``--edits`` notes moved by 1-2 semitones, MusicXML) and ``combined`` (all of
   them, as MIDI). ``recall_transformed`` = fraction of these queries whose true work is among the matches at
   tier 2a / 2b / near-copy level.
4. Distinct-work queries: every held-out work as parsed, under the ``combined`` transformation (file round
   trip) and transposed / time-scaled / edited in memory; then, roles swapped, every documented work as parsed
   and transposed / time-scaled / edited in memory against a manifest of the held-out works; and every
   four-voice work of ``--other-composers`` (default: Palestrina, whose masses and motets fill 1318 corpus files;
   at most ``--max-other-works``) as parsed and transposed / time-scaled / edited in memory against the manifest
   of the documented Bach works. A near-copy
   match of a distinct-work query is a false positive unless the two works are verified duplicates of each
   other in the corpus (the same chorale re-used in several cantatas, or two editions), by checks independent
   of the fingerprints: at least half of the notes coincide (:func:`note_overlap`) or the voices' interval
   sequences align (:func:`voice_alignment` >= 0.7). Matches of the highest voice only (``same-melody``: Bach
   re-harmonised many chorale tunes several times) are reported separately and are not false positives: the
   near-copy level compares all voices.

``false_positive_rate_upper95`` is the one-sided 95% Clopper-Pearson bound given ``distinct_work_queries``
(queries of one work are not independent draws, so read it as indicative).

Timings: ``lookup_ms`` is the median time to fingerprint a parsed query and search the index; ``parse_ms`` the
median music21 parse of a query file (measured in the worker processes); ``lookup_with_parse_ms`` their sum per
query file; ``search_ms`` the index search alone.

Runtime: the full corpus (407 Bach works, plus 515 four-voice Palestrina works as distinct-work queries) took
10.0 min wall on a 2-core machine: 5.1 min parsing the corpora with music21, 3.3 min writing and parsing the
query files, 1.6 min fingerprinting and searching; ``--max-works N`` and ``--max-other-works N`` scale it down
about linearly.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import difflib
import functools
import hashlib
import multiprocessing
import pathlib
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from govjax.data.corpus import WorkSkipped, select_satb_parts
from govjax.data.scenario import real_records
from govjax.documentation import music_fingerprint as mf
from govjax.documentation.duplicates import find_duplicates
from govjax.documentation.lookup import ManifestIndex, false_positive_bound
from govjax.documentation.manifest import Manifest, build_records, load_manifest, write_manifest
from govjax.documentation.text_fingerprint import TextFingerprintConfig
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import default_policy

TRANSFORMS = ("transpose", "time_scale", "midi", "edit", "combined")
_FORMAT_PREFERENCE = (".mxl", ".musicxml", ".xml", ".krn")




# ------------------------------------------------------------------------------------------ corpus


def corpus_paths(composer: str = "bach") -> list[pathlib.Path]:
  """One file per work of ``composer`` in music21's corpus (.mxl > .musicxml > .xml > .krn), sorted."""
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  by_id: dict[str, pathlib.Path] = {}
  for path in sorted(pathlib.Path(p) for p in music21.corpus.getComposer(composer)):
    if path.suffix.lower() not in _FORMAT_PREFERENCE:
      continue
    current = by_id.get(path.stem)
    if current is None or _FORMAT_PREFERENCE.index(path.suffix.lower()) < _FORMAT_PREFERENCE.index(
        current.suffix.lower()):
      by_id[path.stem] = path
  return [by_id[k] for k in sorted(by_id)]


def parse_corpus_work(path: str, composer: str = "bach") -> tuple[str, Any, str]:
  """``(work_id, (source_path, sha256, NoteList) or None, skip reason)`` of one corpus file (4 voices)."""
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  path_ = pathlib.Path(path)
  work_id = f"{composer}/{path_.stem}"
  try:
    score = music21.converter.parse(path_)
  except Exception as error:  # music21 raises many exception types
    return work_id, None, f"unparsable: {type(error).__name__}"
  if not isinstance(score, music21.stream.Score):
    return work_id, None, "not a score"
  try:

    try:
      score = select_satb_parts(score)[0]
    except WorkSkipped as skip:
      return work_id, None, skip.reason
  except ImportError:
    if len(score.parts) != 4:
      return work_id, None, "not four voices"
  notes = mf.notes_from_score(score)
  if notes.num_voices != 4 or not notes.notes:
    return work_id, None, "not four voices"
  sha = hashlib.sha256(path_.read_bytes()).hexdigest()
  return work_id, (f"{composer}/{path_.name}", sha, notes), ""


# ---------------------------------------------------------------------------------------- transforms


def transpose_notes(notes: Sequence[mf.Note], semitones: int) -> list[mf.Note]:
  return [dataclasses.replace(n, pitch=n.pitch + semitones) for n in notes]


def scale_notes(notes: Sequence[mf.Note], factor: Fraction) -> list[mf.Note]:
  return [dataclasses.replace(n, onset=n.onset * factor, duration=n.duration * factor) for n in notes]


def edit_notes(notes: Sequence[mf.Note], count: int, rng: random.Random) -> list[mf.Note]:
  """Moves ``count`` random notes by 1 or 2 semitones up or down."""
  notes = list(notes)
  for i in rng.sample(range(len(notes)), min(count, len(notes))):
    notes[i] = dataclasses.replace(notes[i], pitch=notes[i].pitch + rng.choice((-2, -1, 1, 2)))
  return notes


def transform(notes: Sequence[mf.Note], name: str, rng: random.Random, *,
              edits: int) -> tuple[list[mf.Note], str]:
  """``(transformed notes, file format)`` for one of :data:`TRANSFORMS`."""
  shift = rng.choice([s for s in range(-6, 7) if s])
  if name == "transpose":
    return transpose_notes(notes, shift), "musicxml"
  if name == "time_scale":
    return scale_notes(notes, rng.choice((Fraction(2), Fraction(1, 2)))), "musicxml"
  if name == "midi":
    return list(notes), "midi"
  if name == "edit":
    return edit_notes(notes, edits, rng), "musicxml"
  if name == "combined":
    return scale_notes(edit_notes(transpose_notes(notes, shift), edits, rng), Fraction(2)), "midi"
  raise ValueError(f"unknown transformation {name!r}")


def make_query(notes: Sequence[mf.Note], fmt: str, path: str) -> tuple[mf.NoteList, float]:
  """Writes ``notes`` as MusicXML / MIDI at ``path`` and parses it back: ``(notes, parse seconds)``."""
  suffix = ".musicxml" if fmt == "musicxml" else ".mid"
  target = str(pathlib.Path(path).with_suffix(suffix))
  mf.score_from_notes(notes).write(fmt, fp=target)
  start = time.perf_counter()
  parsed = mf.notes_from_file(target)
  return parsed, time.perf_counter() - start


def note_overlap(a: Sequence[mf.Note], b: Sequence[mf.Note]) -> float:
  """Fraction of notes shared by two pieces (onset from the first note and durations in median-duration units,
  pitch after the best transposition), relative to the smaller piece. Independent of the fingerprints."""

  def canon(notes: Sequence[mf.Note]) -> set[tuple[Fraction, int, Fraction]]:
    origin = min(n.onset for n in notes)
    unit = statistics.median_low(sorted(n.duration for n in notes))
    return {((n.onset - origin) / unit, n.pitch, n.duration / unit) for n in notes}

  ca, cb = canon(a), canon(b)
  best = 0
  for shift in range(-12, 13):
    best = max(best, len(ca & {(o, p + shift, d) for o, p, d in cb}))
  return best / max(1, min(len(ca), len(cb)))


def voice_alignment(a: mf.NoteList, b: mf.NoteList) -> float:
  """Mean over voices of the ordered alignment ratio (``difflib``) of the voices' pitch-interval sequences.

  Transposition- and rhythm-invariant and robust to inserted or held notes (fermatas, repeats) that shift all
  later onsets; independent of the fingerprints (no shingles or MinHash). Unrelated chorales score about 0.33
  (99th percentile 0.47 on music21's Bach chorales); copies and re-used harmonisations score >= 0.7.
  """

  def lines(note_list: mf.NoteList) -> list[list[int]]:
    by_voice: dict[int, dict] = {}
    for note in note_list.notes:
      by_voice.setdefault(note.voice, {}).setdefault(note.onset, note.pitch)
    return [[line[o] for o in sorted(line)] for _, line in sorted(by_voice.items())]

  ratios = []
  for x, y in zip(lines(a), lines(b), strict=False):
    ix, iy = [q - p for p, q in zip(x, x[1:], strict=False)], [q - p for p, q in zip(y, y[1:], strict=False)]
    ratios.append(difflib.SequenceMatcher(None, ix, iy, autojunk=False).ratio())
  return statistics.fmean(ratios) if ratios else 0.0


def verified_duplicates(a: mf.NoteList, b: mf.NoteList) -> tuple[bool, float, float]:
  """``(duplicate, note_overlap, voice_alignment)``: duplicate when half the notes coincide
  (:func:`note_overlap` >= 0.5) or the voices align (:func:`voice_alignment` >= 0.7)."""
  overlap, alignment = note_overlap(a.notes, b.notes), voice_alignment(a, b)
  return overlap >= 0.5 or alignment >= 0.7, overlap, alignment


# ------------------------------------------------------------------------------------------- the run


def _pool(workers: int) -> concurrent.futures.Executor:
  context = multiprocessing.get_context("spawn")
  return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)


def _parse_works(args: argparse.Namespace, rng: random.Random, composer: str = "bach",
                 max_works: int | None = None) -> tuple[dict, dict[str, int]]:
  """Parses ``composer``'s corpus works (in worker processes) until ``max_works`` are kept."""
  paths = corpus_paths(composer)
  rng.shuffle(paths)
  works: dict[str, tuple[str, str, mf.NoteList]] = {}
  skipped: dict[str, int] = {}
  with _pool(args.workers) as pool:
    chunk = len(paths) if max_works is None else max(8, int(max_works * 1.2))
    position = 0
    while position < len(paths) and (max_works is None or len(works) < max_works):
      batch = [str(p) for p in paths[position:position + chunk]]
      position += len(batch)
      for work_id, parsed, reason in pool.map(functools.partial(parse_corpus_work, composer=composer), batch,
                                              chunksize=4):
        if parsed is None:
          skipped[reason] = skipped.get(reason, 0) + 1
        elif max_works is None or len(works) < max_works:
          works[work_id] = parsed
  return works, skipped


def _records(works: dict, ids: Sequence[str]) -> list[dict[str, Any]]:
  """Manifest records (tiers 1-3, real rights records, default policy) of ``ids``."""
  inputs = [{"work_id": w, "title": pathlib.PurePosixPath(works[w][0]).stem, "composer": "J. S. Bach",
             "collection": "music21 corpus: bach", "source_path": works[w][0], "sha256": works[w][1],
             "notes": works[w][2], "split": "train", "modality": "music"} for w in ids]

  rights = real_records(inputs)
  treatments = {row["work_id"]: row for row in apply_policy(rights, default_policy(), 6).rows()}
  return build_records(inputs, rights={r.work_id: r for r in rights}, treatments=treatments, num_groups=6)


def _in_memory_manifest(records: list[dict[str, Any]]) -> Manifest:
  """A manifest of ``records`` with the default fingerprint parameters, not written to disk."""
  return Manifest({}, records, mf.FingerprintConfig(), TextFingerprintConfig(), pathlib.Path("."))


def _memory_variants(works: dict, ids: Sequence[str], rng: random.Random, edits: int) -> list[tuple]:
  """Distinct-work queries without a file round trip: each work as parsed, transposed, time-scaled, edited."""
  queries = []
  for work_id in ids:
    note_list = works[work_id][2]
    queries.append((work_id, "as_parsed", note_list, works[work_id][1]))
    for name in ("transpose", "time_scale", "edit"):
      notes, _ = transform(note_list.notes, name, rng, edits=edits)
      queries.append((work_id, name + "_in_memory", mf.NoteList(tuple(notes), note_list.num_voices), None))
  return queries


def run(args: argparse.Namespace) -> dict:
  t_start = time.perf_counter()
  rng = random.Random(args.seed)
  works, skipped = _parse_works(args, rng, "bach", args.max_works)
  others, others_skipped = {}, {}
  for composer in filter(None, (c.strip() for c in args.other_composers.split(","))):
    parsed_others, skipped_others = _parse_works(args, rng, composer, args.max_other_works)
    others.update(parsed_others)
    others_skipped[composer] = skipped_others
  ids = sorted(works)
  rng.shuffle(ids)
  num_holdout = int(round(len(ids) * args.holdout_fraction))
  holdout, documented = sorted(ids[:num_holdout]), sorted(ids[num_holdout:])
  t_parsed = time.perf_counter()

  # Manifest of the documented works, written and loaded back (lookups see only the manifest files).
  records = _records(works, documented)
  duplicates = find_duplicates(records)
  thresholds = {"near_copy_threshold": args.near_copy_threshold, "melody_threshold": args.melody_threshold}
  with tempfile.TemporaryDirectory() as tmp:
    paths_written = write_manifest(pathlib.Path(tmp) / "manifest", records, duplicates=duplicates.to_json(),
                                   name="bench-lookup", description="lookup benchmark manifest",
                                   url="urn:govjax:bench:lookup", date_published="2000-01-01")
    manifest_bytes = paths_written.total_bytes()
    index = ManifestIndex(load_manifest(paths_written.croissant.parent), **thresholds)

    # Query files, written and parsed in worker processes.
    jobs = []
    for work_id in documented:
      for name in TRANSFORMS:
        notes, fmt = transform(works[work_id][2].notes, name, rng, edits=args.edits)
        jobs.append(("documented", work_id, name, notes, fmt))
    for work_id in holdout:
      notes, fmt = transform(works[work_id][2].notes, "combined", rng, edits=args.edits)
      jobs.append(("holdout", work_id, "combined", notes, fmt))
    with _pool(args.workers) as pool:
      futures = [pool.submit(make_query, notes, fmt, f"{tmp}/q{i}")
                 for i, (_, _, _, notes, fmt) in enumerate(jobs)]
      parsed = [f.result() for f in futures]
  t_queries = time.perf_counter()
  queries = [(index, kind, work_id, name, note_list, parse_s, None)
             for (kind, work_id, name, _, _), (note_list, parse_s) in zip(jobs, parsed, strict=True)]
  queries += [(index, "holdout", w, name, notes, None, sha)
              for w, name, notes, sha in _memory_variants(works, holdout, rng, args.edits)]
  # Roles swapped: the documented works queried against a manifest of the held-out works.
  swapped = ManifestIndex(_in_memory_manifest(_records(works, holdout)), **thresholds)
  queries += [(swapped, "holdout", w, name, notes, None, sha)
              for w, name, notes, sha in _memory_variants(works, documented, rng, args.edits)]
  # Works of other composers (never documented) against the manifest of the documented Bach works.
  queries += [(index, "holdout", w, "other_" + name, notes, None, sha)
              for w, name, notes, sha in _memory_variants(others, sorted(others), rng, args.edits)]
  every_work = {**works, **others}

  lookup_s, search_s, with_parse_s, candidates = [], [], [], []
  hits = {name: [] for name in TRANSFORMS}
  top1, tiers = [], {}
  holdout_results = []
  for query_index, kind, work_id, name, note_list, parse_s, source_sha in queries:
    start = time.perf_counter()
    fingerprint = mf.fingerprint_notes(note_list, query_index.manifest.music_config)
    mid = time.perf_counter()
    matches, same = query_index.search_music(fingerprint, source_sha256=source_sha)
    end = time.perf_counter()
    if query_index is index:
      lookup_s.append(end - start)
      search_s.append(end - mid)
      candidates.append(len(index.music_candidates(fingerprint)))
      if parse_s is not None:
        with_parse_s.append(parse_s + end - start)
    if kind == "documented":
      found = [m for m in matches if m.work_id == work_id]
      hits[name].append(bool(found))
      top1.append(bool(matches) and matches[0].work_id == work_id)
      if found:
        tiers[found[0].tier] = tiers.get(found[0].tier, 0) + 1
    else:
      holdout_results.append((work_id, name, matches, same))

  false_raw, false_verified, verified, unverified = 0, 0, [], []
  same_melody_queries, same_melody_examples = 0, set()
  by_variant: dict[str, list[int]] = {}
  for work_id, name, matches, same in holdout_results:
    count = by_variant.setdefault(name, [0, 0])
    count[1] += 1
    if matches:
      false_raw += 1
      checks = {m.work_id: verified_duplicates(every_work[work_id][2], every_work[m.work_id][2]) for m in matches}
      rows = [[work_id, name, m, round(c[1], 3), round(c[2], 3)] for m, c in checks.items()]
      if all(c[0] for c in checks.values()):
        verified += rows
      else:
        false_verified += 1
        count[0] += 1
        unverified += [r for r, c in zip(rows, checks.values(), strict=True) if not c[0]]
    elif same:
      same_melody_queries += 1
      same_melody_examples.update((work_id, m.work_id) for m in same)
  num_distinct = len(holdout_results)
  all_hits = [h for name in TRANSFORMS for h in hits[name]]
  return {
      "num_works": len(works),
      "num_documented": len(documented),
      "num_holdout": len(holdout),
      "skipped_files": skipped,
      "recall_transformed": sum(all_hits) / max(1, len(all_hits)),
      "recall_by_transform": {name: sum(h) / max(1, len(h)) for name, h in hits.items()},
      "transformed_queries": len(all_hits),
      "recall_top1": sum(top1) / max(1, len(top1)),
      "matched_tier_counts": tiers,
      "false_positive_rate": false_verified / max(1, num_distinct),
      "false_positive_rate_upper95": false_positive_bound(num_distinct, false_verified),
      "false_positive_queries": false_verified,
      "false_positive_rate_raw": false_raw / max(1, num_distinct),
      "distinct_work_queries": num_distinct,
      "distinct_queries_by_variant": {k: {"false_positives": v[0], "queries": v[1]}
                                      for k, v in sorted(by_variant.items())},
      "distinct_pairs_compared": (len(holdout) * 5 * len(documented) + len(documented) * 4 * len(holdout)
                                  + len(others) * 4 * len(documented)),
      "other_composer_works": len(others),
      "other_composer_skipped": others_skipped,
      "distinct_verified_corpus_duplicates": sorted({(r[0], r[2], r[3], r[4]) for r in verified}),
      "distinct_unverified_matches": unverified,
      "holdout_same_melody_queries": same_melody_queries,
      "holdout_same_melody_pairs": sorted(same_melody_examples)[:20],
      "manifest_duplicate_pairs": duplicates.counts(),
      "lookup_ms": 1000 * statistics.median(lookup_s),
      "lookup_with_parse_ms": 1000 * statistics.median(with_parse_s),
      "search_ms": 1000 * statistics.median(search_s),
      "parse_ms": 1000 * statistics.median(q[5] for q in queries if q[5] is not None),
      "lsh_candidates_mean": statistics.fmean(candidates),
      "manifest_bytes_per_work": manifest_bytes / max(1, len(documented)),
      "thresholds": {"near_copy": args.near_copy_threshold, "same_melody": args.melody_threshold,
                     "edits": args.edits},
      "seed": args.seed,
      "timings_s": {"parse_corpus": t_parsed - t_start, "manifest_and_query_files": t_queries - t_parsed,
                    "lookups": time.perf_counter() - t_queries},
      "wall_s": time.perf_counter() - t_start,
  }
