"""A small, dependency-free HTML report writer: sections of text, tables, figures and links.

Figures and links are files: give their paths as usual (absolute, or relative to the current directory when
they are added); :meth:`Report.write` turns each into a URL relative to the report's own folder, so the page
works when opened in a browser from anywhere, and when the folder is moved or copied as a whole.

Example:
  >>> import tempfile, pathlib
  >>> report = Report("Demo")
  >>> section = report.section("Results", "Numbers from one run.")
  >>> section.table([{"method": "vanilla", "nll": 0.71}, {"method": "governed", "nll": 0.74}])
  >>> path = report.write(pathlib.Path(tempfile.mkdtemp()) / "report.html")
  >>> "governed" in path.read_text()
  True
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import os
import pathlib
import urllib.parse

__all__ = ["Report", "Section", "relative_url"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; display: block; max-width: 100%;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; } code, pre { background: #f6f6f6; padding: 0.1em 0.3em; }
.note { color: #555; font-size: 0.9em; }
"""


def _format(value) -> tuple[str, bool]:
  """Renders a cell; returns (html, is_text)."""
  if isinstance(value, float):
    return (f"{value:.4g}", False)
  if isinstance(value, (int, bool)) or value is None:
    return (html.escape(str(value)), False)
  if isinstance(value, (list, tuple)):
    return (html.escape(", ".join(str(v) for v in value)), True)
  return (html.escape(str(value)), True)


@dataclasses.dataclass
class Section:
  """One ``<h2>`` section; add content with its methods, in order."""

  title: str
  parts: list[str] = dataclasses.field(default_factory=list)

  def text(self, paragraph: str) -> None:
    """A paragraph (escaped)."""
    self.parts.append(f"<p>{html.escape(paragraph)}</p>")

  def code(self, text: str) -> None:
    """A preformatted block, e.g. the command that regenerates a figure."""
    self.parts.append(f"<pre>{html.escape(text)}</pre>")

  def table(self, rows: list[dict], *, columns: list[str] | None = None, caption: str | None = None) -> None:
    """A table from a list of dicts (columns: the union of keys in first-seen order unless given)."""
    if not rows:
      self.parts.append("<p class='note'>(no rows)</p>")
      return
    if columns is None:
      columns = list(dict.fromkeys(k for row in rows for k in row))
    out = ["<table>"]
    if caption:
      out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
    for row in rows:
      cells = []
      for column in columns:
        rendered, is_text = _format(row.get(column, ""))
        cells.append(f"<td class='text'>{rendered}</td>" if is_text else f"<td>{rendered}</td>")
      out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    self.parts.append("".join(out))

  def figure(self, path: str | os.PathLike, caption: str) -> None:
    """An image file (absolute, or relative to the current directory now; relative to the report when written)."""
    self.parts.append(("figure", os.path.abspath(path), caption))

  def link(self, path: str | os.PathLike, label: str) -> None:
    """A link to a file (absolute, or relative to the current directory now; relative to the report when
    written)."""
    self.parts.append(("link", os.path.abspath(path), label))


def relative_url(target: str | os.PathLike, folder: str | os.PathLike) -> str:
  """The URL of file ``target`` relative to ``folder`` (percent-encoded, ``/`` separators).

  Example:
    >>> relative_url("/runs/demo/figures/a b.png", "/runs/demo")
    'figures/a%20b.png'
  """
  relative = os.path.relpath(os.path.abspath(target), os.path.abspath(folder))
  return urllib.parse.quote(pathlib.PurePath(relative).as_posix(), safe="/")


class Report:
  """An HTML report made of sections.

  Args:
    title: the page title.
    subtitle: an optional line under the title.
  """

  def __init__(self, title: str, subtitle: str | None = None):
    self.title = title
    self.subtitle = subtitle
    self.sections: list[Section] = []

  def section(self, title: str, intro: str | None = None) -> Section:
    """Adds and returns a new section."""
    section = Section(title)
    if intro:
      section.text(intro)
    self.sections.append(section)
    return section

  def write(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes the report; every figure ``src`` and link ``href`` is relative to its folder.

    Returns:
      The path written.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent

    def rel(target: str) -> str:
      return html.escape(relative_url(target, root))

    body = [f"<h1>{html.escape(self.title)}</h1>"]
    if self.subtitle:
      body.append(f"<p class='note'>{html.escape(self.subtitle)}</p>")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body.append(f"<p class='note'>Generated {stamp}.</p>")
    for section in self.sections:
      body.append(f"<h2>{html.escape(section.title)}</h2>")
      for part in section.parts:
        if isinstance(part, tuple) and part[0] == "figure":
          body.append(f"<figure><img src='{rel(part[1])}' alt='{html.escape(part[2])}'>"
                      f"<figcaption>{html.escape(part[2])}</figcaption></figure>")
        elif isinstance(part, tuple) and part[0] == "link":
          body.append(f"<p><a href='{rel(part[1])}'>{html.escape(part[2])}</a></p>")
        else:
          body.append(part)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
