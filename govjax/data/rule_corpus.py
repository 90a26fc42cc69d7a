"""A controlled corpus for the premise experiment: a learnable cadence rule and verbatim secrets in restricted works.

The question it serves: can a model learn a musical *rule* from restricted works (the craft) without memorizing
the works themselves (their verbatim content)? Everything is generated (no download), in the chorale tokenizer's
vocabulary (:mod:`govjax.data.tokenizer`: frame-major SATB, ``PITCH_OFFSET + midi - MIN_PITCH``, ``HOLD``).

- **Background** (every work): a major key per work (12 keys); a Markov chain over the diatonic triads I, ii, IV,
  V, vi; each chord is one onset frame (bass on the root, upper voices on the chord tone nearest the previous
  pitch, chosen at random among the two nearest) and one frame in which each voice holds (p = 0.6) or moves to
  another chord tone.
- **The rule** (restricted works and held-out *rule* pieces only): a Neapolitan-sixth trigger frame (bII6: bass on
  scale degree 4, never produced by the background) is always followed by the same six-frame cadence formula,
  cadential 6-4, V7, I and a soprano turn (re, ti, do) over held lower voices, transposed to the work's key, with
  one varied position (the V7's alto takes ti or the fifth at random). Its 24 tokens after the trigger are the
  *rule positions* (role :data:`RULE`).
- **Control** pieces: the same trigger followed by six frames of background (the rule does not hold); the same
  positions carry role :data:`RULE`, so a model that learned the rule does *worse* there.
- **Secrets** (restricted works only): one per work, 8 frames of uniformly random pitch tokens in the second half
  of one window (role :data:`SECRET`); references for exposure are other random fillings of the same slot.

A work is ``windows`` windows of ``FRAMES_PER_WINDOW`` frames (64 tokens, the model context); rule instances and
secrets never straddle a window, and each instance or secret sits in its own window.

Example:
  >>> corpus = make_rule_corpus(seed=0, num_train=8, restricted_fraction=0.5, num_heldout=2, windows=4)
  >>> corpus.train_tokens.shape, int(corpus.restricted.sum())
  ((32, 64), 4)
  >>> sorted(corpus.heldout), corpus.heldout["rule"].tokens.shape
  (['background', 'control', 'rule'], (8, 64))
  >>> int((corpus.train_roles == SECRET).sum()), int((corpus.heldout["rule"].roles == RULE).sum())
  (128, 144)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from govjax.data.tokenizer import HOLD, MAX_PITCH, MIN_PITCH, PITCH_OFFSET, VOCAB_SIZE

__all__ = ["BACKGROUND", "FRAMES_PER_WINDOW", "RULE", "SECRET", "SECRET_FRAMES", "TRIGGER", "RuleCorpus", "Split",
           "make_rule_corpus", "rule_formula", "secret_references"]

BACKGROUND, TRIGGER, RULE, SECRET = 0, 1, 2, 3
FRAMES_PER_WINDOW = 16
SECRET_FRAMES = 8
RULE_FRAMES = 6
INSTANCES_PER_WORK = 3
_DEGREES = (0, 2, 4, 5, 7, 9, 11)  # major scale, semitones above the tonic
_CHORDS = (0, 1, 3, 4, 5)  # I, ii, IV, V, vi as scale-degree indices
_TRANSITIONS = np.array([  # from I, ii, IV, V, vi to the same list
    [0.05, 0.20, 0.35, 0.30, 0.10],
    [0.10, 0.05, 0.10, 0.70, 0.05],
    [0.35, 0.15, 0.05, 0.40, 0.05],
    [0.60, 0.05, 0.05, 0.05, 0.25],
    [0.10, 0.40, 0.35, 0.10, 0.05],
])
_RANGES = ((60, 77), (55, 70), (48, 64))  # soprano, alto, tenor (the bass is on the root)


@dataclasses.dataclass(frozen=True)
class Split:
  """Windows of one set of works.

  Attributes:
    tokens: int32 ``[N, 64]`` windows.
    roles: int8 ``[N, 64]`` role of each token (:data:`BACKGROUND`, :data:`TRIGGER`, :data:`RULE`, :data:`SECRET`).
    work: int32 ``[N]`` index of the window's work within the split.
  """

  tokens: np.ndarray
  roles: np.ndarray
  work: np.ndarray


@dataclasses.dataclass(frozen=True)
class RuleCorpus:
  """The training works and held-out pieces of one seed.

  Attributes:
    train_tokens, train_roles, train_work: the training windows (as in :class:`Split`).
    restricted: bool ``[W]`` per training work: True for restricted works (they hold the rule and a secret).
    secrets: ``[(window_row, start)]`` per restricted work, in work order: where its secret lies in
      ``train_tokens`` (``start`` = first token of the secret within the window).
    heldout: ``{"rule", "control", "background"}`` -> :class:`Split` of never-trained pieces.
  """

  train_tokens: np.ndarray
  train_roles: np.ndarray
  train_work: np.ndarray
  restricted: np.ndarray
  secrets: list
  heldout: dict

  @property
  def permitted_rows(self) -> np.ndarray:
    """Row indices of the windows of permitted works."""
    return np.flatnonzero(~self.restricted[self.train_work])

  @property
  def restricted_rows(self) -> np.ndarray:
    """Row indices of the windows of restricted works."""
    return np.flatnonzero(self.restricted[self.train_work])


def _token(midi: int) -> int:
  return PITCH_OFFSET + int(np.clip(midi, MIN_PITCH, MAX_PITCH)) - MIN_PITCH


def _chord_pcs(tonic: int, chord: int) -> list[int]:
  return [(tonic + _DEGREES[(chord + k) % 7]) % 12 for k in (0, 2, 4)]


def _nearest(pcs: list[int], previous: int, low: int, high: int, rng: np.random.Generator) -> int:
  options = sorted((p for p in range(low, high + 1) if p % 12 in pcs), key=lambda p: (abs(p - previous), p))
  return int(options[int(rng.integers(0, min(2, len(options))))])


def _background(rng: np.random.Generator, tonic: int, frames: int, state: dict) -> list[list[int]]:
  """``frames`` frames of background music (midi or HOLD per voice, SATB), continuing from ``state``."""
  out: list[list[int]] = []
  while len(out) < frames:
    chord = int(rng.choice(len(_CHORDS), p=_TRANSITIONS[state["chord"]]))
    state["chord"] = chord
    pcs = _chord_pcs(tonic, _CHORDS[chord])
    bass = 40 + (pcs[0] - 40) % 12
    upper = [_nearest(pcs, state["voices"][v], *_RANGES[v], rng) for v in range(3)]
    state["voices"] = upper
    out.append([*upper, bass])
    if len(out) < frames:
      second = []
      for v in range(3):
        if rng.random() < 0.6:
          second.append(HOLD)
        else:
          moved = _nearest([p for p in pcs if p != upper[v] % 12], upper[v], *_RANGES[v], rng)
          state["voices"][v] = moved
          second.append(moved)
      out.append([*second, HOLD])
  return out


def rule_formula(tonic: int, variant: int) -> tuple[list[int], list[list[int]]]:
  """The trigger frame and the six formula frames (midi or HOLD, SATB) in the key of ``tonic`` (pitch class).

  Args:
    tonic: pitch class of the key (0 = C).
    variant: 0 or 1, the one varied position (the V7's alto: ti or the fifth).

  Returns:
    ``(trigger, frames)``.
  """
  t0 = 48 + tonic
  trigger = [t0 + 17, t0 + 13, t0 + 8, t0 - 7]  # bII6: F, Db, Ab over F (in C)
  frames = [
      [t0 + 16, t0 + 12, t0 + 7, t0 - 5],  # cadential 6-4
      [t0 + 14, t0 + (11 if variant == 0 else 7), t0 + 5, t0 - 5],  # V7
      [t0 + 12, t0 + 7, t0 + 4, t0 - 12],  # I
      [t0 + 14, HOLD, HOLD, HOLD],  # the turn: re
      [t0 + 11, HOLD, HOLD, HOLD],  # ti
      [t0 + 12, HOLD, HOLD, HOLD],  # do
  ]
  return trigger, frames


def _encode(frames: list[list[int]]) -> np.ndarray:
  return np.array([tok if tok == HOLD else _token(tok) for frame in frames for tok in frame], np.int32)


def _window(rng: np.random.Generator, tonic: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
  """One 16-frame window: ``kind`` is "plain", "rule", "control" or "secret"."""
  state = {"chord": 0, "voices": [t + 0 for t in (67, 64, 55)]}
  roles = np.zeros(FRAMES_PER_WINDOW * 4, np.int8)
  if kind in ("rule", "control"):
    at = int(rng.integers(1, FRAMES_PER_WINDOW - RULE_FRAMES))  # trigger frame; the formula fits after it
    frames = _background(rng, tonic, at, state)
    trigger, formula = rule_formula(tonic, int(rng.integers(0, 2)))
    frames.append(trigger)
    if kind == "rule":
      frames += formula
      state = {"chord": 0, "voices": formula[2][:3]}
    else:
      state["chord"] = 1  # the trigger as a pre-dominant; the background goes on
      frames += _background(rng, tonic, RULE_FRAMES, state)
    frames += _background(rng, tonic, FRAMES_PER_WINDOW - len(frames), state)
    roles[at * 4:(at + 1) * 4] = TRIGGER
    roles[(at + 1) * 4:(at + 1 + RULE_FRAMES) * 4] = RULE
    return _encode(frames), roles
  frames = _background(rng, tonic, FRAMES_PER_WINDOW, state)
  tokens = _encode(frames)
  if kind == "secret":
    start = (FRAMES_PER_WINDOW - SECRET_FRAMES) * 4
    tokens[start:] = rng.integers(PITCH_OFFSET, VOCAB_SIZE, size=SECRET_FRAMES * 4)
    roles[start:] = SECRET
  return tokens, roles


def _work(rng: np.random.Generator, windows: int, kinds: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
  """One work: ``windows`` windows in one random key, ``kinds`` of them special (the rest plain), shuffled."""
  tonic = int(rng.integers(0, 12))
  plan = [k for k, n in kinds.items() for _ in range(n)]
  plan += ["plain"] * (windows - len(plan))
  plan = [plan[i] for i in rng.permutation(windows)]
  pairs = [_window(rng, tonic, kind) for kind in plan]
  return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _split(rng: np.random.Generator, num: int, windows: int, kinds: dict[str, int]) -> Split:
  works = [_work(rng, windows, kinds) for _ in range(num)]
  return Split(tokens=np.concatenate([w[0] for w in works]), roles=np.concatenate([w[1] for w in works]),
               work=np.repeat(np.arange(num, dtype=np.int32), windows))


def make_rule_corpus(*, seed: int, num_train: int = 48, restricted_fraction: float = 0.5, num_heldout: int = 24,
                     windows: int = 8, instances: int = INSTANCES_PER_WORK) -> RuleCorpus:
  """Generates the corpus of one seed (deterministic in ``seed``; the held-out pieces do not depend on the share).

  Args:
    seed: the corpus seed.
    num_train: training works.
    restricted_fraction: share of training works that are restricted (they hold the rule and one secret each).
    num_heldout: works per held-out kind (rule, control, background).
    windows: windows per work (>= ``instances + 1``).
    instances: rule instances per restricted or rule work (one window each).

  Returns:
    :class:`RuleCorpus`.
  """
  if windows < instances + 1:
    raise ValueError(f"windows ({windows}) must exceed instances ({instances}): the secret needs its own window")
  if not 0.0 <= restricted_fraction <= 1.0:
    raise ValueError(f"restricted_fraction must be in [0, 1], got {restricted_fraction}")
  heldout_rng, train_rng, pick_rng = (np.random.default_rng([seed, k]) for k in range(3))
  heldout = {
      "rule": _split(heldout_rng, num_heldout, windows, {"rule": instances}),
      "control": _split(heldout_rng, num_heldout, windows, {"control": instances}),
      "background": _split(heldout_rng, num_heldout, windows, {}),
  }
  num_restricted = int(round(restricted_fraction * num_train))
  restricted = np.zeros(num_train, bool)
  restricted[pick_rng.permutation(num_train)[:num_restricted]] = True
  tokens, roles = [], []
  for is_restricted in restricted:
    kinds = {"rule": instances, "secret": 1} if is_restricted else {}
    t, r = _work(train_rng, windows, kinds)
    tokens.append(t)
    roles.append(r)
  train_tokens, train_roles = np.concatenate(tokens), np.concatenate(roles)
  train_work = np.repeat(np.arange(num_train, dtype=np.int32), windows)
  secrets = []
  for row in np.flatnonzero((train_roles == SECRET).any(axis=1)):
    secrets.append((int(row), int(np.flatnonzero(train_roles[row] == SECRET)[0])))
  return RuleCorpus(train_tokens=train_tokens, train_roles=train_roles, train_work=train_work, restricted=restricted,
                    secrets=secrets, heldout=heldout)


def secret_references(window: np.ndarray, start: int, num: int, seed: int) -> np.ndarray:
  """``num`` copies of ``window`` whose secret slot (``start`` to the end) holds other random fillings.

  Args:
    window: int32 ``[T]`` the window holding the secret.
    start: first token of the secret.
    num: references.
    seed: their seed.

  Returns:
    int32 ``[num, T]``.
  """
  rng = np.random.default_rng(seed)
  out = np.repeat(window[None], num, axis=0)
  out[:, start:] = rng.integers(PITCH_OFFSET, VOCAB_SIZE, size=(num, window.size - start))
  return out
