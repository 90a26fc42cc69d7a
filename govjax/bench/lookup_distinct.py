"""Lookup at scale: false positives over thousands of distinct works, and same-tune recall on tune pairs.

``govjax bench lookup --distinct-works N`` adds this measurement (the ``distinct_works`` section of the result)
to the transformation bench of :mod:`govjax.bench.lookup`. Protocol:

1. Works. Songs of the Essen folk-song collection bundled with music21 (ABC files, one tune per ``X:``
   record, one voice) are parsed until ``2 N`` are at hand (files in a seeded random order), and every
   four-voice Bach chorale of music21's corpus (:func:`govjax.bench.lookup_truth.parse_corpus_work`).
   ``collection`` (``--distinct-collection``) names another music21 corpus folder of one-voice ABC tunes
   instead of Essen (e.g. ``oneills1850``: 1,850 Irish tunes; ``ryansMammoth``); one with fewer than ``2 N``
   tunes is split in half. Essen is the *development* data: the lookup's one-voice rule
   (:data:`govjax.documentation.lookup.ONE_VOICE_THRESHOLD`) was chosen on its split; any other collection
   is *held out* (``role`` in the result). Parsed notes are cached on disk per source file (``--cache-dir``,
   keyed by the file's sha256, music21's version and :data:`CACHE_VERSION`), so a rerun parses nothing.
2. Index. A manifest (tiers 2-3, :func:`govjax.documentation.manifest.build_records`) of a random half of the
   folk songs (*documented*) and of every chorale.
3. Queries. Each of the other ``N`` folk songs (never documented: *distinct works*) as parsed, and each chorale
   as parsed with its own record's answers left out (leave-one-out: the other chorales are distinct works,
   except the re-used settings the corpus holds).
4. Ground truth, by checks independent of the lookup (whole-sequence ``difflib`` ratios and note sets, no
   grams, blocks or thresholds of the lookup; :mod:`govjax.bench.lookup`): two works are *duplicates* when half
   of their notes coincide or their voices' interval sequences align (ratio >= 0.7); they set the *same tune*
   when their highest voices align (ratio >= ``SAME_TUNE_ALIGNMENT`` = 0.7). For one-voice songs a copy and the
   tune coincide: two folk songs whose melodies align >= 0.7 are *variants* of one tune (the Essen collection
   holds many, often under different titles), and a copy answer for them is counted as correct
   (``verified_variant_answers`` lists how many). The thresholds were fixed on the Bach chorales before this
   measurement; nothing is fitted here.
5. Rates. An *unrelated false positive* is any answer (copy or same tune) for a pair that is neither a
   duplicate nor the same tune: the lookup relating distinct works. A *copy false positive* is a near-copy /
   partial-copy / exact answer for a pair that is not a duplicate (it includes copy answers for two settings
   of one tune, counted in ``copy_answers_for_same_tune_pairs``); a *same-tune false positive* a same-tune
   answer for a pair that is neither a duplicate nor the same tune. The rates count queries with at least one
   false answer, with the one-sided 95% Clopper-Pearson upper bound (``upper95``); ``folk`` and ``chorales``
   are reported apart and together.
6. Recall on known relations. ``same_tune_recall``: every ordered pair of chorales that set the same tune
   (not duplicates), found when the second is among the first's same-tune answers or matches;
   ``reused_setting_recall``: every ordered pair of duplicate chorales, found as a copy (apart, in
   ``reused_setting_recall_by_criterion``: pairs whose voices align, ``voice_alignment``, and pairs that are
   duplicates by the note overlap alone, ``note_overlap_only``; the overlap counts coinciding notes of any
   voice, so two harmonisations of one tune in the same key and metre can reach it while only their sopranos
   align: their lines are those of other settings of the tune, and the lookup answers them as the same tune);
   ``folk_variant_recall``: every (query, documented) pair of folk songs of one collection file that are
   variants, found among the answers (pairs across files are not enumerated: 16M ratios; in a held-out
   collection of a few thousand tunes every pair is).
7. Extra held-out queries (``--extra-query-collections``, e.g. ``ryansMammoth,airdsAirs,miscFolk``): every
   tune of further one-voice music21 corpus folders, never used to choose anything, is queried against the
   same manifest, with the same ground truth (a tune that some record truly copies or varies, as tunes shared
   across collections do, is a correct answer, not a false positive). Their rates are reported per folder
   (``extra_query_collections``) and, with the held-out collection's own queries, together
   (``held_out_one_voice``). Variant pairs are not enumerated for them (no recall, only false positives).

Runtime (``--distinct-works 4231``, every song; one process, 2 shared cores under load): parsing once into the
cache 12.9 min for the 8,462 songs and 1.9 min for the chorales; then 6.4 min per run (index 43 s, lookups
152 s, ground truth 112 s; ``timings_s``). ``--distinct-collection oneills1850`` (2,009 tunes, split 1,004 /
1,004): parsing 5.7 min, then index 12 s, lookups 88 s, ground truth 288 s (every variant pair). With
``--extra-query-collections ryansMammoth,airdsAirs,miscFolk,nottingham-dataset`` (2,426 more tunes; parsing
5.2 min): 8.1 min from the cache (lookups 184 s, ground truth 281 s).
``experiments/results/lookup_bench.json`` holds the results.

Example::

    section = measure_distinct(num_distinct=100, seed=0, cache=pathlib.Path("/tmp/cache"))
    section["copy_false_positives"]["all"]["upper95"]
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import pathlib
import pickle
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from govjax.bench import lookup_truth
from govjax.core.intervals import clopper_pearson
from govjax.data.folk import essen_paths
from govjax.documentation import music_fingerprint as mf
from govjax.documentation.lookup import ManifestIndex
from govjax.documentation.lsh import false_positive_bound
from govjax.documentation.manifest import Manifest, build_records
from govjax.documentation.text_fingerprint import TextFingerprintConfig

__all__ = ["CACHE_VERSION", "DEVELOPMENT_COLLECTION", "MIN_NOTES", "cached_relation", "collection_paths",
           "default_cache_dir", "essen_file_works", "extra_queries", "false_answers", "interval", "manifest_of",
           "measure_distinct", "parse_chorales", "parse_collection", "rate", "relation", "top_intervals"]

CACHE_VERSION = "1"  # bump when the parsing of the cached works changes
MIN_NOTES = 8  # songs with fewer notes are skipped (counted in ``skipped``)
# The collection the lookup's one-voice rule was chosen on (``ONE_VOICE_THRESHOLD``); any other is held out.
DEVELOPMENT_COLLECTION = "essenFolksong"
WorkNotes = dict[str, tuple[str, str, mf.NoteList]]  # work_id -> (source path, source sha256, notes)


def default_cache_dir() -> pathlib.Path:
  """``~/.cache/govjax/lookup_bench``."""
  return pathlib.Path.home() / ".cache" / "govjax" / "lookup_bench"


def _cached(cache: pathlib.Path, kind: str, source: pathlib.Path, compute: Callable[[], Any]) -> Any:
  """``compute()``, stored in ``cache`` under the sha256 of ``source``'s bytes, music21's version and
  :data:`CACHE_VERSION` (written atomically; a corrupt entry is recomputed)."""
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  digest = hashlib.sha256(source.read_bytes() + f"|{music21.__version__}|{CACHE_VERSION}".encode()).hexdigest()
  path = cache / kind / f"{source.stem}-{digest[:16]}.pkl"
  if path.exists():
    try:
      return pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError):
      path.unlink()
  value = compute()
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_suffix(".tmp")
  temporary.write_bytes(pickle.dumps(value))
  temporary.replace(path)
  return value


def collection_paths(collection: str) -> list[pathlib.Path]:
  """The ABC files of a music21 corpus folder (sorted; Essen's test files excluded).

  Raises:
    ValueError: no such folder, or no ABC file in it.
  """
  if collection == DEVELOPMENT_COLLECTION:
    return essen_paths()
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  root = pathlib.Path(music21.__file__).parent / "corpus" / collection
  paths = sorted(root.rglob("*.abc")) if root.is_dir() else []
  if not paths:
    raise ValueError(f"music21 corpus folder {collection!r}: no ABC files at {root}")
  return paths


def essen_file_works(path: pathlib.Path, prefix: str = "essen") -> tuple[list[tuple[str, str, mf.NoteList]],
                                                                         dict[str, int]]:
  """``([(work_id, source sha256, notes)], skipped)`` of one ABC file (one work per ``X:`` song).

  ``work_id`` is ``<prefix>/<file stem>/<X number>`` (as :func:`govjax.data.folk.folk_works` for Essen); the
  source sha256
  is that of the file's bytes and the song's number. Songs with fewer than :data:`MIN_NOTES` notes or that
  music21 cannot read are skipped and counted by reason.
  """
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
  skipped: dict[str, int] = {}
  try:
    opus = music21.converter.parse(path, format="abc")
  except Exception as error:  # music21 raises many exception types
    return [], {f"unparsable file: {type(error).__name__}": 1}
  scores = list(opus.scores) if isinstance(opus, music21.stream.Opus) else [opus]
  works, seen = [], set()
  for position, score in enumerate(scores):
    number = str(getattr(score.metadata, "number", None) or position)
    work_id = f"{prefix}/{path.stem}/{number}"
    if work_id in seen:
      work_id = f"{work_id}#{position}"
    seen.add(work_id)
    try:
      notes = mf.notes_from_score(score)
    except Exception as error:  # music21 raises many exception types
      skipped[f"unreadable song: {type(error).__name__}"] = skipped.get(f"unreadable song: {type(error).__name__}",
                                                                        0) + 1
      continue
    if len(notes.notes) < MIN_NOTES:
      skipped[f"fewer than {MIN_NOTES} notes"] = skipped.get(f"fewer than {MIN_NOTES} notes", 0) + 1
      continue
    works.append((work_id, hashlib.sha256(f"{file_sha}#{number}".encode()).hexdigest(), notes))
  return works, skipped


def parse_collection(count: int, rng: random.Random, cache: pathlib.Path,
           collection: str = DEVELOPMENT_COLLECTION) -> tuple[WorkNotes, dict[str, int]]:
  """At least ``count`` tunes of ``collection`` (all it has if fewer; whole files, in a seeded random order),
  cached per file."""
  paths = collection_paths(collection)
  rng.shuffle(paths)
  works: WorkNotes = {}
  skipped: dict[str, int] = {}
  essen = collection == DEVELOPMENT_COLLECTION
  kind, prefix = ("essen", "essen") if essen else (f"corpus-{collection}", collection)
  for path in paths:
    if len(works) >= count:
      break
    songs, file_skipped = _cached(cache, kind, path, lambda p=path: essen_file_works(p, prefix))
    for work_id, sha, notes in songs:
      works[work_id] = (f"{collection}/{path.name}#{work_id.rsplit('/', 1)[1]}", sha, notes)
    for reason, n in file_skipped.items():
      skipped[reason] = skipped.get(reason, 0) + n
  return works, skipped


def parse_chorales(cache: pathlib.Path, max_works: int | None) -> tuple[WorkNotes, dict[str, int]]:
  """The four-voice Bach chorales of music21's corpus (at most ``max_works``, in file order), cached per file."""
  works: WorkNotes = {}
  skipped: dict[str, int] = {}
  for path in lookup_truth.corpus_paths("bach"):
    if max_works is not None and len(works) >= max_works:
      break
    work_id, parsed, reason = _cached(cache, "bach", path, lambda p=path: lookup_truth.parse_corpus_work(str(p)))
    if parsed is None:
      skipped[reason] = skipped.get(reason, 0) + 1
    else:
      works[work_id] = parsed
  return works, skipped


# ------------------------------------------------------------------------------------------ ground truth


def top_intervals(note_list: mf.NoteList) -> list[int]:
  """Pitch intervals of the highest voice (by median pitch), one note per onset (as ``tune_alignment``)."""
  lines = [line for line in lookup_truth.pitch_lines(note_list) if line]
  top = max(lines, key=statistics.median) if lines else []
  return [b - a for a, b in zip(top, top[1:], strict=False)]


def relation(a: mf.NoteList, b: mf.NoteList) -> dict[str, Any]:
  """Ground truth of a pair: ``{"duplicate", "same_tune", "voices_align", "note_overlap", "voice_alignment",
  "tune"}`` (see the module docstring; ``same_tune`` excludes duplicates; ``voices_align``: the voice alignment
  alone makes them duplicates, as opposed to the note overlap alone)."""
  duplicate, overlap, alignment = lookup_truth.verified_duplicates(a, b)
  tune = lookup_truth.tune_alignment(a, b)
  return {"duplicate": duplicate, "same_tune": not duplicate and tune >= lookup_truth.SAME_TUNE_ALIGNMENT,
          "voices_align": alignment >= lookup_truth.DUPLICATE_VOICE_ALIGNMENT,
          "note_overlap": round(overlap, 3), "voice_alignment": round(alignment, 3), "tune": round(tune, 3)}


def false_answers(matches: Sequence[Any], same: Sequence[Any],
                  related: Callable[[str], Mapping[str, Any]]) -> tuple[list, list]:
  """``(copies, tunes)``: the copy answers for records that are not duplicates of the query, and the same-tune
  answers for records that are neither duplicates nor the same tune (``related(record id)`` gives the ground
  truth of the pair, :func:`relation`)."""
  copies = [m for m in matches if not related(m.work_id)["duplicate"]]
  tunes = [m for m in same if not (related(m.work_id)["duplicate"] or related(m.work_id)["same_tune"])]
  return copies, tunes


def cached_relation(truth: dict, a: str, a_notes: mf.NoteList, b: str, b_notes: mf.NoteList) -> dict[str, Any]:
  """:func:`relation` of query ``a`` and record ``b``, computed once per pair (kept in ``truth``)."""
  if (a, b) not in truth:
    truth[(a, b)] = relation(a_notes, b_notes)
  return truth[(a, b)]


def _tune_pairs(queries: Sequence[str], candidates: Callable[[str], Sequence[str]],
                intervals: Mapping[str, list[int]]) -> list[tuple[str, str]]:
  """Pairs ``(a, b)``, ``b`` in ``candidates(a)``, whose top-voice interval sequences align >= the same-tune ratio.

  ``difflib``'s cheap upper bounds (``real_quick_ratio``, ``quick_ratio``) prune before the exact ratio.
  """
  found = []
  threshold = lookup_truth.SAME_TUNE_ALIGNMENT
  for a in queries:
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(intervals[a])
    for b in candidates(a):
      matcher.set_seq1(intervals[b])
      if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold and \
          matcher.ratio() >= threshold:
        found.append((a, b))
  return found


def rate(events: int, queries: int) -> dict[str, Any]:
  """``{events, queries, rate, upper95}``: queries with a false answer and the one-sided 95% upper bound."""
  return {"events": events, "queries": queries, "rate": events / max(1, queries),
          "upper95": round(false_positive_bound(queries, events), 6)}


# ------------------------------------------------------------------------------------------------ the run


def manifest_of(works: WorkNotes, ids: Sequence[str]) -> Manifest:
  """An in-memory manifest (tiers 2-3, default fingerprint parameters) of ``ids``."""
  inputs = [{"work_id": w, "title": w.rsplit("/", 1)[-1], "collection": w.split("/", 1)[0],
             "source_path": works[w][0], "sha256": works[w][1], "notes": works[w][2], "split": "train",
             "modality": "music"} for w in ids]
  return Manifest({}, build_records(inputs), mf.FingerprintConfig(), TextFingerprintConfig(), pathlib.Path("."))


def measure_distinct(*, num_distinct: int, seed: int, cache: pathlib.Path, max_chorales: int | None = None,
                     thresholds: Mapping[str, float] | None = None,
                     collection: str = DEVELOPMENT_COLLECTION,
                     extra_query_collections: Sequence[str] = ()) -> dict[str, Any]:
  """Steps 1-6 of the module docstring.

  Args:
    num_distinct: folk songs queried as distinct works (as many again are documented); a collection with
      fewer than ``2 num_distinct`` tunes is split in half.
    seed: file order and documented / query split.
    cache: directory of the parsed-works cache.
    max_chorales: at most this many chorales (default: all).
    thresholds: ``ManifestIndex`` keyword arguments (``copy_threshold``, ``partial_threshold``,
      ``melody_threshold``, ``one_voice_threshold``).
    collection: music21 corpus folder of the one-voice tunes (:data:`DEVELOPMENT_COLLECTION`, on which the
      lookup's one-voice rule was chosen, or a held-out one such as ``oneills1850``).
    extra_query_collections: further music21 corpus folders of one-voice ABC tunes (held out, never
      :data:`DEVELOPMENT_COLLECTION`) whose every tune is queried too, against the same manifest (step 7).

  Returns:
    The ``distinct_works`` section (JSON-able).
  """
  t0 = time.perf_counter()
  rng = random.Random(seed)
  folk, folk_skipped = parse_collection(2 * num_distinct, rng, cache, collection)
  num_distinct = min(num_distinct, len(folk) // 2)
  chorales, chorale_skipped = parse_chorales(cache, max_chorales)
  folk_ids = sorted(folk)
  rng.shuffle(folk_ids)
  queries_folk = sorted(folk_ids[:num_distinct])
  documented_folk = sorted(folk_ids[num_distinct:2 * num_distinct])
  chorale_ids = sorted(chorales)
  extra, extra_skipped, extra_of = extra_queries(extra_query_collections, seed, cache)
  queries_extra = sorted(extra)
  works = {**folk, **chorales, **extra}
  t_parsed = time.perf_counter()
  index = ManifestIndex(manifest_of(works, documented_folk + chorale_ids), **(thresholds or {}))
  t_indexed = time.perf_counter()

  truth: dict[tuple[str, str], dict[str, Any]] = {}

  def related(a: str, b: str) -> dict[str, Any]:
    return cached_relation(truth, a, works[a][2], b, works[b][2])

  answers: dict[str, tuple[list, list]] = {}
  lookup_s = []
  for work_id in queries_folk + chorale_ids + queries_extra:
    start = time.perf_counter()
    fingerprint = mf.fingerprint_notes(works[work_id][2], index.manifest.music_config, minhash=False)
    matches, same = index.search_music(fingerprint)
    lookup_s.append(time.perf_counter() - start)
    answers[work_id] = ([m for m in matches if m.work_id != work_id], [m for m in same if m.work_id != work_id])
  t_looked_up = time.perf_counter()

  copy_fp = {"folk": 0, "chorales": 0, "extra": 0}
  tune_fp = {"folk": 0, "chorales": 0, "extra": 0}
  unrelated_fp = {"folk": 0, "chorales": 0, "extra": 0}
  any_fp = {"folk": 0, "chorales": 0, "extra": 0}  # queries with a copy or a same-tune false positive
  by_extra = {c: {"queries": 0, "multi_voice": 0, "copy": 0, "same_tune": 0, "verified_answers": 0}
              for c in extra_query_collections}
  # held-out one-voice queries (the extra tunes, and the collection's own when it is held out): counts
  one_voice = {"queries": 0, "copy": 0, "same_tune": 0, "any": 0}
  held_out_groups = {"extra"} | ({"folk"} if collection != DEVELOPMENT_COLLECTION else set())
  copy_for_tune = 0
  wrong_copies, wrong_tunes, variants, verified_copies = [], [], 0, 0
  answer_counts = {"copy": 0, "same_tune": 0}
  for work_id, (matches, same) in answers.items():
    group = "folk" if work_id in folk else "extra" if work_id in extra else "chorales"
    answer_counts["copy"] += len(matches)
    answer_counts["same_tune"] += len(same)
    bad_copies, bad_tunes = false_answers(matches, same, functools.partial(related, work_id))
    for m in matches:
      if related(work_id, m.work_id)["duplicate"]:
        verified_copies += 1
        variants += work_id not in chorales and m.work_id in folk
    copy_fp[group] += bool(bad_copies)
    tune_fp[group] += bool(bad_tunes)
    unrelated = [m for m in matches + same if not (related(work_id, m.work_id)["duplicate"] or
                                                    related(work_id, m.work_id)["same_tune"])]
    unrelated_fp[group] += bool(unrelated)
    any_fp[group] += bool(bad_copies or bad_tunes)
    copy_for_tune += sum(related(work_id, m.work_id)["same_tune"] for m in bad_copies)
    wrong_copies += [[work_id, m.work_id, m.level, related(work_id, m.work_id)] for m in bad_copies]
    wrong_tunes += [[work_id, m.work_id, related(work_id, m.work_id)] for m in bad_tunes]
    single = len({note.voice for note in works[work_id][2].notes}) == 1
    if group in held_out_groups and single:
      one_voice["queries"] += 1
      one_voice["copy"] += bool(bad_copies)
      one_voice["same_tune"] += bool(bad_tunes)
      one_voice["any"] += bool(bad_copies or bad_tunes)
    if group == "extra":
      counts = by_extra[extra_of[work_id]]
      counts["queries"] += 1
      counts["multi_voice"] += not single
      counts["copy"] += bool(bad_copies)
      counts["same_tune"] += bool(bad_tunes)
      counts["verified_answers"] += len(matches) + len(same) - len(bad_copies) - len(bad_tunes)

  # Same-tune and re-used-setting recall on every ordered pair of chorales; folk variants within a file.
  intervals = {w: top_intervals(works[w][2]) for w in chorale_ids + queries_folk + documented_folk}
  tune_pairs = _tune_pairs(chorale_ids, lambda a: [b for b in chorale_ids if b != a], intervals)
  by_file: dict[str, list[str]] = {}
  for w in documented_folk:
    by_file.setdefault(w.split("/")[1], []).append(w)
  if collection == DEVELOPMENT_COLLECTION:
    folk_pairs = _tune_pairs(queries_folk, lambda q: by_file.get(q.split("/")[1], []), intervals)
  else:  # a held-out collection (a few thousand tunes at most): every (query, documented) pair
    folk_pairs = _tune_pairs(queries_folk, lambda q: documented_folk, intervals)
  recall = {"same_tune": [0, 0], "reused_setting": [0, 0], "folk_variant": [0, 0],
            "reused_setting_voices_align": [0, 0], "reused_setting_notes_only": [0, 0]}
  missed: dict[str, list] = {name: [] for name in recall}
  for kind, pairs in (("chorale", tune_pairs), ("folk", folk_pairs)):
    for a, b in pairs:
      truth_ab = related(a, b)
      matches, same = answers[a]
      copies = {m.work_id for m in matches}
      if not (truth_ab["duplicate"] or truth_ab["same_tune"]):
        continue  # below the ground truth's threshold in this order (difflib's ratio is not quite symmetric)
      if kind == "folk":
        name, hit = "folk_variant", b in copies | {m.work_id for m in same}
      elif truth_ab["duplicate"]:
        name, hit = "reused_setting", b in copies
      else:
        name, hit = "same_tune", b in copies | {m.work_id for m in same}
      names = [name]
      if name == "reused_setting":  # by the ground truth's criterion: voices aligned, or only notes coinciding
        names.append("reused_setting_voices_align" if truth_ab["voices_align"] else "reused_setting_notes_only")
      for counted in names:
        recall[counted][0] += hit
        recall[counted][1] += 1
        if not hit:
          missed[counted].append([a, b, truth_ab["tune"]])
  # Duplicate chorale pairs whose tunes do not align (a setting re-used under another tune) are not enumerated.

  def share(name: str) -> dict[str, Any]:
    found, total = recall[name]
    low, high = interval(found, total)
    return {"found": found, "pairs": total, "recall": found / max(1, total), "ci95": [low, high],
            "missed": missed[name][:20]}

  num_folk, num_chorales = len(queries_folk), len(chorale_ids)
  section = {
      "command_note": "distinct-work queries: folk songs never documented; chorales leave-one-out",
      "collection": collection,
      "role": "development" if collection == DEVELOPMENT_COLLECTION else "held-out",
      "thresholds": dict(thresholds or {}),
      "folk_songs_parsed": len(folk),
      "folk_documented": len(documented_folk),
      "folk_queries": num_folk,
      "folk_skipped": folk_skipped,
      "chorales": num_chorales,
      "chorales_skipped": chorale_skipped,
      "index_records": len(index),
      "copy_false_positives": {"folk": rate(copy_fp["folk"], num_folk),
                               "chorales": rate(copy_fp["chorales"], num_chorales),
                               "all": rate(copy_fp["folk"] + copy_fp["chorales"], num_folk + num_chorales)},
      "same_tune_false_positives": {"folk": rate(tune_fp["folk"], num_folk),
                                    "chorales": rate(tune_fp["chorales"], num_chorales),
                                    "all": rate(tune_fp["folk"] + tune_fp["chorales"], num_folk + num_chorales)},
      "unrelated_false_positives": {"folk": rate(unrelated_fp["folk"], num_folk),
                                    "chorales": rate(unrelated_fp["chorales"], num_chorales),
                                    "all": rate(unrelated_fp["folk"] + unrelated_fp["chorales"],
                                                 num_folk + num_chorales)},
      "copy_answers_for_same_tune_pairs": copy_for_tune,
      "unverified_copy_answers": wrong_copies[:50],
      "unverified_same_tune_answers": wrong_tunes[:50],
      "answers": answer_counts,
      "verified_copy_answers": verified_copies,
      "verified_variant_answers": variants,
      "same_tune_recall": share("same_tune"),
      "reused_setting_recall": share("reused_setting"),
      "reused_setting_recall_by_criterion": {"voice_alignment": share("reused_setting_voices_align"),
                                             "note_overlap_only": share("reused_setting_notes_only")},
      "folk_variant_recall": share("folk_variant"),
      "lookup_ms": round(1000 * statistics.median(lookup_s), 2),
      "lookup_ms_p95": round(1000 * sorted(lookup_s)[int(0.95 * (len(lookup_s) - 1))], 2),
      "timings_s": {"parse_or_cache": round(t_parsed - t0, 1), "index": round(t_indexed - t_parsed, 1),
                    "lookups": round(t_looked_up - t_indexed, 1),
                    "ground_truth": round(time.perf_counter() - t_looked_up, 1)},
  }
  if extra_query_collections:
    section.update(_extra_section(extra_query_collections, extra_skipped, by_extra, copy_fp, tune_fp, one_voice,
                                  collection))
  return section


def extra_queries(collections: Sequence[str], seed: int,
                   cache: pathlib.Path) -> tuple[WorkNotes, dict[str, dict[str, int]], dict[str, str]]:
  """Every tune of each held-out ``collections`` folder: ``(works, skipped per collection, work_id -> folder)``.

  Raises:
    ValueError: :data:`DEVELOPMENT_COLLECTION` among ``collections`` (it is not held out).
  """
  works: WorkNotes = {}
  skipped: dict[str, dict[str, int]] = {}
  of: dict[str, str] = {}
  for name in collections:
    if name == DEVELOPMENT_COLLECTION:
      raise ValueError(f"{name} is the development collection, not held out")
    tunes, skipped[name] = parse_collection(10**9, random.Random(seed), cache, name)
    works.update(tunes)
    of.update(dict.fromkeys(tunes, name))
  return works, skipped, of


def _extra_section(collections: Sequence[str], skipped: Mapping[str, Mapping[str, int]],
                   by_extra: Mapping[str, Mapping[str, int]], copy_fp: Mapping[str, int],
                   tune_fp: Mapping[str, int], one_voice: Mapping[str, int], collection: str) -> dict[str, Any]:
  """Step 7: the extra held-out queries (per collection) and every held-out *one-voice* query together
  (``held_out_one_voice``: the extra tunes of one voice and, when the collection is held out, its own
  queries of one voice), the population the one-voice rule applies to."""
  queries = sum(c["queries"] for c in by_extra.values())
  total = one_voice["queries"]
  return {
      "extra_query_collections": {
          name: {"queries": by_extra[name]["queries"], "multi_voice_queries": by_extra[name]["multi_voice"],
                 "skipped": dict(skipped[name]),
                 "copy_false_positives": rate(by_extra[name]["copy"], by_extra[name]["queries"]),
                 "same_tune_false_positives": rate(by_extra[name]["same_tune"], by_extra[name]["queries"]),
                 "verified_answers": by_extra[name]["verified_answers"]} for name in collections},
      "extra_copy_false_positives": rate(copy_fp["extra"], queries),
      "extra_same_tune_false_positives": rate(tune_fp["extra"], queries),
      "held_out_one_voice": {
          "queries": total,
          "sources": ([collection] if collection != DEVELOPMENT_COLLECTION else []) + list(collections),
          "copy_false_positives": rate(one_voice["copy"], total),
          "same_tune_false_positives": rate(one_voice["same_tune"], total),
          "any_false_positives": rate(one_voice["any"], total),
      },
  }


def interval(found: int, total: int) -> tuple[float, float]:
  """Two-sided 95% Clopper-Pearson interval of ``found / total`` ((0, 1) when ``total`` is 0)."""
  if not total:
    return 0.0, 1.0
  low, high = clopper_pearson(found, total)
  return round(float(low), 4), round(float(high), 4)
