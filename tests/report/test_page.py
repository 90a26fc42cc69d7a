"""Report page: figure and link URLs are relative to the report's folder, whatever the working directory."""

from __future__ import annotations

import pathlib

from govjax.report.page import Report, relative_url


def test_paths_added_relative_to_one_directory_are_written_relative_to_the_report(tmp_path, monkeypatch):
  (tmp_path / "study" / "figures").mkdir(parents=True)
  (tmp_path / "study" / "figures" / "a.png").write_bytes(b"png")
  (tmp_path / "shared").mkdir()
  (tmp_path / "shared" / "notes: 1 #2.txt").write_text("x")
  monkeypatch.chdir(tmp_path)
  report = Report("t")
  section = report.section("s")
  section.figure(pathlib.Path("study/figures/a.png"), "a figure")
  section.link("shared/notes: 1 #2.txt", "notes")
  section.link(tmp_path / "study" / "figures" / "a.png", "absolute")
  monkeypatch.chdir(tmp_path / "shared")  # the report is written from yet another directory
  path = report.write(tmp_path / "study" / "report.html")
  page = path.read_text(encoding="utf-8")
  assert "<img src='figures/a.png' alt='a figure'>" in page
  assert "<a href='../shared/notes%3A%201%20%232.txt'>notes</a>" in page
  assert "<a href='figures/a.png'>absolute</a>" in page


def test_relative_url():
  assert relative_url("/a/b/c.png", "/a") == "b/c.png"
  assert relative_url("/a/x y/c?.png", "/a/b") == "../x%20y/c%3F.png"
