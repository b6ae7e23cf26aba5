"""Small JAX programs `perfmodel analyze` is checked and benchmarked on (tests/test_analyze.py,
benchmarks/analyze_measure.py): one definition of each, named scopes as a user writes them."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mlp(x, w_up, w_down):
    with jax.named_scope("mlp/up"):
        h = x @ w_up
    with jax.named_scope("mlp/act"):
        h = jax.nn.gelu(h)
    with jax.named_scope("mlp/down"):
        return h @ w_down


def attention(q, k, v):
    with jax.named_scope("attn"):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)


def scanned_layers(x, ws):
    """A stack of tanh(h @ w) layers as one lax.scan (a loop XLA keeps)."""
    def body(h, w):
        with jax.named_scope("layer"):
            return jnp.tanh(h @ w), None
    return jax.lax.scan(body, x, ws)[0]


def train_step_program(name: str = "tiny-train"):
    """(train step, its abstract arguments, Dims) of perfmodel validate's reference model."""
    from perfmodel.calibrate import validate as V

    d = V.Dims.of(V.config(name).op())
    params = jax.eval_shape(lambda: V.init_params(d))
    opt = jax.eval_shape(lambda: V.adam_init(params))
    tok = jax.ShapeDtypeStruct((d.B, d.T), jnp.int32)

    def train_step(p, o, a, b):
        return V.train_step(d, p, o, a, b)

    return train_step, (params, opt, tok, tok), d
