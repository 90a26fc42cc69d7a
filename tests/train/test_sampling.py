"""Sampling: request checks, samples of any length (sliding window past the context), sidecar names."""

import json
import types

import jax
import numpy as np
import pytest
from flax import nnx

from govjax.core.errors import UserError
from govjax.data import tokenizer
from govjax.models.generate import GenerationError, generate
from govjax.models.transformer import Transformer, TransformerConfig
from govjax.train.sampling import (
    Sample,
    check_request,
    output_paths,
    prompts_from_works,
    sample_model,
    write_samples,
)

CONTEXT = 32


@pytest.fixture(scope="module")
def model():
  return Transformer(TransformerConfig(vocab_size=tokenizer.VOCAB_SIZE, num_layers=1, width=16, num_heads=2,
                                       context=CONTEXT), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def works():
  rng = np.random.default_rng(0)
  return [types.SimpleNamespace(work_id=f"w/{i}", tokens=rng.integers(3, tokenizer.VOCAB_SIZE, 40).astype(np.int32))
          for i in range(2)]


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_samples_within_the_context_are_one_generate_call_with_the_seed(model, works, temperature):
  prompts = prompts_from_works(works, num_samples=3, prompt_frames=2)
  samples = sample_model(model, prompts, num_frames=8, seed=5, temperature=temperature)
  prompt = np.stack([p for _, p in prompts])
  ref = generate(model, prompt, num_tokens=32 - 8, rng=jax.random.PRNGKey(5), temperature=max(temperature, 1e-6),
                 greedy=temperature == 0)
  np.testing.assert_array_equal(np.stack([s.tokens for s in samples]), np.asarray(ref))
  assert [s.prompt_work_id for s in samples] == ["w/0", "w/1", "w/0"]


def test_samples_past_the_context_have_the_requested_frames(model, works):
  prompts = prompts_from_works(works, num_samples=2, prompt_frames=2)
  short = sample_model(model, prompts, num_frames=CONTEXT // 4, seed=1)
  long = sample_model(model, prompts, num_frames=40, seed=1)
  for within, past, (_, prompt) in zip(short, long, prompts, strict=True):
    assert past.tokens.shape == (40 * tokenizer.NUM_VOICES,) and past.tokens.dtype == np.int32
    assert past.tokens.min() >= 0 and past.tokens.max() < tokenizer.VOCAB_SIZE
    np.testing.assert_array_equal(past.tokens[:8], prompt)
    np.testing.assert_array_equal(past.tokens[:CONTEXT], within.tokens)  # same RNG use for the first window
    assert past.context == CONTEXT
    score = tokenizer.decode_tokens(past.tokens)
    assert len(score.parts) == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_samples": 0}, r"num_samples \(--num\) must be an integer >= 1, got 0"),
    ({"num_samples": -2}, r"num_samples \(--num\) must be an integer >= 1"),
    ({"num_frames": 0}, r"num_frames \(--frames\) must be an integer >= 1"),
    ({"num_frames": 2}, r"num_frames \(--frames\) must exceed the prompt's 2 frame"),
    ({"prompt_frames": -1}, r"prompt_frames \(--prompt-frames\) must be an integer >= 0"),
    ({"temperature": -1.0}, r"temperature must be a finite number >= 0 \(0 = greedy\), got -1.0 \(--temperature\)"),
    ({"temperature": float("nan")}, r"temperature must be a finite number >= 0"),
    ({"temperature": float("inf")}, r"temperature must be a finite number >= 0"),
])
def test_invalid_requests_are_one_line_user_errors(kwargs, message):
  request = {"num_samples": 1, "num_frames": 8, "prompt_frames": 2, "temperature": 1.0, **kwargs}
  with pytest.raises(GenerationError, match=message) as caught:
    check_request(**request)
  assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)


def test_library_functions_check_their_arguments(model, works):
  with pytest.raises(GenerationError, match="--num"):
    prompts_from_works(works, num_samples=0, prompt_frames=2)
  with pytest.raises(GenerationError, match="w/0 has 10 frame"):
    prompts_from_works(works, num_samples=1, prompt_frames=12)
  prompts = prompts_from_works(works, num_samples=1, prompt_frames=2)
  with pytest.raises(GenerationError, match="temperature"):
    sample_model(model, prompts, num_frames=8, seed=0, temperature=-0.5)
  with pytest.raises(GenerationError, match="leaves nothing to generate"):
    sample_model(model, prompts, num_frames=2, seed=0)
  with pytest.raises(GenerationError, match="--num"):
    sample_model(model, [], num_frames=8, seed=0)


@pytest.mark.parametrize(("out", "musicxml"), [("s.json", False), ("s.npy", False), ("s.JSON", False),
                                               ("s.musicxml", True), ("dir/take.Npy", False)])
def test_an_output_that_a_sidecar_would_overwrite_is_refused(tmp_path, out, musicxml):
  sample = Sample(np.array([40, 36, 31, 24, 2, 2, 2, 2], np.int32), "w/0", 4, 0, 1.0, CONTEXT)
  for num in (1, 2):
    with pytest.raises(GenerationError, match="would both be") as caught:
      write_samples([sample] * num, tmp_path / out, musicxml=musicxml)
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
  assert list(tmp_path.rglob("*")) == []  # nothing written


def test_output_names_never_collide_with_sidecars():
  for out in ("s.mid", "s", "s.musicxml", "a.b.midi"):
    rows = output_paths(out, 3)
    names = [str(p).casefold() for row in rows for p in row.values()]
    assert len(names) == len(set(names)) == 9
  assert [str(p) for p in output_paths("s", 1)[0].values()] == ["s", "s.json", "s.npy"]
  assert str(output_paths("s", 2)[1]["midi"]) == "s-1.mid"


def test_write_samples_sidecar_records_length_and_window(tmp_path, model, works):
  prompts = prompts_from_works(works, num_samples=1, prompt_frames=1)
  samples = sample_model(model, prompts, num_frames=12, seed=0, temperature=0)
  [path] = write_samples(samples, tmp_path / "x.mid")
  meta = json.loads(path.with_suffix(".json").read_text())
  assert (meta["num_frames"], meta["num_tokens"], meta["context"]) == (12, 48, CONTEXT)
  assert meta["sliding_window"] is True and meta["greedy"] is True and meta["temperature"] == 0.0
  np.testing.assert_array_equal(np.load(path.with_suffix(".npy")), samples[0].tokens)
