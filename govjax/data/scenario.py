"""Rights records for the corpus: the real metadata, and seeded *simulated* scenarios for experiments.

**Real metadata** (:func:`real_records`). The chorales are compositions by J. S. Bach (1685-1750), in the
public domain: ``licence`` is ``CC-PDM-1.0`` (the Public Domain Mark). The *encodings* are files of music21's
bundled corpus, whose terms are set apart from music21's own BSD-3-Clause licence:

- ``music21/license.txt``: the BSD licence "does not apply to other content distributed with this package,
  particularly the corpus files which have their own copyrights and licenses";
- ``music21/corpus/license.txt``: the corpus is distributed "with the permission of the encoders" and "where
  permitted under United States copyright law"; "Some encodings included in the corpus may not be used for
  commercial uses or have other restrictions: please see the licenses embedded in individual compositions or
  directories for more details"; "The encodings may be under copyright but have been licensed for use, though
  there may be restrictions on commercial use."

So every real record also carries ``encoding_licence="LicenseRef-music21-corpus"`` (terms unspecified, never
guessed) and a note quoting those lines plus any licence notice embedded in the source file (MusicXML
``<rights>``, Humdrum ``!!!YEC``/``!!!YEM`` reference records; the .mxl Bach chorales of music21 9.x embed
none). The default policy decides on the work's ``licence``; ``default_policy(strict_encodings=True)`` also
treats the unspecified encoding terms as restricting.

**Generated structural material** (:func:`structural_record`): licence ``CC0-1.0``, content class
``structural``, creator ``govjax generator``.

**Simulated scenario** (:func:`default_scenario`): a seeded, clearly marked (``simulated=True``,
``scenario="default-v1 seed=S"``, a ``SIMULATED`` note) assignment of a realistic rights mix to the corpus
works, for experiments only. Mix (:data:`DEFAULT_MIX`, shares of the non-structural works, exact up to
rounding by the largest-remainder method, every category present when there are at least as many works as
categories):

===================  =====  ==========================================================================
category             share  records
===================  =====  ==========================================================================
public-domain         20%   CC0-1.0 or CC-PDM-1.0
attribution           25%   CC-BY-4.0 or CC-BY-3.0 (attribution required)
share-alike           10%   CC-BY-SA-4.0
non-commercial        15%   CC-BY-NC-4.0, CC-BY-NC-SA-4.0 or CC-BY-NC-ND-4.0
no-derivatives         5%   CC-BY-ND-4.0
unknown               10%   ``unknown``, or ``LicenseRef-publisher-terms`` with unspecified terms
opted-out             15%   TDM reservation, generative_training notAllowed, or ai_training constrained
                            without a stated constraint (counts as notAllowed)
===================  =====  ==========================================================================

The scenario depends only on the seed and the *set* of work ids (ids are sorted, then permuted by
``numpy.random.default_rng(seed)``); structural works keep their real structural record. Users supply their
own scenario as a JSON Lines / CSV records file (:func:`resolve_records` with a path).

Example:
  >>> recs = default_scenario([f"bach/w{i}" for i in range(20)], seed=0)
  >>> sum(r.opted_out for r in recs), all(r.simulated for r in recs)
  (3, True)
"""

from __future__ import annotations

import pathlib
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from govjax.core.ids import STRUCTURAL_PREFIX
from govjax.data import chorales
from govjax.data.structural import structural_works
from govjax.rights.records import RightsRecord, load_records, parse_record

SCENARIO_VERSION = "default-v1"
MUSIC21_CORPUS_LICENCE = "LicenseRef-music21-corpus"
PUBLIC_DOMAIN_COMPOSERS = ("bach",)  # lower-case substrings of composer names known to be public domain here

# Verbatim lines of the licence files installed with music21 (checked by tests/rights/test_scenario.py).
MUSIC21_LICENCE_QUOTES: dict[str, tuple[str, ...]] = {
    "music21/license.txt": (
        "This license does not apply to other content distributed with this package, particularly the corpus "
        "files which have their own copyrights and licenses.",
    ),
    "music21/corpus/license.txt": (
        "Some encodings included in the corpus may not be used for commercial uses or have other "
        "restrictions: please see the licenses embedded in individual compositions or directories for more "
        "details.",
        "The encodings may be under copyright but have been licensed for use, though there may be "
        "restrictions on commercial use.",
    ),
}
MUSIC21_CORPUS_NOTE = " ".join(
    ["Encoding from music21's bundled corpus (whose BSD-3-Clause licence covers only the code)."]
    + [f"{name}: " + " ".join(f'"{q}"' for q in quotes) for name, quotes in MUSIC21_LICENCE_QUOTES.items()]
)

# (category, share of the non-structural works); licences per category below.
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("public-domain", 0.20),
    ("attribution", 0.25),
    ("share-alike", 0.10),
    ("non-commercial", 0.15),
    ("no-derivatives", 0.05),
    ("unknown", 0.10),
    ("opted-out", 0.15),
)
_LICENCES = {
    "public-domain": ("CC0-1.0", "CC-PDM-1.0"),
    "attribution": ("CC-BY-4.0", "CC-BY-3.0"),
    "share-alike": ("CC-BY-SA-4.0",),
    "non-commercial": ("CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0"),
    "no-derivatives": ("CC-BY-ND-4.0",),
    "unknown": ("unknown", "LicenseRef-publisher-terms"),
    "opted-out": ("CC-BY-4.0", "CC-BY-NC-4.0", "unknown"),
}
_OPT_OUTS = (
    {"tdm_reservation": True},
    {"generative_training": "notAllowed"},
    {"ai_training": "constrained", "generative_training": "constrained"},
)
_NUM_RIGHTSHOLDERS = 12


def _get(work: Any, name: str, default: Any = None) -> Any:
  value = work.get(name, default) if isinstance(work, Mapping) else getattr(work, name, default)
  if isinstance(value, bytes):
    value = value.decode("utf-8")
  return value


def _work_id(work: Any) -> str:
  work_id = work if isinstance(work, str) else _get(work, "work_id")
  if not isinstance(work_id, str) or not work_id:
    raise ValueError(f"work {work!r:.80} has no work_id")
  return work_id


def embedded_licence_notice(source_path: str | pathlib.Path | None) -> str | None:
  """A licence/copyright notice embedded in a score file, or None.

  Reads MusicXML ``<rights>`` elements (``.xml``/``.musicxml``/``.mxl``) and Humdrum reference records
  ``!!!YEC`` (copyright) / ``!!!YEM`` (copyright message) of ``.krn`` files. A relative path is looked up in
  music21's corpus. Missing or unreadable files give None.
  """
  if not source_path:
    return None
  path = pathlib.Path(source_path)
  if not path.is_absolute():
    try:
      import music21  # noqa: PLC0415 (music21 takes seconds to import; only reading corpus metadata needs it)

      path = pathlib.Path(music21.common.getCorpusFilePath()) / path
    except Exception:  # noqa: BLE001 - no corpus: nothing to read
      return None
  try:
    if path.suffix.lower() == ".mxl":
      with zipfile.ZipFile(path) as archive:
        text = "\n".join(archive.read(n).decode("utf-8", "replace") for n in archive.namelist()
                         if n.lower().endswith((".xml", ".musicxml")) and not n.startswith("META-INF"))
    else:
      text = path.read_text(encoding="utf-8", errors="replace")
  except (OSError, zipfile.BadZipFile):
    return None
  if path.suffix.lower() == ".krn":
    found = [line.split(":", 1)[-1].strip() for line in text.splitlines()
             if line.startswith(("!!!YEC", "!!!YEM"))]
  else:
    found = [re.sub(r"\s+", " ", m).strip() for m in re.findall(r"<rights[^>]*>(.*?)</rights>", text, re.S)]
  found = [f for f in found if f]
  return " ".join(found) if found else None


def _is_public_domain_composer(composer: str) -> bool:
  return any(name in composer.lower() for name in PUBLIC_DOMAIN_COMPOSERS)


def structural_record(work: Any) -> RightsRecord:
  """The real record of a generated ``structural/...`` work: CC0-1.0, content class structural."""
  work_id = _work_id(work)
  is_work = not isinstance(work, str)
  title = str(_get(work, "title", "") or "") if is_work else ""
  generated = f"generated:govjax.data.structural/{work_id.removeprefix(STRUCTURAL_PREFIX)}"
  return parse_record({
      "work_id": work_id,
      "title": title,
      "creators": ["govjax generator"],
      "source": (str(_get(work, "source_path", "") or "") if is_work else "") or generated,
      "sha256": _get(work, "sha256") if is_work else None,
      "licence": "CC0-1.0",
      "attribution_text": f"{title or work_id} (generated by govjax.data.structural, CC0-1.0)",
      "content_class": "structural",
      "notes": "Generated from music-theory rules (cadences, progressions, scales); not a specific work.",
  })


def real_records(works: Iterable[Any]) -> list[RightsRecord]:
  """Real rights records of dataset works (with work_id, title, composer, source_path, sha256).

  Works by a composer in :data:`PUBLIC_DOMAIN_COMPOSERS` (J. S. Bach, d. 1750) get ``licence="CC-PDM-1.0"``;
  any other composer gets ``licence="unknown"`` (never guessed). Every corpus work records the music21 corpus
  terms as its ``encoding_licence`` and notes (see the module docstring). Structural works get
  :func:`structural_record`.

  Example:
    >>> r = real_records([{"work_id": "bach/bwv10.7", "title": "bwv10.7", "composer": "J. S. Bach",
    ...                    "source_path": "bach/bwv10.7.mxl", "sha256": "0" * 64}])[0]
    >>> r.licence, r.encoding_licence, r.use
    ('CC-PDM-1.0', 'LicenseRef-music21-corpus', 'all')
  """
  records = []
  for work in works:
    work_id = _work_id(work)
    if work_id.startswith(STRUCTURAL_PREFIX):
      records.append(structural_record(work))
      continue
    title = str(_get(work, "title", "") or "")
    composer = str(_get(work, "composer", "") or "")
    source_path = str(_get(work, "source_path", "") or "")
    public_domain = _is_public_domain_composer(composer)
    notice = embedded_licence_notice(source_path)
    notes = ("Composition in the public domain (J. S. Bach, 1685-1750). " if public_domain
             else "Composer not known to be in the public domain here: licence not guessed. ")
    notes += MUSIC21_CORPUS_NOTE
    notes += f" Notice embedded in the file: {notice!r}." if notice else " No licence notice in the file."
    records.append(parse_record({
        "work_id": work_id,
        "title": title,
        "creators": [composer] if composer else [],
        "rightsholder": "" if public_domain else "unknown",
        "source": f"music21 corpus: {source_path}" if source_path else "music21 corpus",
        "sha256": _get(work, "sha256"),
        "licence": "CC-PDM-1.0" if public_domain else "unknown",
        "encoding_licence": MUSIC21_CORPUS_LICENCE,
        "attribution_text": f"{composer + ', ' if composer else ''}{title or work_id}; encoding from the "
                            f"music21 corpus ({source_path or work_id})",
        "content_class": "specific",
        "notes": notes,
    }))
  return records


def _quotas(n: int, mix: Sequence[tuple[str, float]]) -> list[int]:
  weights = np.asarray([w for _, w in mix], float)
  exact = weights / weights.sum() * n
  counts = np.floor(exact).astype(int)
  order = sorted(range(len(mix)), key=lambda i: (-(exact[i] - counts[i]), i))
  for i in order[: n - counts.sum()]:
    counts[i] += 1
  if n >= len(mix):  # every category present: take from the largest
    for i in range(len(mix)):
      if counts[i] == 0:
        counts[int(np.argmax(counts))] -= 1
        counts[i] += 1
  return counts.tolist()


def default_scenario(works: Iterable[Any], *, seed: int = 0,
                     mix: Sequence[tuple[str, float]] = DEFAULT_MIX) -> list[RightsRecord]:
  """Simulated rights records for ``works`` (ids, dicts or objects), deterministic given the seed and id set.

  Args:
    works: work ids, or works with ``work_id`` (and optionally title, composer, source_path, sha256).
    seed: the scenario seed.
    mix: ``(category, share)`` pairs; categories from :data:`DEFAULT_MIX`.

  Returns:
    Records in the order of ``works``; structural works get their real :func:`structural_record`.
  """
  works = list(works)
  ids = [_work_id(w) for w in works]
  if len(set(ids)) != len(ids):
    raise ValueError("duplicate work ids given to default_scenario")
  unknown = [c for c, _ in mix if c not in _LICENCES]
  if unknown:
    raise ValueError(f"unknown scenario categories {unknown}; known: {list(_LICENCES)}")
  corpus_ids = sorted(i for i in ids if not i.startswith(STRUCTURAL_PREFIX))
  position = {work_id: i for i, work_id in enumerate(corpus_ids)}
  rng = np.random.default_rng(seed)
  order = [corpus_ids[i] for i in rng.permutation(len(corpus_ids))]
  category_of: dict[str, str] = {}
  start = 0
  for (category, _), count in zip(mix, _quotas(len(order), mix), strict=True):
    for work_id in order[start:start + count]:
      category_of[work_id] = category
    start += count
  scenario = f"{SCENARIO_VERSION} seed={seed}"
  records = []
  for work, work_id in zip(works, ids, strict=True):
    if work_id.startswith(STRUCTURAL_PREFIX):
      records.append(structural_record(work))
      continue
    category = category_of[work_id]
    # Per-work choices from a generator keyed by (seed, position in the sorted ids): order-independent.
    sub = np.random.default_rng([seed, position[work_id]])
    licence = str(sub.choice(_LICENCES[category]))
    holder = f"Simulated Rightsholder {int(sub.integers(_NUM_RIGHTSHOLDERS)) + 1:02d}"
    fields: dict[str, Any] = {}
    if category == "opted-out":
      fields = dict(_OPT_OUTS[int(sub.integers(len(_OPT_OUTS)))])
    is_work = not isinstance(work, str)
    title = str(_get(work, "title", "") or "") if is_work else ""
    composer = str(_get(work, "composer", "") or "") if is_work else ""
    credit = f"{title or work_id}" + (f" ({composer})" if composer else "")
    records.append(parse_record({
        "work_id": work_id,
        "title": title,
        "creators": [composer] if composer else [],
        "rightsholder": holder,
        "source": f"music21 corpus: {_get(work, 'source_path')}" if is_work and _get(work, "source_path")
                  else "",
        "sha256": _get(work, "sha256") if is_work else None,
        "licence": licence,
        "attribution_text": f"SIMULATED: {credit}, (c) {holder}, {licence}",
        "content_class": "specific",
        "notes": f"SIMULATED rights for experiments (category: {category}); not the work's real rights.",
        "simulated": True,
        "scenario": scenario,
        **fields,
    }))
  return records


def resolve_records(spec: str | pathlib.Path, works: Sequence[Any], *, seed: int = 0) -> list[RightsRecord]:
  """Records for ``works`` from a scenario spec (as in ``GovernanceSpec.scenario``).

  Args:
    spec: ``"real"`` (:func:`real_records`), ``"default"`` (:func:`default_scenario` with ``seed``) or the
      path of a JSON Lines / CSV records file. A file need not list generated structural works: those without
      a record get their real :func:`structural_record` (they are generated here, so that is their metadata).
    works: the dataset's works.
    seed: scenario seed for ``"default"``.

  Returns:
    The records (for a file: all of its records plus the added structural ones).

  Raises:
    RecordValidationError: the file has invalid rows (all listed).
  """
  if str(spec) == "real":
    return real_records(works)
  if str(spec) == "default":
    return default_scenario(works, seed=seed)
  records = load_records(spec)
  have = {r.work_id for r in records}
  return records + [structural_record(w) for w in works
                    if _work_id(w).startswith(STRUCTURAL_PREFIX) and _work_id(w) not in have]


def load_dataset_works(data_dir: str | pathlib.Path | None = None, *,
                       include_structural: bool = False) -> list:
  """All works of the prepared chorale dataset (every split, sorted by work_id), plus structural works.

  Args:
    data_dir: the prepared data dir (default: govjax.data's default).
    include_structural: append :func:`govjax.data.structural.structural_works`.

  Raises:
    govjax.data.chorales.DataNotPreparedError: run ``govjax prepare chorales`` first.
  """

  works = []
  for split in ("train", "validation", "test"):
    works += chorales.load_chorale_works(data_dir, split)
  works.sort(key=lambda w: w.work_id)
  if include_structural:

    works += structural_works()
  return works
