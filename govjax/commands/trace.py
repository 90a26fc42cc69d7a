"""``govjax trace --workdir DIR --input generated.mid|tokens.npy [--top 10] [--json]``: which training works
influenced an output, at what depth they were learned, and which attribution duties follow.

Prints the lineage and writes it as ``<input>.lineage.json`` and ``DIR/provenance/lineage/<input stem>.json``.

The input is checked before anything is scored, and every problem is one line naming the file
(:class:`~govjax.provenance.query.TraceInputError`): a ``.npy`` must hold integer token ids of the run's vocabulary,
``[T]`` or ``[frames, 4]`` (four voices a frame); a score file (MIDI, MusicXML) must encode as four voices. Outputs
longer than :data:`~govjax.provenance.query.MAX_TRACE_TOKENS` tokens (4,096 frames, 256 measures of 4/4) are refused
at once, before a long MIDI file is parsed (its note events' end time is read first), and score files larger than
:data:`MAX_SCORE_BYTES` (MIDI: :data:`MAX_MIDI_BYTES`) are refused unparsed; trace a longer piece in parts.
NaN or infinite influence scores are an error (:class:`~govjax.provenance.query.NonFiniteScoresError`) and no
lineage is written.

Example (reading an output; the vocabulary is checked by the tracer):
  >>> import tempfile
  >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.npy"
  >>> np.save(path, np.array([40, 36, 31, 24, 2, 2, 2, 2], np.int32))
  >>> read_output_tokens(path).tolist()
  [40, 36, 31, 24, 2, 2, 2, 2]
  >>> np.save(path, np.array([40, 36, 31, 24, 2, 2, 2], np.int32))
  >>> try:
  ...   read_output_tokens(path)
  ... except TraceInputError as error:
  ...   print(str(error).split(": ", 1)[1])
  7 tokens are not whole frames of 4 voices (one token per voice per frame)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import zipfile

import music21
import numpy as np

from govjax.core.text import terminal_safe
from govjax.data.tokenizer import NUM_VOICES, EncodingError, encode_score
from govjax.provenance.index import sha256_file
from govjax.provenance.lineage import build_lineage, write_lineage
from govjax.provenance.query import MAX_TRACE_TOKENS, TraceInputError, check_output_tokens, scorer_name
from govjax.provenance.runs import load_tracer

# Score files above these sizes are refused before music21 reads them. MusicXML (.mxl: uncompressed) parses at
# about 3 s per MB on 2 CPU cores, and 4 MB is over 1,000 measures of chorale writing. MIDI is denser: the 4,096
# frames a trace scores take at most ~170 kB even with a new note in every voice and frame (and a MIDI file's
# length is checked from its bytes before it is parsed: :func:`midi_end_quarters`).
MAX_SCORE_BYTES = 4_000_000
MAX_MIDI_BYTES = 1_000_000
MIDI_SUFFIXES = (".mid", ".midi")


def _score_bytes(path: pathlib.Path) -> int:
  """Size of a score file; for ``.mxl`` the uncompressed size of its members."""
  if path.suffix.lower() != ".mxl":
    return path.stat().st_size
  try:
    with zipfile.ZipFile(path) as archive:
      return sum(info.file_size for info in archive.infolist())
  except (zipfile.BadZipFile, OSError) as error:
    raise TraceInputError(f"{terminal_safe(str(path))}: not a compressed MusicXML (.mxl) file ({error})") from None


def _varlen(data: bytes, i: int) -> tuple[int, int]:
  value = 0
  while True:
    byte = data[i]
    i += 1
    value = (value << 7) | (byte & 0x7F)
    if not byte & 0x80:
      return value, i


def _track_end(data: bytes, i: int, stop: int) -> int:
  """Tick of the last note-on/off event of one ``MTrk`` chunk (a lower bound if the chunk is truncated)."""
  tick = end = status = 0
  try:
    while i < stop:
      delta, i = _varlen(data, i)
      tick += delta
      if data[i] & 0x80:
        status = data[i]
        i += 1
      if status == 0xFF:  # meta event: type, length, data
        length, i = _varlen(data, i + 1)
        i += length
      elif status in (0xF0, 0xF7):  # sysex: length, data
        length, i = _varlen(data, i)
        i += length
      else:
        kind = status & 0xF0
        if kind in (0x80, 0x90):
          end = tick
        i += 1 if kind in (0xC0, 0xD0) else 2
  except IndexError:
    pass
  return end


def midi_end_quarters(path: str | pathlib.Path) -> float | None:
  """End of the last note event of a MIDI file in quarter notes, scanned from its bytes (no score is built:
  about 0.1 s for the 160,000 events of 5,000 measures in four voices).

  Returns:
    The end in quarters (of a truncated file: of what is there), or None for SMPTE time division.

  Raises:
    TraceInputError: the file does not start with a MIDI header.
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  if len(data) < 14 or data[:4] != b"MThd":
    raise TraceInputError(f"{terminal_safe(str(path))}: not a readable MIDI file (no MThd header)")
  division = int.from_bytes(data[12:14], "big")
  if division & 0x8000 or division == 0:
    return None
  i, end = 8 + int.from_bytes(data[4:8], "big"), 0
  while i + 8 <= len(data):
    size = int.from_bytes(data[i + 4:i + 8], "big")
    if data[i:i + 4] == b"MTrk":
      end = max(end, _track_end(data, i + 8, min(i + 8 + size, len(data))))
    i += 8 + size
  return end / division


def read_output_tokens(path: str | pathlib.Path, *, steps_per_quarter: int = 4,
                       max_tokens: int | None = MAX_TRACE_TOKENS) -> np.ndarray:
  """Tokens of a generated output: a ``.npy`` token array, or a MIDI/MusicXML file encoded with the tokenizer.

  Only the shape and length are checked here (the vocabulary is the model's: see
  :meth:`govjax.provenance.runs.RunTracer.trace_tokens`).

  Args:
    path: the file.
    steps_per_quarter: the run's tokenizer grid (for score files).
    max_tokens: the longest output accepted (None: no limit).

  Returns:
    int32 ``[T]``.

  Raises:
    TraceInputError: no such file, an unreadable file, a token array that is empty, not integer or not whole
      frames of four voices, a score that does not encode as four voices, a file or piece over the limits.
  """
  path = pathlib.Path(path)
  where = terminal_safe(str(path))
  if not path.is_file():
    raise TraceInputError(f"{where}: no such file")
  if path.suffix.lower() == ".npy":
    try:
      tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
      raise TraceInputError(f"{where}: not a readable .npy token array ({terminal_safe(str(error))})") from None
    return check_output_tokens(tokens, vocab_size=None, source=str(path), max_tokens=max_tokens)
  size = _score_bytes(path)
  limit = MAX_MIDI_BYTES if path.suffix.lower() in MIDI_SUFFIXES else MAX_SCORE_BYTES
  if size > limit:
    raise TraceInputError(f"{where}: {size} bytes is more than the {limit} a score file of this kind may have to "
                          "be traced; trace it in parts")
  if path.suffix.lower() in MIDI_SUFFIXES and max_tokens is not None:
    quarters = midi_end_quarters(path)
    if quarters is not None:
      frames = int(np.ceil(quarters * steps_per_quarter))
      if frames * NUM_VOICES > max_tokens:
        raise TraceInputError(f"{where}: {quarters:g} quarter notes ({frames} frames) is more than the "
                              f"{max_tokens // NUM_VOICES} frames a trace scores; trace it in parts")
  try:
    score = music21.converter.parse(str(path))
  except Exception as error:  # music21 raises assorted exception types for files it cannot read
    raise TraceInputError(f"{where}: not a readable score ({terminal_safe(str(error) or type(error).__name__)})"
                          ) from None
  try:
    encoded = encode_score(score, steps_per_quarter=steps_per_quarter)
  except EncodingError as error:
    raise TraceInputError(f"{where}: cannot be encoded: {terminal_safe(error.reason)}") from None
  return check_output_tokens(encoded.tokens, vocab_size=None, source=str(path), max_tokens=max_tokens)


def run(args: argparse.Namespace) -> int:
  """Validates the input, traces it and writes its lineage (nothing is written when any step fails).

  Raises:
    TraceInputError: a missing or invalid input, ``--top < 1`` (a ``UserError``: one line naming the file).
    NonFiniteScoresError: NaN or infinite gradients or scores.
  """
  path = pathlib.Path(args.input)
  if not path.is_file():
    raise TraceInputError(f"{terminal_safe(str(path))}: no such file")
  if args.top < 1:
    raise TraceInputError(f"--top must be >= 1, got {args.top}")
  tracer = load_tracer(args.workdir)
  tokens = read_output_tokens(path, steps_per_quarter=tracer.steps_per_quarter)
  attribution = tracer.trace_tokens(tokens, top=args.top, aggregation=args.aggregate, source=str(path))
  index_dir = pathlib.Path(args.workdir) / "provenance" / "index"
  config = tracer.index.feature_config
  lineage = build_lineage(
      attribution, tracer.index.works, top=args.top,
      output={"file": path.name, "sha256": sha256_file(path), "num_tokens": int(tokens.size),
              "num_frames": int(tokens.size) // NUM_VOICES, "windows": -(-int(tokens.size) // tracer.context),
              "context": tracer.context},
      method={"name": scorer_name(config), "checkpoints": tracer.index.steps.tolist(),
              "learning_rates": tracer.index.learning_rates.tolist(),
              "k": config.k, "projection": config.projection, "projection_seed": config.seed,
              "normalize": config.normalize, "precondition": config.precondition,
              "query_precondition": config.precondition and config.query_precondition,
              "depth_masked": True, "index_sha256": json.loads((index_dir / "index.json").read_text())["sha256"],
              "dataset_fingerprint": tracer.index.metadata.get("dataset_fingerprint")})
  paths = write_lineage(lineage, output_file=path, workdir=args.workdir, name=path.stem)
  if args.json:
    print(json.dumps(lineage, indent=1))
  else:
    print(f"lineage of {terminal_safe(str(path))} ({tokens.size} tokens; {scorer_name(config)} over checkpoints "
          f"{tracer.index.steps.tolist()}):")
    for work in lineage["works"]:
      print(f"  {work['rank']:>3}. {work['work_id']:<28} score {work['score']:+.4g}  share {work['share']:.1%}  "
            f"depth {work['depth']}  {work['licence']}")
    duties = lineage["duties"]
    print(f"attribution: {duties['attribution_text'] or '(none required: ' + duties['basis'] + ')'}")
    print("written: " + ", ".join(str(p) for p in paths))
  return 0
