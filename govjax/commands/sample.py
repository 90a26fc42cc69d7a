"""``govjax sample --workdir DIR --out x.mid [--num 4] [--musicxml]``: sample chorales from a trained run."""

from __future__ import annotations

import argparse

from govjax.train.sampling import sample_run, write_samples


def register(subparsers) -> None:
  parser = subparsers.add_parser("sample", help="sample chorales from a trained run (MIDI, MusicXML)")
  parser.add_argument("--workdir", required=True, help="run directory written by `govjax train`")
  parser.add_argument("--out", required=True, help="output MIDI path (numbered when --num > 1)")
  parser.add_argument("--num", type=int, default=1, help="number of samples")
  parser.add_argument("--frames", type=int, default=64, help="frames (16th notes) per sample, prompt included")
  parser.add_argument("--prompt-frames", type=int, default=4, help="opening frames of a held-out work as prompt")
  parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--musicxml", action="store_true", help="also write MusicXML next to each MIDI file")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

  samples = sample_run(args.workdir, num_samples=args.num, num_frames=args.frames,
                       prompt_frames=args.prompt_frames, seed=args.seed, temperature=args.temperature,
                       step=args.step)
  for path in write_samples(samples, args.out, musicxml=args.musicxml):
    print(f"wrote {path}")
  return 0
