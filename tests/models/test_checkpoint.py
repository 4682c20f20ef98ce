"""Orbax checkpoints: round trip, clear config-mismatch errors, and resumed training == uninterrupted training."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from specjax.model.config import named_config
from specjax.model.io.checkpoint import restore_checkpoint, restore_model, save_model
from specjax.model.io.weights import model_params
from specjax.model.decoder import init_model
from specjax.training.distill import TrainConfig, latest_checkpoint, random_token_batches, train_distill


def test_model_roundtrip_with_optimizer_state(tmp_path):
    model = init_model(named_config("tiny"), 0)
    params = model_params(model)
    opt = optax.adam(1e-2)
    state = opt.init(params)
    _, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)   # non-trivial moments
    save_model(tmp_path / "ck", model, state, step=7)
    restored, restored_state, step = restore_model(tmp_path / "ck", opt_state_like=state)
    assert step == 7
    tokens, positions = jnp.array([[1, 5, 2, 9]]), jnp.arange(4)[None]
    np.testing.assert_array_equal(np.asarray(restored(tokens, positions)[0]), np.asarray(model(tokens, positions)[0]))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mismatched_config_names_the_parameter(tmp_path):
    config = named_config("tiny")
    save_model(tmp_path / "ck", init_model(config, 0))
    with pytest.raises(ValueError, match=r"'layers/0/mlp/down_proj/kernel' has shape \(64, 32\).*\(48, 32\)"):
        restore_model(tmp_path / "ck", config.replace(d_ff=48))
    with pytest.raises(ValueError, match="no parameter 'layers/2/"):
        restore_model(tmp_path / "ck", config.replace(n_layers=3))
    with pytest.raises(ValueError, match="'lm_head/kernel'"):
        restore_model(tmp_path / "ck", config.replace(tie_embeddings=False))
    with pytest.raises(ValueError, match="holds no optimizer state"):
        restore_model(tmp_path / "ck", opt_state_like={"mu": jnp.zeros(3)})
    with pytest.raises(ValueError, match="already exists"):
        save_model(tmp_path / "ck", init_model(config, 0))
    with pytest.raises(ValueError, match="not a specjax checkpoint"):
        restore_checkpoint(tmp_path, {})


def _setup():
    target = init_model(named_config("tiny"), 0)
    student = init_model(named_config("tiny-draft"), 1)
    graphdef, params = nnx.split(student)
    tgraph, tparams = nnx.split(target)

    def target_apply(tokens):
        logits, hidden, _ = nnx.merge(tgraph, tparams)(tokens, jnp.broadcast_to(jnp.arange(tokens.shape[1]),
                                                                                 tokens.shape))
        return logits, hidden

    def student_apply(p, tokens, hidden):
        return nnx.merge(graphdef, p)(tokens, jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape))[0]

    return params, student_apply, target_apply, random_token_batches(16, 4, 8, seed=3)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(steps=8, learning_rate=3e-2, warmup_steps=2, checkpoint_every=4)
    params, student_apply, target_apply, batches = _setup()
    full, _, losses = train_distill(jax.tree.map(jnp.array, params), student_apply, target_apply, batches, cfg)
    assert losses[-1] < losses[0]                                    # it does learn

    train_distill(jax.tree.map(jnp.array, params), student_apply, target_apply, batches, cfg,
                  checkpoint_dir=tmp_path, stop_after=4)
    assert latest_checkpoint(tmp_path).name == "step_4"
    resumed, _, tail = train_distill(jax.tree.map(jnp.array, params), student_apply, target_apply, batches, cfg,
                                     checkpoint_dir=tmp_path)
    assert len(tail) == 4 and latest_checkpoint(tmp_path).name == "step_8"
    np.testing.assert_allclose(tail, losses[4:], rtol=0, atol=0)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
