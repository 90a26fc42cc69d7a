"""The main job: ``make demo`` (= ``python -m experiments.demo``).

Prepares the chorale dataset if needed, runs the demo study (experiments/configs/study_demo.py), writes the
dataset manifest, the figures and ``runs/demo/report.html``, and prints where the report is.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="experiments/configs/study_demo.py")
  parser.add_argument("--out", default="runs/demo")
  parser.add_argument("--data-dir", default=None)
  args = parser.parse_args(argv)

  from govjax.study.pipeline import run_pipeline

  start = time.perf_counter()
  report = run_pipeline(args.config, args.out, data_dir=args.data_dir)
  print(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min; report: {report}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
