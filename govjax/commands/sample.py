"""``govjax sample --workdir DIR --out x.mid [--num 4] [--musicxml]``: sample chorales from a trained run.

``--frames`` may exceed the model's context (generation then slides a frame-aligned window); ``--temperature 0``
is greedy decoding. See :mod:`govjax.train.sampling`.
"""

from __future__ import annotations

import argparse

from govjax.train.sampling import check_request, output_paths, sample_run, write_samples


def run(args: argparse.Namespace) -> int:
  """Checks the request and the output names (nothing is loaded or written when they are wrong), samples, writes.

  Raises:
    GenerationError: an invalid ``--num``, ``--frames``, ``--prompt-frames`` or ``--temperature``, or an ``--out``
      that a sidecar would overwrite (a ``UserError``: the command line prints one line).
  """
  check_request(num_samples=args.num, num_frames=args.frames, prompt_frames=args.prompt_frames,
                temperature=args.temperature)
  output_paths(args.out, args.num, musicxml=args.musicxml)
  samples = sample_run(args.workdir, num_samples=args.num, num_frames=args.frames,
                       prompt_frames=args.prompt_frames, seed=args.seed, temperature=args.temperature,
                       step=args.step)
  for path in write_samples(samples, args.out, musicxml=args.musicxml):
    print(f"wrote {path}")
  return 0
