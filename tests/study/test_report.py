"""The study's report.html works in a browser: every figure, sample, lineage file and manifest file it links
resolves relative to the report's own folder, whatever directory the study ran from; headless Chromium loads
every figure."""

from __future__ import annotations

import html.parser
import json
import os
import pathlib
import shutil
import subprocess
import urllib.parse

import music21
import pytest

from govjax.documentation import manifest as mfst
from govjax.study.report import write_run_report, write_study_report


def _run(name, method, label, probe=False, provenance=False):
  """One run's entry of ``results.json`` (the fields :func:`govjax.study.runner.run_one` writes)."""
  vanilla = method == "vanilla"
  excluded = [] if vanilla else [
      {"work_id": "bach/bwv10.7", "rule": "opted-out", "reason": "TDM reservation"},
      {"work_id": "bach/bwv26.6", "rule": "opted-out", "reason": "generative_training notAllowed"}]
  entry = {
      "run": name, "method": method, "label": label, "seed": 0, "knob": [], "workdir": f"runs/{name}",
      "val_nll": 1.9 if vanilla else 2.0, "train_wall_s": 3.0, "steps": 4,
      "data_report": {"works": {"train": 10, "validation": 1, "test": 1}, "train_works_kept": 10 - len(excluded),
                      "policy": "include-all" if vanilla else "default", "exclusion": {"excluded": excluded}},
      "memorization": {"extraction_restricted": 0.2 if vanilla else 0.0, "extraction_heldout": 0.0,
                       "token_match_restricted": 0.5 if vanilla else 0.3, "extraction_canary": 0.5,
                       "exposure": {"by_repetitions": {"2": 3.5}}},
      "curve": [{"step": 2, "extraction_restricted": 0.1, "extraction_canary": 0.2},
                {"step": 4, "extraction_restricted": 0.2, "extraction_canary": 0.5}],
      "samples": [f"runs/{name}/samples/sample_0.mid"],
  }
  if probe:
    entry["probe"] = {"per_work": [{"work_id": f"w{i}", "probe_loss": 1.0 + i / 10, "extraction_rate": 0.5 * (i < 2)}
                                   for i in range(5)]}
  if provenance:
    entry["provenance"] = {"recall_at_1": 0.5, "by_depth": {"2": {"recall_at_1": 0.5}, "4": {"recall_at_1": 1.0}}}
  return entry


def _small_study(root: pathlib.Path) -> pathlib.Path:
  """The files a study leaves for its report (``results.json``, samples, lineage, manifest, lookup.json),
  with two runs; the figures and report.html are what :func:`write_study_report` then draws and writes."""
  root.mkdir(parents=True)
  runs = [_run("vanilla", "vanilla", "vanilla training"), _run("depth #1", "depth", "depth routing", probe=True,
                                                              provenance=True)]
  for run in runs:
    samples = root / run["workdir"] / "samples"
    samples.mkdir(parents=True)
    music21.corpus.parse("bach/bwv66.6").measures(1, 2).write("midi", fp=str(samples / "sample_0.mid"))
    lineage = root / run["workdir"] / "provenance" / "lineage"
    lineage.mkdir(parents=True)
    (lineage / "sample_0 (take 1).json").write_text(json.dumps({"output": "sample_0.mid", "works": []}))
  records = mfst.build_records([{"work_id": "text/1", "modality": "text", "text": "one two three four five six"}])
  mfst.write_manifest(root / "manifest", records, name="t", description="t", url="urn:govjax:t",
                      date_published="2025-01-01")
  (root / "lookup.json").write_text(json.dumps({"by_transformation": {"musicxml": 1.0, "midi": 1.0},
                                                "false_positives": 0}))
  results = {"study": "report-test", "settings": {"audit_k": 8, "audit_m": 8}, "runs": runs, "wall_s": 60.0,
             "machine": {"platform": "test", "cpu_count": 2, "jax": "0", "devices": ["cpu"]}}
  (root / "results.json").write_text(json.dumps(results))
  return root


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.urls: list[tuple[str, str]] = []
    self.captions: list[str] = []
    self._in_caption = False

  def handle_starttag(self, tag, attrs):
    for name, value in attrs:
      if name in ("src", "href"):
        self.urls.append((tag, value))
    self._in_caption = tag == "caption"

  def handle_endtag(self, tag):
    self._in_caption = False

  def handle_data(self, data):
    if self._in_caption:
      self.captions.append(data)


def _parse(report: pathlib.Path) -> _Links:
  parser = _Links()
  parser.feed(report.read_text(encoding="utf-8"))
  return parser


def _assert_every_link_resolves(report: pathlib.Path) -> list[tuple[str, str]]:
  """Every src/href is a relative URL naming an existing file inside the report's folder."""
  urls = _parse(report).urls
  folder = report.parent.resolve()
  for tag, url in urls:
    parts = urllib.parse.urlsplit(url)
    assert not parts.scheme and not parts.netloc and not url.startswith("/"), url
    target = (folder / urllib.parse.unquote(parts.path)).resolve()
    assert target.is_file(), (tag, url)
    assert folder in target.parents, url
  return urls


@pytest.fixture()
def study_report(tmp_path, monkeypatch):
  """report.html of a small study written from the directory *above* the study (a relative ``out``, as
  ``govjax study --out runs/demo`` gives it), then the working directory moves elsewhere."""
  monkeypatch.chdir(tmp_path)
  _small_study(tmp_path / "runs" / "demo")
  report = write_study_report(pathlib.Path("runs/demo"))
  assert report == pathlib.Path("runs/demo/report.html")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  return (tmp_path / report).resolve()


def test_every_src_and_href_resolves_relative_to_the_report(study_report):
  urls = _assert_every_link_resolves(study_report)
  images = sorted(url for tag, url in urls if tag == "img")
  assert images == ["figures/extraction_over_training.png", "figures/lookup_robustness.png",
                    "figures/probe_validity.png", "figures/provenance_recall.png",
                    "figures/utility_vs_memorization.png"]
  links = sorted(url for tag, url in urls if tag == "a")
  assert links == ["manifest/croissant.json", "manifest/records.jsonl",
                   "runs/depth%20%231/provenance/lineage/sample_0%20%28take%201%29.json",
                   "runs/depth%20%231/samples/sample_0.mid",
                   "runs/vanilla/provenance/lineage/sample_0%20%28take%201%29.json",
                   "runs/vanilla/samples/sample_0.mid"]


def test_the_data_table_names_the_run_it_describes(study_report):
  captions = _parse(study_report).captions
  assert "training data of run depth #1 (depth routing, runs/depth #1)" in captions
  assert "works excluded from run depth #1 (depth routing, runs/depth #1) (2), with the rule and reason" in captions


def test_a_single_runs_report_links_relative_to_itself(tmp_path, monkeypatch):
  run = tmp_path / "runs" / "one"
  (run / "audit").mkdir(parents=True)
  (run / "config.json").write_text(json.dumps({"config": {"name": "one"}, "config_hash": "abc"}))
  (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.0 - s / 4, **(
      {"val_nll": 2.9} if s == 4 else {})}) + "\n" for s in range(1, 5)))
  (run / "audit" / "summary.json").write_text(json.dumps({"k": 8, "m": 8, "splits": {"train": {"works": 3}}}))
  (run / "audit" / "per_work.csv").write_text("work_id\n")
  (run / "samples").mkdir()
  (run / "samples" / "s.mid").write_bytes(b"MThd")
  monkeypatch.chdir(tmp_path)
  report = write_run_report("runs/one")
  monkeypatch.chdir(run / "audit")
  urls = _assert_every_link_resolves((tmp_path / report).resolve())
  assert sorted(url for _, url in urls) == ["audit/per_work.csv", "figures/loss.png", "samples/s.mid"]


def _chromium() -> str | None:
  return shutil.which("chromium") or shutil.which("chromium-browser")


_CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) img.setAttribute("data-natural-width", String(img.naturalWidth));
  document.body.setAttribute("data-checked", String(document.images.length));
});
</script>"""


def test_report_renders_in_headless_chromium(study_report, tmp_path):
  """Every <img> of the report has loaded in Chromium (naturalWidth > 0). Where no Chromium is installed
  (Debian: ``apt-get install chromium``), the file-system check of the links is what runs."""
  urls = _assert_every_link_resolves(study_report)
  chromium = _chromium()
  if chromium is None:
    return
  # A copy next to the report (so relative URLs stay the same) that records each image's natural width.
  checked = study_report.with_name("report_checked.html")
  checked.write_text(study_report.read_text(encoding="utf-8").replace("</body>", _CHECK_SCRIPT + "</body>"),
                     encoding="utf-8")
  flags = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--window-size=1200,2000",
           "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
  env = dict(os.environ, HOME=str(tmp_path))
  dom = subprocess.run([chromium, *flags, "--dump-dom", checked.as_uri()], capture_output=True, text=True,
                       timeout=120, env=env, check=True).stdout
  images = [tag for tag, _ in urls if tag == "img"]
  assert f'data-checked="{len(images)}"' in dom, dom[-2000:]
  widths = [int(part.split('"')[0]) for part in dom.split('data-natural-width="')[1:]]
  assert len(widths) == len(images) == 5 and min(widths) > 0, widths
  screenshot = tmp_path / "report.png"
  subprocess.run([chromium, *flags, f"--screenshot={screenshot}", study_report.as_uri()], capture_output=True,
                 timeout=120, env=env, check=True)
  assert screenshot.stat().st_size > 10_000


def _premise_block(rule: float, exposure: float) -> dict:
  def value(mean):
    return {"mean": mean, "ci95": [mean - 0.1, mean + 0.1]}

  return {"rule_gain_specific": value(rule), "secret_exposure": value(exposure), "mia_auc_restricted": value(0.6),
          "val_nll_minus_exclude": value(0.05)}


def test_a_premise_summary_becomes_a_section_with_both_figures(tmp_path):
  study = _small_study(tmp_path / "study")
  shares = {share: {"exclude": _premise_block(0.0, 1.0), "full": _premise_block(float(share), 5.0)}
            for share in ("0.2", "0.8")}
  premise = {"seeds": [0, 1, 2], "spec": {"main_share": 0.5},
             "treatments": {"exclude": _premise_block(0.0, 1.0), "full": _premise_block(0.6, 5.0),
                            "depth_1": _premise_block(0.1, 1.5)},
             "trunk_leakage": {"full": _premise_block(0.2, 2.0)}, "restricted_fraction": shares}
  path = tmp_path / "premise.json"
  path.write_text(json.dumps(premise))
  report = write_study_report(study, premise=path)
  images = sorted(url for tag, url in _assert_every_link_resolves(report) if tag == "img")
  assert {"figures/premise.png", "figures/premise_shares.png"} <= set(images)
  text = report.read_text(encoding="utf-8")
  assert "Premise: rule learning without memorization" in text and "0.600 [0.500, 0.700]" in text
  # Without a premise summary (none given, none in the study folder) there is no such section.
  assert "Premise" not in write_study_report(study).read_text(encoding="utf-8")
