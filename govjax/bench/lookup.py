"""Rights-holder lookup: recall on transformed corpus works, false positives on held-out works, speed, size.

Protocol (``govjax bench lookup --json [--max-works N]``):

1. Parse the four-voice Bach chorales of music21's corpus (one file per work id, .mxl preferred; at most
   ``--max-works``, chosen at random with ``--seed``), with at most 2 processes.
2. Hold out a random ``--holdout-fraction`` of them; build the manifest (tiers 1-3, Croissant) of the others,
   write it, and load it back: lookups use the manifest files only.
3. Query every manifest work under each family of :data:`govjax.documentation.music_transforms.FAMILIES`,
   written to a file (MusicXML or MIDI) and parsed back with music21: whole-work copies (``transpose``,
   ``time_scale``, ``midi``, ``edit`` (``--edits`` notes moved by 1-2 semitones), ``combined``,
   ``pitch_edits_10`` (10% of the notes moved, transposed, MIDI), ``ornament`` (half the melodic thirds filled
   with passing notes), ``meter`` (4/4 re-timed as 5/4), ``track_merge`` (every voice in one MIDI track),
   ``track_split`` (two staves)) and partial copies (``excerpt`` (25-50% of the onsets), ``voice_subset`` (2
   or 3 voices), ``added_parts`` (1 or 2 new voices)). ``recall_by_transform``: the fraction of queries whose
   work is among the matches (tier 2a / 2b / near-copy / partial-copy); ``levels_by_transform``: at which
   level.
4. Distinct-work queries: every held-out work as parsed, under the ``combined`` transformation (file round
   trip) and under :data:`DISTINCT_VARIANTS` in memory (transposed, time-scaled, edited, an excerpt, a voice
   subset, ornamented); then, roles swapped, every documented work the same way against a manifest of the
   held-out works; and every four-voice work of ``--other-composers`` (default: Palestrina; at most
   ``--max-other-works``) against the manifest of the documented Bach works. Ground truth comes from checks
   independent of the lookup (no grams, no block counting): two works are *duplicates* (the same setting
   re-used in several cantatas, or two editions) when at least half of their notes coincide
   (:func:`~govjax.bench.lookup_truth.note_overlap`) or their voices' interval sequences align
   (:func:`~govjax.bench.lookup_truth.voice_alignment` >= 0.7); they set the *same tune* when their highest voices
   align (:func:`~govjax.bench.lookup_truth.tune_alignment` >= 0.7).
   A near-copy or partial-copy answer for a pair that is not a duplicate is a copy false positive
   (``false_positive_rate``); a same-tune answer for a pair that is neither a duplicate nor the same tune is
   a same-tune false positive (``same_tune_false_positive_rate``). Chorales that share a hymn tune are thus
   expected as same-tune answers and are never counted as copies.
5. Same tune and re-used settings: every held-out work, as parsed, against each documented work it sets the
   same tune as (``same_tune_recall``: found among the same-tune answers or matches) or duplicates
   (``reused_setting_recall``: found as a near-copy or partial copy).

6. At scale (``--distinct-works N``, :mod:`govjax.bench.lookup_distinct`; ``--distinct-only`` for it alone):
   ``N`` never-documented Essen folk songs and every chorale (leave-one-out) queried against a manifest of ``N``
   other folk songs and the chorales, with the copy and same-tune false-positive rates and their bounds, and
   the same-tune, re-used-setting and folk-variant recall on every related pair (result key
   ``distinct_works``). Parsed works are cached on disk, so a rerun is fast. ``--distinct-collection NAME``
   takes the tunes from another one-voice collection of music21's corpus (held-out data; result key
   ``distinct_works_NAME``). ``--extra-query-collections A,B`` also queries every tune of those held-out
   one-voice collections against the same manifest (result key ``distinct_works_NAME_with_A_B``; combined
   held-out counts in ``held_out_one_voice``).
7. Between four-voice works at scale (``--settings N``, :mod:`govjax.bench.lookup_settings`): ``N`` four-voice
   settings of folk tunes queried as distinct works against ``N`` other settings and the chorales, re-used
   settings (one inner line re-written) expected as copies and other settings of the same tunes as the same tune
   (result key ``four_voice_settings``); ``--settings-held-out A,B`` also sets and queries every tune of those
   held-out one-voice collections.

``*_upper95`` is the one-sided 95% Clopper-Pearson bound of a rate given its queries (queries of one work are
not independent draws, so read it as indicative).

Timings: ``lookup_ms`` is the median time to fingerprint a parsed query and search the index (``lookup_ms_p95``
its 95th percentile); ``parse_ms`` the median music21 parse of a query file (measured in the worker
processes); ``lookup_with_parse_ms`` their sum per query file; ``search_ms`` the index search alone;
``cli_lookup_s`` one ``govjax lookup`` in a fresh process, imports included (median of 3).

Runtime: the full corpus (407 Bach works, plus 515 four-voice Palestrina works as distinct-work queries) took
10.0 min wall on a 2-core machine: 5.1 min parsing the corpora with music21, 3.3 min writing and parsing the
query files, 1.6 min fingerprinting and searching; ``--max-works N`` and ``--max-other-works N`` scale it down
about linearly.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import multiprocessing
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from govjax.bench import lookup_distinct, lookup_settings
from govjax.bench.lookup_truth import (
    SAME_TUNE_ALIGNMENT,
    corpus_paths,
    parse_corpus_work,
    tune_alignment,
    verified_duplicates,
)
from govjax.data.scenario import real_records
from govjax.documentation import music_fingerprint as mf
from govjax.documentation import music_transforms as mt
from govjax.documentation.duplicates import find_duplicates
from govjax.documentation.lookup import SETTING_THRESHOLD, ManifestIndex
from govjax.documentation.lsh import false_positive_bound
from govjax.documentation.manifest import Manifest, build_records, load_manifest, write_manifest
from govjax.documentation.text_fingerprint import TextFingerprintConfig
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import default_policy

TRANSFORMS = tuple(mt.FAMILIES)
DISTINCT_VARIANTS = ("transpose", "time_scale", "edit", "excerpt", "voice_subset", "ornament")


# ---------------------------------------------------------------------------------------- transforms


def transpose_notes(notes: Sequence[mf.Note], semitones: int) -> list[mf.Note]:
  return mt.transpose(notes, semitones)


def scale_notes(notes: Sequence[mf.Note], factor: Fraction) -> list[mf.Note]:
  return mt.time_scale(notes, factor)


def transform(notes: Sequence[mf.Note], name: str, rng: random.Random, *,
              edits: int) -> tuple[list[mf.Note], str]:
  """``(transformed notes, file format)`` for one of :data:`TRANSFORMS`."""
  return mt.apply(notes, name, rng, edits=edits), mt.FAMILIES[name][0]


def make_query(notes: Sequence[mf.Note], fmt: str, path: str) -> tuple[mf.NoteList, float]:
  """Writes ``notes`` as MusicXML / MIDI at ``path`` and parses it back: ``(notes, parse seconds)``."""
  suffix = ".musicxml" if fmt == "musicxml" else ".mid"
  target = str(pathlib.Path(path).with_suffix(suffix))
  mf.score_from_notes(notes).write(fmt, fp=target)
  start = time.perf_counter()
  parsed = mf.notes_from_file(target)
  return parsed, time.perf_counter() - start


def _in_memory(notes: Sequence[mf.Note]) -> mf.NoteList:
  """A NoteList of transformed notes with voices renumbered 0..k-1."""
  voices = sorted({n.voice for n in notes})
  renumber = {v: i for i, v in enumerate(voices)}
  return mf.NoteList(tuple(dataclasses.replace(n, voice=renumber[n.voice]) for n in notes), len(voices))


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
  """Distinct-work queries without a file round trip: each work as parsed and under :data:`DISTINCT_VARIANTS`."""
  queries = []
  for work_id in ids:
    note_list = works[work_id][2]
    queries.append((work_id, "as_parsed", note_list, works[work_id][1]))
    for name in DISTINCT_VARIANTS:
      notes, _ = transform(note_list.notes, name, rng, edits=edits)
      queries.append((work_id, name + "_in_memory", _in_memory(notes), None))
  return queries


def _cli_seconds(manifest_dir: pathlib.Path, query: pathlib.Path, repeats: int = 3) -> float:
  """Median wall time of ``govjax lookup QUERY --manifest DIR`` in a fresh process (imports included)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "govjax.cli", "lookup", str(query), "--manifest", str(manifest_dir)],
                   capture_output=True, check=False)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _rate(events: int, queries: int) -> dict[str, Any]:
  return {"events": events, "queries": queries, "rate": events / max(1, queries),
          "upper95": false_positive_bound(queries, events)}


def _thresholds(args: argparse.Namespace) -> dict[str, float]:
  """The ``ManifestIndex`` thresholds of a bench run (``setting_threshold``: the lookup's default
  :data:`~govjax.documentation.lookup.SETTING_THRESHOLD` unless ``args`` names one)."""
  return {"melody_threshold": args.melody_threshold, "copy_threshold": args.copy_threshold,
          "partial_threshold": args.partial_threshold, "one_voice_threshold": args.one_voice_threshold,
          "setting_threshold": getattr(args, "setting_threshold", None) or SETTING_THRESHOLD}


def run(args: argparse.Namespace) -> dict:
  """The transformation bench (steps 1-5) and, with ``--distinct-works N``, the measurement at scale of
  :mod:`govjax.bench.lookup_distinct` (``distinct_works``), with ``--settings N`` that of
  :mod:`govjax.bench.lookup_settings` (``four_voice_settings``); ``--distinct-only`` runs those alone."""
  start = time.perf_counter()
  result = {} if getattr(args, "distinct_only", False) else _transformation_bench(args)
  cache = pathlib.Path(args.cache_dir) if getattr(args, "cache_dir", None) else lookup_distinct.default_cache_dir()
  if getattr(args, "distinct_works", 0):
    thresholds = _thresholds(args)
    collection = getattr(args, "distinct_collection", lookup_distinct.DEVELOPMENT_COLLECTION)
    key = "distinct_works" if collection == lookup_distinct.DEVELOPMENT_COLLECTION else f"distinct_works_{collection}"
    extra = [c for c in getattr(args, "extra_query_collections", "").split(",") if c]
    if extra:
      key += "_with_" + "_".join(extra)
    result[key] = lookup_distinct.measure_distinct(
        num_distinct=args.distinct_works, seed=args.seed, cache=cache, thresholds=thresholds, collection=collection,
        max_chorales=getattr(args, "max_chorales", None), extra_query_collections=extra)
  if getattr(args, "settings", 0):
    result["four_voice_settings"] = lookup_settings.measure_settings(
        num_distinct=args.settings, seed=args.seed, cache=cache, reused=args.settings_reused,
        thresholds=_thresholds(args), max_chorales=getattr(args, "max_chorales", None),
        held_out=[c for c in getattr(args, "settings_held_out", "").split(",") if c])
  result["wall_s"] = time.perf_counter() - start
  return result


def _transformation_bench(args: argparse.Namespace) -> dict:
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
  thresholds = _thresholds(args)
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
    cli_s = None
    if documented:
      query_file = pathlib.Path(tmp) / "cli_query.mid"
      mf.score_from_notes(mt.transpose(works[documented[0]][2].notes, 3)).write("midi", fp=str(query_file))
      cli_s = _cli_seconds(paths_written.croissant.parent, query_file)
  t_queries = time.perf_counter()
  queries = [(index, kind, work_id, name, note_list, parse_s, None)
             for (kind, work_id, name, _, _), (note_list, parse_s) in zip(jobs, parsed, strict=True)]
  queries += [(index, "holdout", w, name, notes, None, sha)
              for w, name, notes, sha in _memory_variants(works, holdout, rng, args.edits)]
  # Roles swapped: the documented works queried against a manifest of the held-out works.
  swapped = ManifestIndex(_in_memory_manifest(_records(works, holdout)), **thresholds)
  queries += [(swapped, "swapped", w, name, notes, None, sha)
              for w, name, notes, sha in _memory_variants(works, documented, rng, args.edits)]
  # Works of other composers (never documented) against the manifest of the documented Bach works.
  queries += [(index, "other", w, "other_" + name, notes, None, sha)
              for w, name, notes, sha in _memory_variants(others, sorted(others), rng, args.edits)]
  every_work = {**works, **others}

  lookup_s, search_s, with_parse_s, candidates = [], [], [], []
  hits = {name: [] for name in TRANSFORMS}
  levels: dict[str, dict[str, int]] = {name: {} for name in TRANSFORMS}
  top1 = []
  distinct_results = []
  for query_index, kind, work_id, name, note_list, parse_s, source_sha in queries:
    start = time.perf_counter()
    fingerprint = mf.fingerprint_notes(note_list, query_index.manifest.music_config, minhash=False)
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
      level = found[0].level if found else ("same-tune" if any(m.work_id == work_id for m in same) else "missed")
      levels[name][level] = levels[name].get(level, 0) + 1
      top1.append(bool(matches) and matches[0].work_id == work_id)
    else:
      distinct_results.append((kind, work_id, name, matches, same))

  # Ground truth for distinct-work queries, by checks independent of the lookup (see the module docstring).
  truth: dict[tuple[str, str], tuple[bool, bool, float, float, float]] = {}

  def relation(a: str, b: str) -> tuple[bool, bool, float, float, float]:
    if (a, b) not in truth:
      duplicate, overlap, alignment = verified_duplicates(every_work[a][2], every_work[b][2])
      tune = tune_alignment(every_work[a][2], every_work[b][2])
      truth[(a, b)] = (duplicate, not duplicate and tune >= SAME_TUNE_ALIGNMENT, overlap, alignment, tune)
    return truth[(a, b)]

  copy_false, tune_false, queries_with_copy_fp, queries_with_tune_fp = [], [], 0, 0
  verified = []
  by_variant: dict[str, dict[str, int]] = {}
  for _, work_id, name, matches, same in distinct_results:
    count = by_variant.setdefault(name, {"queries": 0, "copy_false_positives": 0, "tune_false_positives": 0})
    count["queries"] += 1
    wrong_copy = [m for m in matches if not relation(work_id, m.work_id)[0]]
    verified += [(work_id, m.work_id, m.level) for m in matches if relation(work_id, m.work_id)[0]]
    wrong_tune = [m for m in same if not any(relation(work_id, m.work_id)[:2])]
    if wrong_copy:
      queries_with_copy_fp += 1
      count["copy_false_positives"] += 1
      copy_false += [[work_id, name, m.work_id, m.level] + [round(x, 3) for x in relation(work_id, m.work_id)[2:]]
                     for m in wrong_copy]
    if wrong_tune:
      queries_with_tune_fp += 1
      count["tune_false_positives"] += 1
      tune_false += [[work_id, name, m.work_id] + [round(x, 3) for x in relation(work_id, m.work_id)[2:]]
                     for m in wrong_tune]

  # Same tune and re-used settings: every held-out work, as parsed, against the documented works it relates to.
  as_parsed = {w: (m, s) for kind, w, name, m, s in distinct_results if kind == "holdout" and name == "as_parsed"}
  tune_pairs, tune_found, reused_pairs, reused_found = 0, 0, 0, 0
  tune_missed = []
  for work_id, (matches, same) in sorted(as_parsed.items()):
    related = {m.work_id for m in matches} | {m.work_id for m in same}
    copies = {m.work_id for m in matches}
    for other in documented:
      duplicate, same_tune = relation(work_id, other)[:2]
      if duplicate:
        reused_pairs += 1
        reused_found += other in copies
      elif same_tune:
        tune_pairs += 1
        tune_found += other in related
        if other not in related:
          tune_missed.append([work_id, other, round(relation(work_id, other)[4], 3)])

  num_distinct = len(distinct_results)
  all_hits = [h for name in TRANSFORMS for h in hits[name]]
  copy_rate = _rate(queries_with_copy_fp, num_distinct)
  return {
      "num_works": len(works),
      "num_documented": len(documented),
      "num_holdout": len(holdout),
      "skipped_files": skipped,
      "recall_transformed": sum(all_hits) / max(1, len(all_hits)),
      "recall_by_transform": {name: sum(h) / max(1, len(h)) for name, h in hits.items()},
      "levels_by_transform": levels,
      "transformed_queries": len(all_hits),
      "recall_top1": sum(top1) / max(1, len(top1)),
      "false_positive_rate": copy_rate["rate"],
      "false_positive_rate_upper95": copy_rate["upper95"],
      "false_positive_queries": queries_with_copy_fp,
      "same_tune_false_positive_rate": _rate(queries_with_tune_fp, num_distinct),
      "distinct_work_queries": num_distinct,
      "distinct_queries_by_variant": dict(sorted(by_variant.items())),
      "other_composer_works": len(others),
      "other_composer_skipped": others_skipped,
      "distinct_verified_corpus_duplicates": sorted(set(verified)),
      "distinct_unverified_matches": copy_false,
      "distinct_unverified_same_tune": tune_false[:50],
      "same_tune_pairs": tune_pairs,
      "same_tune_recall": tune_found / max(1, tune_pairs),
      "same_tune_missed": tune_missed[:20],
      "reused_setting_pairs": reused_pairs,
      "reused_setting_recall": reused_found / max(1, reused_pairs),
      "manifest_duplicate_pairs": duplicates.counts(),
      "lookup_ms": 1000 * statistics.median(lookup_s),
      "lookup_ms_p95": 1000 * sorted(lookup_s)[int(0.95 * (len(lookup_s) - 1))],
      "lookup_with_parse_ms": 1000 * statistics.median(with_parse_s),
      "search_ms": 1000 * statistics.median(search_s),
      "parse_ms": 1000 * statistics.median(q[5] for q in queries if q[5] is not None),
      "cli_lookup_s": cli_s,
      "candidates_mean": statistics.fmean(candidates),
      "manifest_bytes_per_work": manifest_bytes / max(1, len(documented)),
      "thresholds": {**thresholds, "edits": args.edits, "same_tune_alignment": SAME_TUNE_ALIGNMENT},
      "seed": args.seed,
      "timings_s": {"parse_corpus": t_parsed - t_start, "manifest_and_query_files": t_queries - t_parsed,
                    "lookups": time.perf_counter() - t_queries},
      "wall_s": time.perf_counter() - t_start,
  }
