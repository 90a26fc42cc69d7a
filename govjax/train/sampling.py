"""Sampling chorales from a trained run: prompts from held-out works, decoding, MIDI/MusicXML and JSON sidecars.

Prompts are the opening frames of *validation* works (music the model never trained on), so a sample shows
what the model makes of an unseen beginning; with ``prompt_frames=0`` generation starts from a single frame of
the prompt work (the model needs at least one token).

A sample may be longer than the model's context: past it, generation slides a frame-aligned window over the
piece (:func:`govjax.models.generate.generate_sliding`), so every new token sees the last ``context - 1`` tokens
or fewer, from a frame boundary. Samples that fit the context are exactly what one ``generate`` call with
``PRNGKey(seed)`` gives. A temperature of 0 means greedy decoding (the most likely token every time).

Invalid requests (``num_samples < 1``, ``num_frames`` not above the prompt, a negative or non-finite
temperature, an output path that a sidecar would overwrite) raise
:class:`~govjax.models.generate.GenerationError`, a ``UserError``, before anything is generated or written.

Example (after ``govjax train --config experiments/configs/tiny.py --workdir runs/tiny``)::

    samples = sample_run("runs/tiny", num_samples=2, num_frames=256, seed=0)  # 256 frames: past the context
    write_samples(samples, "runs/tiny/samples/sample.mid")

The output paths (and the refusal of colliding ones) can be checked without a run:

  >>> [p["midi"].name for p in output_paths("s.mid", 2)]
  ['s-0.mid', 's-1.mid']
  >>> try:
  ...   output_paths("s.json", 1)
  ... except GenerationError as error:
  ...   print(error)
  output s.json: the sample and its .json sidecar would both be s.json; give an output path ending in .mid
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np

from govjax.core.text import terminal_safe
from govjax.data import tokenizer
from govjax.models.generate import GenerationError, check_temperature, generate_sliding
from govjax.train import data as training_data
from govjax.train.loop import restore_model

__all__ = ["Sample", "check_request", "output_paths", "prompts_from_works", "sample_model", "sample_run",
           "write_samples"]


@dataclasses.dataclass(frozen=True)
class Sample:
  """One generated chorale.

  Attributes:
    tokens: int32 ``[num_frames * 4]``, prompt included.
    prompt_work_id: the held-out work whose opening was the prompt.
    prompt_tokens: how many of ``tokens`` are the prompt.
    seed: the sampling seed; all samples of one call are drawn together with ``PRNGKey(seed)`` (past the
      context, window ``c`` uses ``fold_in(PRNGKey(seed), c)``).
    temperature: softmax temperature (0 = greedy).
    context: the model's context in tokens (0 when unknown); a sample longer than it used a sliding window.
  """

  tokens: np.ndarray
  prompt_work_id: str
  prompt_tokens: int
  seed: int
  temperature: float
  context: int = 0


def _count(value, name: str, option: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
    raise GenerationError(f"{name} ({option}) must be an integer >= {minimum}, got {value!r}")
  return int(value)


def check_request(*, num_samples: int, num_frames: int, prompt_frames: int, temperature: float) -> float:
  """Validates a sampling request before any model is loaded.

  Args:
    num_samples: samples to draw (``>= 1``).
    num_frames: frames per sample, prompt included (``>= 1`` and more than the prompt); any length, past the
      context too.
    prompt_frames: opening frames of the prompt work (``>= 0``; 0 means one frame).
    temperature: finite and ``>= 0``; 0 means greedy.

  Returns:
    The temperature as a float.

  Raises:
    GenerationError: an invalid value (the message names the option and what is allowed).

  Example:
    >>> check_request(num_samples=1, num_frames=8, prompt_frames=2, temperature=1)
    1.0
  """
  _count(num_samples, "num_samples", "--num", 1)
  _count(num_frames, "num_frames", "--frames", 1)
  prompt = max(_count(prompt_frames, "prompt_frames", "--prompt-frames", 0), 1)
  if num_frames <= prompt:
    raise GenerationError(f"num_frames (--frames) must exceed the prompt's {prompt} frame(s) (--prompt-frames), "
                          f"got {num_frames}: nothing would be generated")
  try:
    return check_temperature(temperature)
  except GenerationError as error:
    raise GenerationError(f"{error} (--temperature)") from None


def prompts_from_works(works, *, num_samples: int, prompt_frames: int) -> list[tuple[str, np.ndarray]]:
  """The opening ``prompt_frames`` frames (at least one) of works, cycling through them.

  Args:
    works: works with ``work_id`` and ``tokens`` (e.g. ``WorkCatalogue.heldout_works``).
    num_samples: number of prompts (``>= 1``).
    prompt_frames: frames per prompt.

  Returns:
    ``[(work_id, tokens int32 [4 * prompt_frames])]``.

  Raises:
    GenerationError: ``num_samples < 1``, a negative ``prompt_frames``, or a work shorter than the prompt.
  """
  _count(num_samples, "num_samples", "--num", 1)
  frames = max(_count(prompt_frames, "prompt_frames", "--prompt-frames", 0), 1)
  if not works:
    raise ValueError("no works to take prompts from")
  out = []
  for i in range(num_samples):
    work = works[i % len(works)]
    tokens = np.asarray(work.tokens, np.int32)[: frames * tokenizer.NUM_VOICES]
    if tokens.size < frames * tokenizer.NUM_VOICES:
      raise GenerationError(f"prompt work {terminal_safe(work.work_id)} has {tokens.size // tokenizer.NUM_VOICES} "
                            f"frame(s), fewer than the {frames} asked for (--prompt-frames)")
    out.append((work.work_id, tokens))
  return out


def sample_model(model, prompts, *, num_frames: int, seed: int, temperature: float = 1.0) -> list[Sample]:
  """Continues each prompt to ``num_frames`` frames in total, sliding a window past the model's context.

  Args:
    model: a trained ``Transformer``.
    prompts: ``[(work_id, tokens)]`` from :func:`prompts_from_works`; all of the same length.
    num_frames: frames of each sample, prompt included (any length; more than the prompt's frames).
    seed: sampling seed.
    temperature: softmax temperature, finite and ``>= 0``; 0 means greedy.

  Returns:
    One :class:`Sample` per prompt, each of exactly ``num_frames * 4`` tokens.

  Raises:
    GenerationError: no prompts, an invalid ``num_frames`` or temperature, a prompt that leaves nothing to
      generate.
  """
  if not len(prompts):
    raise GenerationError("num_samples (--num) must be >= 1, got 0 prompts")
  _count(num_frames, "num_frames", "--frames", 1)
  temperature = check_temperature(temperature)
  total = num_frames * tokenizer.NUM_VOICES
  prompt = np.stack([p for _, p in prompts])
  if prompt.shape[1] >= total:
    raise GenerationError(f"num_frames (--frames) {num_frames} leaves nothing to generate after a prompt of "
                          f"{prompt.shape[1] // tokenizer.NUM_VOICES} frame(s)")
  out = generate_sliding(model, prompt, num_tokens=total - prompt.shape[1], rng=jax.random.PRNGKey(seed),
                         temperature=max(temperature, 1e-6), greedy=temperature == 0, align=tokenizer.NUM_VOICES)
  out = np.asarray(out, np.int32)
  context = int(model.config.context)
  return [Sample(out[i], work_id, prompt.shape[1], seed, temperature, context)
          for i, (work_id, _) in enumerate(prompts)]


def sample_run(workdir, *, num_samples: int = 4, num_frames: int = 64, prompt_frames: int = 4, seed: int = 0,
               temperature: float = 1.0, step: int | None = None, data=None) -> list[Sample]:
  """Samples from the latest (or ``step``) checkpoint of a run, prompted by its held-out works.

  Args:
    workdir: a run directory written by ``govjax train``.
    num_samples, num_frames, prompt_frames, seed, temperature: see :func:`check_request` and
      :func:`sample_model`.
    step: checkpoint step (latest when None).
    data: the run's ``TrainingData`` (rebuilt from the run's config when None).

  Returns:
    The samples.

  Raises:
    GenerationError: an invalid request, found before the run is loaded.
  """
  temperature = check_request(num_samples=num_samples, num_frames=num_frames, prompt_frames=prompt_frames,
                              temperature=temperature)
  model, config, _ = restore_model(workdir, step=step)
  if data is None:
    data = training_data.build_training_data(config)
  works = data.catalogue.heldout_works or data.catalogue.works
  prompts = prompts_from_works(works, num_samples=num_samples, prompt_frames=prompt_frames)
  return sample_model(model, prompts, num_frames=num_frames, seed=seed, temperature=temperature)


def output_paths(out: str | pathlib.Path, num_samples: int, *, musicxml: bool = False
                 ) -> list[dict[str, pathlib.Path]]:
  """The files :func:`write_samples` writes for ``num_samples`` samples, checked not to overwrite each other.

  Sample ``i`` is ``out`` itself when there is one sample, else ``<stem>-<i><suffix>`` (suffix ``.mid`` when
  ``out`` has none); its sidecars replace the suffix with ``.json`` (prompt, seed, temperature), ``.npy``
  (tokens) and, with ``musicxml``, ``.musicxml``.

  Args:
    out: the output MIDI path.
    num_samples: number of samples (``>= 1``).
    musicxml: whether MusicXML files are written too.

  Returns:
    One ``{"midi", "json", "npy"[, "musicxml"]}`` dict of paths per sample.

  Raises:
    GenerationError: ``num_samples < 1``, or two of the files would be the same (e.g. ``out`` ends in
      ``.json``, ``.npy`` or, with ``musicxml``, ``.musicxml``); compared case-insensitively.
  """
  _count(num_samples, "num_samples", "--num", 1)
  out = pathlib.Path(out)
  sidecars = {"json": ".json", "npy": ".npy", **({"musicxml": ".musicxml"} if musicxml else {})}
  rows, seen = [], {}
  for i in range(num_samples):
    midi = out if num_samples == 1 else out.with_name(f"{out.stem}-{i}{out.suffix or '.mid'}")
    row = {"midi": midi, **{kind: midi.with_suffix(suffix) for kind, suffix in sidecars.items()}}
    for kind, path in row.items():
      key = str(path).casefold()
      if key in seen:
        first = seen[key]
        raise GenerationError(f"output {terminal_safe(str(out))}: {_label(first)} and {_label(kind)} would both be "
                              f"{terminal_safe(str(path))}; give an output path ending in .mid")
      seen[key] = kind
    rows.append(row)
  return rows


def _label(kind: str) -> str:
  return "the sample" if kind == "midi" else f"its .{kind} sidecar"


def write_samples(samples: list[Sample], out: str | pathlib.Path, *, musicxml: bool = False,
                  steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER) -> list[pathlib.Path]:
  """Writes samples as MIDI (``out``, numbered ``name-0.mid``, ... when there are several), optionally MusicXML,
  each with a ``.json`` sidecar (prompt work, seed, temperature, frames) and its tokens (``.npy``).

  Args:
    samples: the samples.
    out: the output MIDI path (see :func:`output_paths` for the names; colliding names are refused before
      anything is written).
    musicxml: also write MusicXML.
    steps_per_quarter: grid resolution of the tokens.

  Returns:
    The MIDI paths.

  Raises:
    GenerationError: no samples, or an output path that a sidecar would overwrite.
  """
  rows = output_paths(out, len(samples), musicxml=musicxml)
  paths = []
  for i, (sample, row) in enumerate(zip(samples, rows, strict=True)):
    path = row["midi"]
    score = tokenizer.decode_tokens(sample.tokens, steps_per_quarter=steps_per_quarter,
                                    title=f"govjax sample {i} (prompt: {sample.prompt_work_id})")
    tokenizer.write_midi(score, path)
    if musicxml:
      tokenizer.write_musicxml(score, row["musicxml"])
    np.save(row["npy"], sample.tokens)
    row["json"].write_text(json.dumps({
        "prompt_work_id": sample.prompt_work_id, "prompt_tokens": sample.prompt_tokens, "seed": sample.seed,
        "temperature": sample.temperature, "greedy": sample.temperature == 0, "num_tokens": int(sample.tokens.size),
        "num_frames": int(sample.tokens.size) // tokenizer.NUM_VOICES, "context": sample.context,
        "sliding_window": bool(sample.context) and int(sample.tokens.size) > sample.context}, indent=2))
    paths.append(path)
  return paths
