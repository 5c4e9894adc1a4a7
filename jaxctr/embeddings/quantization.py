"""Low-precision table storage with unbiased stochastic rounding.

Rows are stored as float32, bfloat16, float16, or int16/int8 with one fp32
scale per row (``scale`` slot of shape [rows, 1]). The sparse optimizer always
works in fp32 on the dequantized rows; the new rows are written back with
stochastic rounding, which is unbiased (E[round(x)] = x), so updates much
smaller than one quantisation step still move the rows in expectation instead
of being rounded away (Baidu, "Quantized embedding training", SIGMOD 2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

INT_LEVELS = {"int8": 127, "int16": 32767}


def is_int(dtype: str) -> bool:
  return dtype in INT_LEVELS


def bytes_per_row(dtype: str, dim: int) -> int:
  """Storage of one row, the per-row scale of integer tables included."""
  return dim * np.dtype(dtype).itemsize + (4 if is_int(dtype) else 0)


def stochastic_round_float(x: Array, dtype, key: Array) -> Array:
  """Rounds fp32 ``x`` to the float ``dtype`` up or down, with P(up) = distance fraction."""
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float32:
    return x
  info = jnp.finfo(dtype)
  x = jnp.clip(x, float(info.min), float(info.max))
  near = x.astype(dtype)
  near32 = near.astype(jnp.float32)
  toward = jnp.where(near32 > x, -jnp.inf, jnp.inf).astype(dtype)
  other = jnp.nextafter(near, toward)
  other32 = other.astype(jnp.float32)
  lo, hi = jnp.minimum(near32, other32), jnp.maximum(near32, other32)
  gap = hi - lo
  p_up = jnp.where(gap > 0, (x - lo) / jnp.where(gap > 0, gap, 1.0), 0.0)
  up = jax.random.uniform(key, x.shape) < p_up
  out = jnp.where(up, hi, lo)
  return jnp.where(near32 == x, near32, out).astype(dtype)


def row_scale(x: Array, dtype: str) -> Array:
  """Per-row scale so the row's largest magnitude maps to the top level: [U, 1]."""
  amax = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
  return jnp.where(amax > 0, amax / INT_LEVELS[dtype], 1.0).astype(jnp.float32)


def quantize_int(x: Array, dtype: str, key: Array | None) -> tuple[Array, Array]:
  """fp32 rows -> (integer rows, fp32 scales); stochastic if ``key`` is given, else nearest."""
  scale = row_scale(x, dtype)
  y = x / scale
  if key is None:
    q = jnp.round(y)
  else:
    q = jnp.floor(y + jax.random.uniform(key, y.shape))
  top = INT_LEVELS[dtype]
  return jnp.clip(q, -top, top).astype(dtype), scale


def dequantize(rows: Array, scale: Array | None) -> Array:
  out = rows.astype(jnp.float32)
  return out if scale is None else out * scale


def store(x: Array, dtype: str, key: Array | None) -> dict[str, Array]:
  """fp32 rows -> the stored arrays ({"table"} or {"table", "scale"})."""
  if is_int(dtype):
    q, scale = quantize_int(x, dtype, key)
    return {"table": q, "scale": scale}
  if key is None:
    return {"table": x.astype(dtype)}
  return {"table": stochastic_round_float(x, dtype, key)}
