"""Functional train state, optimizer and the jitted train/eval steps.

The model is split once with ``nnx.split`` into a static ``graphdef`` and its ``nnx.Param`` state; the train state
is a plain pytree (so Orbax saves it and ``jax.jit`` donates it) and the step merges the graphdef back inside jit.
A step takes the batch and a ``[B, L]`` group mask (1 = the row's gradient may reach depth group l); the loss
function decides how the mask is honoured (see ``govjax.routing``). Randomness per step is
``fold_in(state.rng, step)``, so a resumed run draws exactly what an uninterrupted one would.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from govjax.core.config import TrainConfig, ModelSpec
  >>> cfg = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=8), num_steps=2)
  >>> graphdef, state, tx, schedule = create_train_state(cfg, vocab_size=10)
  >>> step = make_train_step(graphdef, tx, plain_loss)
  >>> batch = {"tokens": jnp.ones((2, 8), jnp.int32)}
  >>> state, metrics = step(state, batch, jnp.ones((2, 3)))
  >>> int(state.step), sorted(metrics)[:3]
  (1, ['contributors', 'grad_norm', 'group_mask'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from govjax.core.config import TrainConfig
from govjax.core.losses import per_example_next_token_loss
from govjax.models.transformer import Transformer, TransformerConfig
from govjax.train.gradients import GradientStrategy, batch_gradients

LossFn = Callable[[nnx.Module, dict, jax.Array, jax.Array], tuple[jax.Array, dict]]
NOISE_STREAM = 0x44505347  # "DPSG": the optimizer's noise key is fold_in(step key, NOISE_STREAM)


class TrainState(NamedTuple):
  """Everything a step reads and writes.

  Attributes:
    step: int32 scalar, the number of steps taken.
    params: ``nnx.State`` of the model's ``nnx.Param`` variables.
    opt_state: the optax state.
    rng: uint32[2] base key; step ``s`` uses ``fold_in(rng, s)``.
    extras: dict of further device state (e.g. the probe's per-example state); ``{}`` when unused.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  extras: dict


def model_config(config: TrainConfig, vocab_size: int) -> TransformerConfig:
  """The :class:`TransformerConfig` a :class:`TrainConfig` describes."""
  spec = config.model
  return TransformerConfig(
      vocab_size=vocab_size,
      num_layers=spec.num_layers,
      width=spec.width,
      num_heads=spec.num_heads,
      context=spec.context,
      mlp_ratio=spec.mlp_ratio,
      region_width=spec.region_width,
      dtype=spec.precision,
      remat=spec.remat,
  )


def make_schedule(config: TrainConfig) -> optax.Schedule:
  """Linear warm-up then cosine decay to 10% of the peak learning rate."""
  warmup = min(config.warmup_steps, max(config.num_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=config.learning_rate,
      warmup_steps=warmup,
      decay_steps=max(config.num_steps, warmup + 1),
      end_value=config.learning_rate * 0.1,
  )


def make_optimizer(
    config: TrainConfig,
    *,
    before: tuple[optax.GradientTransformation, ...] = (),
    wrap: Callable[[optax.GradientTransformation], optax.GradientTransformation] | None = None,
) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """AdamW with warm-up/cosine schedule and global-norm clipping.

  Args:
    config: the training config.
    before: transforms applied to the raw gradient first (e.g. routing normalisers that take ``group_mask``).
    wrap: optional wrapper around the clip+AdamW part (e.g. freezing groups without contributors).

  Returns:
    ``(tx, schedule)``; ``tx.update`` forwards keyword extras (``group_mask=...``) to transforms that take them.
  """
  schedule = make_schedule(config)
  inner = optax.chain(
      optax.clip_by_global_norm(config.grad_clip),
      optax.adamw(schedule, weight_decay=config.weight_decay),
  )
  if wrap is not None:
    inner = wrap(inner)
  return optax.chain(*before, inner), schedule


def create_train_state(
    config: TrainConfig,
    *,
    vocab_size: int,
    tx: optax.GradientTransformation | None = None,
    extras: dict | None = None,
) -> tuple[nnx.GraphDef, TrainState, optax.GradientTransformation, optax.Schedule]:
  """Initialises the model and optimizer from ``config.seed``.

  Args:
    config: the training config.
    vocab_size: tokenizer vocabulary size.
    tx: optimizer; ``make_optimizer(config)`` when None.
    extras: initial ``TrainState.extras``.

  Returns:
    ``(graphdef, state, tx, schedule)``.
  """
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  model = Transformer(model_config(config, vocab_size), rngs=nnx.Rngs(params=init_key))
  graphdef, params = nnx.split(model, nnx.Param)
  schedule = make_schedule(config)
  if tx is None:
    tx, schedule = make_optimizer(config)
  state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=train_key,
      extras=extras or {},
  )
  return graphdef, state, tx, schedule


class StepPlugin(Protocol):
  """Something that rides along in the train step with device state of its own (e.g. the memorization probe).

  Its state lives in ``TrainState.extras[plugin.name]`` (so it is checkpointed); it may lower the group mask
  before the loss is computed, and it updates its state from the step's forward pass (``aux``).

  Attributes:
    name: key of its state in ``TrainState.extras`` and prefix of its metrics.
    needs_hidden: the loss must return ``aux["hidden"]`` (the step asks for it with ``return_hidden=True``).
  """

  name: str
  needs_hidden: bool

  def init(self, num_examples: int) -> Any: ...

  def effective_mask(self, state: Any, batch: dict, group_mask: jax.Array) -> jax.Array: ...

  def update(self, state: Any, batch: dict, aux: dict, step: jax.Array) -> tuple[Any, dict]: ...


@runtime_checkable
class CalibratedPlugin(StepPlugin, Protocol):
  """A :class:`StepPlugin` that the training loop calibrates on held-out batches (outside the jitted step).

  Attributes:
    calibrate_every: steps between calibrations (the loop also calibrates at step 0).
  """

  calibrate_every: int

  def calibrate(self, state: Any, model: nnx.Module, eval_batches: list[dict]) -> Any: ...


@runtime_checkable
class ReferencedPlugin(StepPlugin, Protocol):
  """A :class:`StepPlugin` that takes a per-example reference counted from the training windows before training
  (the memorization probe's n-gram reference).

  Attributes:
    takes_reference: whether :meth:`attach_reference` adds anything for this plugin's config.
  """

  takes_reference: bool

  def attach_reference(self, state: Any, windows, groups, *, vocab_size: int, train_rows=None,
                       valid=None) -> Any: ...


def attach_plugin_references(plugins: Sequence[StepPlugin], extras: dict, windows: Callable[[], Any], works, *,
                             vocab_size: int, train_rows=None, pad: int | None = None) -> dict:
  """Attaches the training windows' reference to every plugin that takes one (:class:`ReferencedPlugin`).

  Args:
    plugins: the step's plugins.
    extras: their fresh states.
    windows: returns int ``[N, T]`` every example's tokens (row = ``example_id``); called only when a plugin
      takes a reference.
    works: ``[N]`` each example's work.
    vocab_size: the token vocabulary.
    train_rows: the examples the model trains on (None: all).
    pad: the padding token, left out of the counts (None: every token counts).

  Returns:
    The updated extras; ``extras`` itself when no plugin takes a reference.
  """
  takers = [p for p in plugins if getattr(p, "takes_reference", False)]
  if not takers:
    return extras
  tokens = windows()
  valid = None if pad is None else tokens != pad
  return {**extras, **{p.name: p.attach_reference(extras[p.name], tokens, works, vocab_size=vocab_size,
                                                  train_rows=train_rows, valid=valid) for p in takers}}


def calibration_due(plugin: StepPlugin, step: int) -> bool:
  """Whether ``plugin`` has a ``calibrate`` and is due at ``step``: step 0 and every ``calibrate_every`` steps."""
  every = int(getattr(plugin, "calibrate_every", 0) or 0)
  return hasattr(plugin, "calibrate") and (step == 0 or (every > 0 and step % every == 0))


def calibrate_due_plugins(plugins: Sequence[StepPlugin], extras: dict, graphdef, params, step: int,
                          eval_batches: Callable[[], Sequence[dict]]) -> dict:
  """Calibrates the plugins due at ``step`` (:func:`calibration_due`) on held-out batches.

  Args:
    plugins: the step's plugins.
    extras: their states (``TrainState.extras``).
    graphdef: the model's graph.
    params: the current parameters.
    step: the step about to run.
    eval_batches: returns the held-out batches; called only when a plugin is due.

  Returns:
    The updated extras; ``extras`` itself when no plugin is due.
  """
  due = [p for p in plugins if calibration_due(p, step)]
  if not due:
    return extras
  model = nnx.merge(graphdef, params)
  batches = list(eval_batches())
  return {**extras, **{p.name: p.calibrate(extras[p.name], model, batches) for p in due}}


def update_plugins(plugins: Sequence[StepPlugin], state: TrainState, batch: dict, aux: dict,
                   metrics: dict) -> dict:
  """Updates every plugin's state from the step's forward pass; adds their metrics (prefixed) to ``metrics``.

  Args:
    plugins: the step's plugins.
    state: the train state before the step (its ``extras`` hold the plugins' states).
    batch: the step's batch.
    aux: the loss function's auxiliary outputs.
    metrics: the step's metrics dict, extended in place with ``"{plugin.name}/{metric}"`` entries.

  Returns:
    The new ``extras`` dict.
  """
  extras = dict(state.extras)
  for plugin in plugins:
    extras[plugin.name], plugin_metrics = plugin.update(extras[plugin.name], batch, aux, state.step)
    metrics.update({f"{plugin.name}/{k}": v for k, v in plugin_metrics.items()})
  return extras


def plain_loss(
    model: nnx.Module, batch: dict, group_mask: jax.Array, rng: jax.Array, *, return_hidden: bool = False
) -> tuple[jax.Array, dict]:
  """Vanilla loss: mean over rows of the per-example next-token loss; the mask is only logged.

  Args:
    model: the merged model.
    batch: dict with ``tokens`` ``[B, L]``.
    group_mask: ``[B, G]`` (unused except for contributor counts).
    rng: unused.
    return_hidden: put the residual stream per group into ``aux["hidden"]``.

  Returns:
    ``(loss, aux)`` with ``per_example_loss`` ``[B]``, ``contributors`` ``[G]``, ``logits`` and maybe ``hidden``.
  """
  del rng
  out = model(batch["tokens"], return_hidden=return_hidden)
  logits, hidden = out if return_hidden else (out, None)
  per_example, _ = per_example_next_token_loss(logits, batch["tokens"])
  aux = {"per_example_loss": per_example, "contributors": group_mask.sum(axis=0), "logits": logits}
  if return_hidden:
    aux["hidden"] = hidden
  return per_example.mean(), aux


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn = plain_loss,
    *,
    gradients: GradientStrategy | None = None,
    plugins: Sequence[StepPlugin] = (),
    donate: bool = True,
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
  """Builds the jitted step ``(state, batch, group_mask) -> (state, metrics)``: the one train step of every method.

  Args:
    graphdef: from ``create_train_state``.
    tx: the optimizer; called as ``tx.update(grads, opt_state, params, group_mask=group_mask, key=noise_key)``
      (transforms take the extras they declare; ``noise_key`` is ``fold_in(step key, NOISE_STREAM)``).
    loss_fn: ``loss_fn(model, batch, group_mask, rng) -> (loss, aux)``; ``aux`` must hold ``per_example_loss``
      and ``contributors``.
    gradients: the gradient strategy (:mod:`govjax.train.gradients`); :func:`~govjax.train.gradients.
      batch_gradients` when None. With a per-example strategy, ``tx`` must reduce the batch axis first.
    plugins: step plugins (see :class:`StepPlugin`), applied in order.
    donate: donate the input state's buffers.

  Returns:
    The jitted step. Metrics: ``loss``, ``grad_norm``, ``contributors`` ``[G]``, ``per_example_loss`` ``[B]``,
    ``group_mask`` (the effective mask after plugins), the strategy's own metrics, and each plugin's metrics under
    ``"<name>/<key>"``.
  """
  gradients = gradients or batch_gradients()
  tx = optax.with_extra_args_support(tx)
  loss_kwargs = {"return_hidden": True} if any(p.needs_hidden for p in plugins) else {}

  def step(state: TrainState, batch: dict, group_mask: jax.Array) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    noise_key = jax.random.fold_in(rng, NOISE_STREAM)
    for plugin in plugins:
      group_mask = plugin.effective_mask(state.extras[plugin.name], batch, group_mask)

    def objective(params, rows, rows_mask):
      return loss_fn(nnx.merge(graphdef, params), rows, rows_mask, rng, **loss_kwargs)

    loss, aux, grads, strategy_metrics = gradients(objective, state.params, batch, group_mask)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, group_mask=group_mask, key=noise_key)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "contributors": aux["contributors"],
        "per_example_loss": aux["per_example_loss"],
        "group_mask": group_mask,
        **strategy_metrics,
    }
    extras = update_plugins(plugins, state, batch, aux, metrics)
    new_state = state._replace(step=state.step + 1, params=params, opt_state=opt_state, extras=extras)
    return new_state, metrics

  return jax.jit(step, donate_argnums=(0,) if donate else ())


def make_eval_step(graphdef: nnx.GraphDef) -> Callable[[Any, dict], tuple[jax.Array, jax.Array]]:
  """Jitted ``(params, batch) -> (summed token loss [B], scored token count [B])``.

  Rows with ``batch["weight"] == 0`` (padding of the last eval batch) count zero.
  """

  @jax.jit
  def eval_step(params, batch):
    model = nnx.merge(graphdef, params)
    per_example, count = per_example_next_token_loss(model(batch["tokens"]), batch["tokens"])
    weight = batch.get("weight", jnp.ones(per_example.shape, jnp.float32)).astype(jnp.float32)
    return per_example * count * weight, count * weight

  return eval_step
