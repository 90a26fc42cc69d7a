"""Sampling chorales from a trained run: prompts from held-out works, decoding, MIDI/MusicXML and JSON sidecars.

Prompts are the opening frames of *validation* works (music the model never trained on), so a sample shows
what the model makes of an unseen beginning; with ``prompt_frames=0`` generation starts from a single frame of
the prompt work (the model needs at least one token).

Example (after ``govjax train --config experiments/configs/tiny.py --workdir runs/tiny``)::

    samples = sample_run("runs/tiny", num_samples=2, seed=0)
    write_samples(samples, "runs/tiny/samples/sample.mid")
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np

from govjax.data import tokenizer
from govjax.models.generate import generate
from govjax.train import data as training_data
from govjax.train.loop import restore_model


@dataclasses.dataclass(frozen=True)
class Sample:
  """One generated chorale.

  Attributes:
    tokens: int32 ``[num_frames * 4]``, prompt included.
    prompt_work_id: the held-out work whose opening was the prompt.
    prompt_tokens: how many of ``tokens`` are the prompt.
    seed: the sampling seed; the sample is ``fold_in(PRNGKey(seed), index)``.
    temperature: softmax temperature (0 = greedy).
  """

  tokens: np.ndarray
  prompt_work_id: str
  prompt_tokens: int
  seed: int
  temperature: float


def prompts_from_works(works, *, num_samples: int, prompt_frames: int) -> list[tuple[str, np.ndarray]]:
  """The opening ``prompt_frames`` frames (at least one) of works, cycling through them.

  Args:
    works: works with ``work_id`` and ``tokens`` (e.g. ``TrainingData.heldout_works``).
    num_samples: number of prompts.
    prompt_frames: frames per prompt.

  Returns:
    ``[(work_id, tokens int32 [4 * prompt_frames])]``.
  """
  if not works:
    raise ValueError("no works to take prompts from")
  frames = max(prompt_frames, 1)
  out = []
  for i in range(num_samples):
    work = works[i % len(works)]
    tokens = np.asarray(work.tokens, np.int32)[: frames * tokenizer.NUM_VOICES]
    out.append((work.work_id, tokens))
  return out


def sample_model(model, prompts, *, num_frames: int, seed: int, temperature: float = 1.0) -> list[Sample]:
  """Continues each prompt to ``num_frames`` frames in total (capped by the model's context).

  Args:
    model: a trained ``Transformer``.
    prompts: ``[(work_id, tokens)]`` from :func:`prompts_from_works`; all of the same length.
    num_frames: frames of each sample, prompt included.
    seed: sampling seed.
    temperature: softmax temperature; 0 means greedy.

  Returns:
    One :class:`Sample` per prompt.
  """
  total = min(num_frames * tokenizer.NUM_VOICES, model.config.context)
  total -= total % tokenizer.NUM_VOICES
  prompt = np.stack([p for _, p in prompts])
  if prompt.shape[1] >= total:
    raise ValueError(f"prompt of {prompt.shape[1]} tokens leaves nothing to generate in {total} tokens")
  out = generate(model, prompt, num_tokens=total - prompt.shape[1], rng=jax.random.PRNGKey(seed),
                 temperature=max(temperature, 1e-6), greedy=temperature == 0)
  out = np.asarray(out, np.int32)
  return [Sample(out[i], work_id, prompt.shape[1], seed, temperature) for i, (work_id, _) in enumerate(prompts)]


def sample_run(workdir, *, num_samples: int = 4, num_frames: int = 64, prompt_frames: int = 4, seed: int = 0,
               temperature: float = 1.0, step: int | None = None, data=None) -> list[Sample]:
  """Samples from the latest (or ``step``) checkpoint of a run, prompted by its held-out works.

  Args:
    workdir: a run directory written by ``govjax train``.
    num_samples, num_frames, prompt_frames, seed, temperature: see :func:`sample_model`.
    step: checkpoint step (latest when None).
    data: the run's ``TrainingData`` (rebuilt from the run's config when None).

  Returns:
    The samples.
  """

  model, config, _ = restore_model(workdir, step=step)
  if data is None:
    data = training_data.build_training_data(config)
  works = data.heldout_works or data.works
  prompts = prompts_from_works(works, num_samples=num_samples, prompt_frames=prompt_frames)
  return sample_model(model, prompts, num_frames=num_frames, seed=seed, temperature=temperature)


def write_samples(samples: list[Sample], out: str | pathlib.Path, *, musicxml: bool = False,
                  steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER) -> list[pathlib.Path]:
  """Writes samples as MIDI (``out``, numbered ``name-0.mid``, ... when there are several), optionally MusicXML,
  each with a ``.json`` sidecar (prompt work, seed, temperature) and its tokens (``.npy``).

  Returns:
    The MIDI paths.
  """
  out = pathlib.Path(out)
  paths = []
  for i, sample in enumerate(samples):
    path = out if len(samples) == 1 else out.with_name(f"{out.stem}-{i}{out.suffix or '.mid'}")
    score = tokenizer.decode_tokens(sample.tokens, steps_per_quarter=steps_per_quarter,
                                    title=f"govjax sample {i} (prompt: {sample.prompt_work_id})")
    tokenizer.write_midi(score, path)
    if musicxml:
      tokenizer.write_musicxml(score, path.with_suffix(".musicxml"))
    np.save(path.with_suffix(".npy"), sample.tokens)
    path.with_suffix(".json").write_text(json.dumps({
        "prompt_work_id": sample.prompt_work_id, "prompt_tokens": sample.prompt_tokens, "seed": sample.seed,
        "temperature": sample.temperature, "num_tokens": int(sample.tokens.size)}, indent=2))
    paths.append(path)
  return paths
