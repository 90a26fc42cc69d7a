"""The whole study job from one command: data, runs, documentation, lookup check, report.

``run_pipeline(config, out)`` prepares the chorale dataset if needed, runs the study (:mod:`govjax.study.runner`:
``out/results.json`` and the evidence with 95% intervals, ``out/study.json``),
writes the dataset manifest of the governed run (tiers 1-3, Croissant) into ``out/manifest``, checks that the
rightsholder lookup finds transformed copies of training works and no distinct works (``out/lookup.json``), and
writes ``out/report.html`` (:mod:`govjax.study.report`). ``make demo`` runs it on the demo study.

Example::

    report = run_pipeline("experiments/configs/study_demo.py", "runs/demo")
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import numpy as np

from govjax.core.ids import work_kind
from govjax.data import tokenizer
from govjax.data.canaries import split_canary_sources
from govjax.data.chorales import prepare_chorales
from govjax.documentation.lookup import ManifestIndex, lookup_file
from govjax.documentation.manifest import load_manifest
from govjax.documentation.run_manifest import document_run
from govjax.study.methods import StudyConfig, load_study, method_config, study_runs
from govjax.study.report import results_markdown, write_study_report
from govjax.study.runner import run_study
from govjax.train import data as training_data
from govjax.train.data import load_works


def _stage(text: str) -> None:
  print(f"== {text}", flush=True)


def prepare_data(study: StudyConfig, *, progress: bool = True) -> None:
  """Builds the study's chorale dataset once (a no-op when it is already prepared)."""

  base = study.base
  workers = 1 if base.max_works else max(1, min(2, os.cpu_count() or 1))
  report = prepare_chorales(base.data_dir, steps_per_quarter=base.steps_per_quarter, max_works=base.max_works,
                            num_workers=workers, progress=progress)
  print(report.format(), flush=True)


def transformed_copies(work, out_dir: pathlib.Path, *, steps_per_quarter: int = 4) -> dict[str, pathlib.Path]:
  """Writes copies of a work a rightsholder might hold: as encoded, transposed, tempo-changed, re-encoded.

  Returns:
    ``{transformation: path}``.
  """

  score = tokenizer.decode_tokens(work.tokens, steps_per_quarter=steps_per_quarter)
  stem = work.work_id.replace("/", "_")
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {
      "musicxml": tokenizer.write_musicxml(score, out_dir / f"{stem}.musicxml"),
      "transposed +3": tokenizer.write_musicxml(score.transpose(3), out_dir / f"{stem}_t3.musicxml"),
      "tempo x2": tokenizer.write_musicxml(score.augmentOrDiminish(2), out_dir / f"{stem}_x2.musicxml"),
      "midi": tokenizer.write_midi(score, out_dir / f"{stem}.mid"),
  }
  return paths


def lookup_check(manifest_dir: pathlib.Path, train_works: list, distinct_works: list, out_dir: pathlib.Path,
                 *, workdir: pathlib.Path | None = None) -> dict:
  """Looks up transformed copies of ``train_works`` (should be found as that work) and ``distinct_works``
  (never trained on: should match no other work; a documented one matches its own not-trained record).

  Returns:
    ``{"by_transformation": {name: recall}, "false_positives": n, "distinct_queries": n, "rows": [...]}``.
  """

  index = ManifestIndex(load_manifest(manifest_dir))
  rows = []
  for work in train_works:
    for name, path in transformed_copies(work, out_dir / "copies").items():
      result = lookup_file(path, index, workdir=workdir)
      ids = [m.work_id for m in result.matches]
      rows.append({"work_id": work.work_id, "transformation": name, "found": work.work_id in ids,
                   "tier": result.matches[0].tier if result.matches else None})
  false_positives = 0
  for work in distinct_works:
    path = transformed_copies(work, out_dir / "distinct")["musicxml"]
    others = [m.work_id for m in lookup_file(path, index).matches if m.work_id != work.work_id]
    false_positives += bool(others)
    rows.append({"work_id": work.work_id, "transformation": "distinct", "found": bool(others), "tier": None})
  names = sorted({r["transformation"] for r in rows if r["transformation"] != "distinct"})
  return {
      "by_transformation": {n: float(np.mean([r["found"] for r in rows if r["transformation"] == n]))
                            for n in names},
      "false_positives": false_positives,
      "distinct_queries": len(distinct_works),
      "rows": rows,
  }


def run_pipeline(config: str | pathlib.Path | StudyConfig, out: str | pathlib.Path, *,
                 data_dir: str | None = None) -> pathlib.Path:
  """Runs the whole study job and returns the report's path.

  Args:
    config: a study config file (``get_study()``) or a :class:`StudyConfig`.
    out: output directory.
    data_dir: prepared-data directory (default: ``$GOVJAX_DATA_DIR`` or the user cache).

  Returns:
    ``out/report.html``.
  """
  from absl import logging as absl_logging  # noqa: PLC0415 (absl arrives with TFDS; only the pipeline quiets it)


  absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's read-only-manager notices, once per restore
  study = config if isinstance(config, StudyConfig) else load_study(config)
  if data_dir is not None:
    study = dataclasses.replace(study, base=dataclasses.replace(study.base, data_dir=data_dir))
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  timings = {}
  start = time.perf_counter()
  _stage("1/4 data: Bach chorales from music21's corpus")
  prepare_data(study)
  timings["data_s"] = time.perf_counter() - start

  seeds = f", seeds {list(study.seeds)}" if study.seeds else ""
  _stage(f"2/4 study: {len(study_runs(study))} runs{seeds} (train, audit, sample, trace)")
  t0 = time.perf_counter()
  results = run_study(study, out)
  timings["study_s"] = time.perf_counter() - t0

  governed = next((r for r in results["runs"] if r["method"] != "vanilla"), results["runs"][0])
  run_config = method_config(study.base, governed["method"], seed=governed["seed"], knob=tuple(governed["knob"]))
  data = training_data.build_training_data(run_config)
  if study.lookup_works:
    _stage("3/4 documentation: manifest (tiers 1-3, Croissant) and rightsholder lookup check")
    t0 = time.perf_counter()

    works_by_split = load_works(run_config)
    manifest = document_run(out / "manifest", run_config, data.catalogue, works_by_split, fingerprint_from="tokens",
                            name=f"govjax-{study.name}")
    test_works = works_by_split["test"]
    if run_config.canaries.chorale_count:
      # Chorale canaries are excerpts of some test works: a lookup rightly finds those works inside the planted
      # canaries (a partial copy), so the distinct queries are the test works that gave no canary.
      test_works = split_canary_sources(test_works)[1]
    rng = np.random.default_rng(0)
    specific = [w for w in data.catalogue.works if work_kind(w.work_id) == "work"]
    chosen = [specific[i] for i in sorted(rng.choice(len(specific), min(study.lookup_works, len(specific)),
                                                     replace=False))]
    lookup = lookup_check(out / "manifest", chosen, test_works[: study.lookup_works], out / "lookup",
                          workdir=out / governed["workdir"])
    lookup["manifest"] = {k: v for k, v in manifest.items() if isinstance(v, int | float | str)}
    (out / "lookup.json").write_text(json.dumps(lookup, indent=2))
    timings["documentation_s"] = time.perf_counter() - t0
    print(f"   lookup recall by transformation: {lookup['by_transformation']}; false positives "
          f"{lookup['false_positives']}/{lookup['distinct_queries']}", flush=True)
  _stage("4/4 report")
  results["timings"] = {**timings, "total_s": time.perf_counter() - start}
  (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
  (out / "RESULTS.md").write_text(results_markdown(results))
  return write_study_report(out)
