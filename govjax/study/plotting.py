"""Matplotlib for the study's figures: the headless backend, imported only when a figure is drawn.

Example:
  >>> plt = pyplot()
  >>> colour, marker, hollow = series_style(plt, 1)
  >>> marker, hollow
  ('s', True)
"""

from __future__ import annotations

from typing import Any

__all__ = ["MARKERS", "pyplot", "series_style"]

MARKERS = "osD^vPX*<>ph"


def pyplot() -> Any:
  """``matplotlib.pyplot`` with the Agg backend (matplotlib takes about a second to import: figures only)."""
  import matplotlib  # noqa: PLC0415 (deferred: only figures need it)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415 (after choosing the Agg backend)

  return plt


def series_style(plt: Any, index: int) -> tuple[Any, str, bool]:
  """``(colour, marker, hollow)`` of series ``index``: distinct tab20 colours and markers, every other series
  hollow, so that more series than a default colour cycle, and coincident points, stay apart."""
  colours = plt.get_cmap("tab20").colors
  return (colours[(2 * index) % len(colours) + (2 * index // len(colours)) % 2], MARKERS[index % len(MARKERS)],
          bool(index % 2))
