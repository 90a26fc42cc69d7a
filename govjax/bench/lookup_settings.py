"""Lookup between four-voice works at scale: false positives among thousands of distinct settings, re-used settings
found as copies, other settings of a tune found as the same tune.

``govjax bench lookup --settings N`` adds this measurement (the ``four_voice_settings`` section of the result).
music21's corpus holds too few distinct four-voice works to bound a false-positive rate at 0.001, so the works
are generated: every tune of a one-voice folk collection set for four voices (:mod:`govjax.bench.harmonised`,
one plain style, so the works' lower voices look alike: a hard case). No threshold of the lookup was
chosen on these settings (one rule was, step 3): the four-voice rules (``SETTING_THRESHOLD``, the
partial-copy rules) were chosen on the Bach chorales, the one-voice rule (which does not apply to four-voice
queries) on Essen tunes. Protocol:

1. Works. ``2 N`` tunes of ``collection`` (:func:`govjax.bench.lookup_distinct.parse_collection`, cached), each
   set once (``rng`` seeded by the run's seed and the tune's id): work ``setting/<tune id>``.
2. Index. A manifest (tiers 2-3) of a random half of the settings (*documented*) and every four-voice Bach
   chorale of the corpus (real four-voice records beside the generated ones).
3. Queries, three classes:

   - ``distinct``: each of the other ``N`` settings (never documented);
   - ``reused_setting``: ``M`` documented settings with one inner voice re-written
     (:func:`~govjax.bench.harmonised.revoice`): the same setting re-used with a line changed, a copy;
   - ``other_setting``: the same ``M`` tunes set again, one chord per beat in open position with another draw
     of chords: the same tune in another setting.

   - ``held_out`` (``held_out=``, ``--settings-held-out``): every tune of further one-voice collections, set
     the same way and queried as distinct works against the same index.

   The Essen settings are *development* data for one rule: the first run of this section found plain inner
   voices (mostly held or repeated notes) matching a record's tune or its inner voices by chance, and the lookup
   now needs at most ``MAX_REPEATED_SHARE`` repeated notes among the intervals of a partial copy or of a tune
   found in a query voice other than the highest. The held-out collections were not looked at before it.

4. Ground truth, independent of the lookup: :func:`govjax.bench.lookup_distinct.relation` (``difflib`` over
   the voices' intervals and the note overlap), as in the measurement over folk songs and chorales.
5. Figures. ``copy_false_positives`` / ``same_tune_false_positives``: distinct queries with a copy answer for
   a pair that is not a duplicate / a same-tune answer for a pair that is neither a duplicate nor the same tune
   (queries counted once), with the one-sided 95% upper bound; ``reused_setting_recall``: the source setting
   among the copy answers; ``other_setting``: the tune's documented setting among the answers
   (``same_tune_recall``), and how often it was answered as a copy (``copy_answers``) when the ground truth
   says the two settings are not duplicates.

Runtime (``--settings 4000``, 2 shared cores): parsing the tunes once into the cache, about 13 min; then
``timings_s`` of the section.

Example::

    section = measure_settings(num_distinct=200, seed=0, cache=pathlib.Path("/tmp/cache"))
    section["copy_false_positives"]["upper95"]
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from govjax.bench import harmonised
from govjax.bench import lookup_distinct as ld
from govjax.documentation import music_fingerprint as mf
from govjax.documentation.lookup import ManifestIndex

__all__ = ["measure_settings", "setting_of"]


def _rng(seed: int, work_id: str, salt: str = "") -> random.Random:
  digest = hashlib.sha256(f"{seed}|{work_id}|{salt}".encode()).digest()
  return random.Random(int.from_bytes(digest[:8], "big"))


def setting_of(notes: mf.NoteList, seed: int, work_id: str, salt: str = "", rhythm: str = "note") -> mf.NoteList:
  """The four-voice setting of a tune, drawn from ``(seed, work_id, salt)`` (another salt: another setting)."""
  return mf.NoteList(tuple(harmonised.harmonise(notes.notes, _rng(seed, work_id, salt), rhythm=rhythm)), 4)


def _search(index: ManifestIndex, notes: mf.NoteList, lookup_s: list[float]) -> tuple[list, list]:
  start = time.perf_counter()
  matches, same = index.search_music(mf.fingerprint_notes(notes, index.manifest.music_config, minhash=False))
  lookup_s.append(time.perf_counter() - start)
  return matches, same


def _related(truth: dict, works: ld.WorkNotes, a: str, notes: mf.NoteList, b: str) -> dict[str, Any]:
  """The ground truth of query ``a`` (``notes``) against record ``b``, computed once per pair."""
  return ld.cached_relation(truth, a, notes, b, works[b][2])


def _distinct_answers(index: ManifestIndex, queries: Mapping[str, mf.NoteList], works: ld.WorkNotes,
                      truth: dict, lookup_s: list[float]) -> dict[str, Any]:
  """Copy and same-tune false positives of queries that are documented nowhere (ground truth: ``relation``)."""
  related = functools.partial(_related, truth, works)
  copy_fp = tune_fp = 0
  wrong: list[list] = []
  for work_id, notes in queries.items():
    matches, same = _search(index, notes, lookup_s)
    bad_copies, bad_tunes = ld.false_answers(matches, same, functools.partial(related, work_id, notes))
    copy_fp += bool(bad_copies)
    tune_fp += bool(bad_tunes)
    wrong += [[work_id, m.work_id, m.level, related(work_id, notes, m.work_id)] for m in bad_copies + bad_tunes]
  return {"queries": len(queries), "copy_false_positives": ld.rate(copy_fp, len(queries)),
          "same_tune_false_positives": ld.rate(tune_fp, len(queries)), "unverified_answers": wrong[:50],
          "unverified_same_tune_by_tune_alignment": _by_alignment([w for w in wrong if w[2] == "same-tune"])}


def _by_alignment(wrong: list[list]) -> dict[str, int]:
  """False same-tune answers by the ground truth's tune alignment: just under its 0.7 line, or far below."""
  near = sum(w[3]["tune"] >= 0.6 for w in wrong)
  return {"tune_0.6_to_0.7": near, "tune_below_0.6": len(wrong) - near}


def measure_settings(*, num_distinct: int, seed: int, cache: pathlib.Path, reused: int = 300,
                     collection: str = ld.DEVELOPMENT_COLLECTION, max_chorales: int | None = None,
                     thresholds: Mapping[str, float] | None = None,
                     held_out: Sequence[str] = ()) -> dict[str, Any]:
  """Steps 1-5 of the module docstring.

  Args:
    num_distinct: settings queried as distinct works (as many again are documented); a collection with fewer
      than ``2 num_distinct`` tunes is split in half.
    seed: tune order, documented / query split and the settings' draws.
    cache: directory of the parsed-works cache.
    reused: documented settings queried re-used (one line re-written) and set again (``M``).
    collection: music21 corpus folder of one-voice ABC tunes.
    max_chorales: at most this many chorales in the index (default: all).
    thresholds: ``ManifestIndex`` keyword arguments.
    held_out: further one-voice music21 corpus folders (not :data:`~govjax.bench.lookup_distinct.
      DEVELOPMENT_COLLECTION`) whose every tune is set and queried as a distinct work against the same index
      (``held_out`` in the result: tunes no rule was looked at on).

  Returns:
    The ``four_voice_settings`` section (JSON-able).
  """
  t0 = time.perf_counter()
  rng = random.Random(seed)
  tunes, skipped = ld.parse_collection(2 * num_distinct, rng, cache, collection)
  chorales, chorale_skipped = ld.parse_chorales(cache, max_chorales)
  tune_ids = sorted(tunes)
  rng.shuffle(tune_ids)
  num_distinct = min(num_distinct, len(tune_ids) // 2)
  query_tunes, documented_tunes = sorted(tune_ids[:num_distinct]), sorted(tune_ids[num_distinct:2 * num_distinct])
  works: ld.WorkNotes = dict(chorales)
  for tune in query_tunes + documented_tunes:
    source, sha, notes = tunes[tune]
    works[f"setting/{tune}"] = (source, hashlib.sha256(f"setting|{seed}|{sha}".encode()).hexdigest(),
                                setting_of(notes, seed, tune))
  documented = [f"setting/{t}" for t in documented_tunes]
  t_set = time.perf_counter()
  index = ManifestIndex(ld.manifest_of(works, documented + sorted(chorales)), **(thresholds or {}))
  t_indexed = time.perf_counter()

  truth: dict[tuple[str, str], dict[str, Any]] = {}
  related = functools.partial(_related, truth, works)
  lookup_s: list[float] = []
  distinct = _distinct_answers(index, {f"setting/{t}": works[f"setting/{t}"][2] for t in query_tunes}, works,
                               truth, lookup_s)
  t_distinct = time.perf_counter()
  held: dict[str, Any] = {}
  if held_out:
    tunes_held, skipped_held, _ = ld.extra_queries(held_out, seed, cache)
    queries = {f"setting/{t}": setting_of(tunes_held[t][2], seed, t) for t in sorted(tunes_held)}
    held = {"collections": list(held_out), "tunes_skipped": skipped_held,
            **_distinct_answers(index, queries, works, truth, lookup_s)}
  t_held = time.perf_counter()

  picked = random.Random(seed + 1).sample(documented_tunes, min(reused, len(documented_tunes)))
  counts = {"reused_found": 0, "reused_duplicates": 0, "other_found": 0, "other_copy": 0, "other_pairs": 0,
            "other_duplicates": 0}
  missed: dict[str, list] = {"reused_setting": [], "other_setting": []}
  for i, tune in enumerate(picked):
    record = f"setting/{tune}"
    reused_notes = mf.NoteList(tuple(harmonised.revoice(works[record][2].notes, 1 + i % 2,
                                                        _rng(seed, tune, "revoice"))), 4)
    matches, _ = _search(index, reused_notes, lookup_s)
    counts["reused_duplicates"] += related(f"reused/{tune}", reused_notes, record)["duplicate"]
    hit = record in {m.work_id for m in matches}
    counts["reused_found"] += hit
    if not hit:
      missed["reused_setting"].append(tune)
    other = setting_of(tunes[tune][2], seed, tune, "other", rhythm="beat")
    matches, same = _search(index, other, lookup_s)
    truth_other = related(f"other/{tune}", other, record)
    if truth_other["duplicate"]:
      counts["other_duplicates"] += 1
      continue
    counts["other_pairs"] += 1
    copies = {m.work_id for m in matches}
    hit = record in copies | {m.work_id for m in same}
    counts["other_found"] += hit
    counts["other_copy"] += record in copies
    if not hit:
      missed["other_setting"].append([tune, truth_other["tune"]])

  def share(found: int, total: int) -> dict[str, Any]:
    return {"found": found, "pairs": total, "recall": found / max(1, total), "ci95": list(ld.interval(found, total))}

  return {
      "collection": collection,
      "note": "four-voice settings of one-voice tunes (govjax.bench.harmonised); no lookup threshold was chosen "
              "on them",
      "tunes_parsed": len(tunes),
      "tunes_skipped": skipped,
      "chorales": len(chorales),
      "chorales_skipped": chorale_skipped,
      "index_records": len(index),
      "role": "development for MAX_REPEATED_SHARE (chosen after the first run of this section)",
      "distinct_queries": len(query_tunes),
      "copy_false_positives": distinct["copy_false_positives"],
      "same_tune_false_positives": distinct["same_tune_false_positives"],
      "unverified_answers": distinct["unverified_answers"],
      "unverified_same_tune_by_tune_alignment": distinct["unverified_same_tune_by_tune_alignment"],
      "held_out": held,
      "reused_setting_recall": {**share(counts["reused_found"], len(picked)),
                                "ground_truth_duplicates": counts["reused_duplicates"],
                                "missed": missed["reused_setting"][:20]},
      "other_setting": {"same_tune_recall": share(counts["other_found"], counts["other_pairs"]),
                        "copy_answers": share(counts["other_copy"], counts["other_pairs"]),
                        "ground_truth_duplicates": counts["other_duplicates"],
                        "missed": missed["other_setting"][:20]},
      "lookup_ms": round(1000 * statistics.median(lookup_s), 2) if lookup_s else None,
      "lookup_ms_p95": round(1000 * sorted(lookup_s)[int(0.95 * (len(lookup_s) - 1))], 2) if lookup_s else None,
      "timings_s": {"parse_and_set": round(t_set - t0, 1), "index": round(t_indexed - t_set, 1),
                    "distinct_queries": round(t_distinct - t_indexed, 1),
                    "held_out": round(t_held - t_distinct, 1),
                    "reused_and_other": round(time.perf_counter() - t_held, 1)},
  }
