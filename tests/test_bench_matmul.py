"""bench_matmul's products: each side computes the same product, at the FLOPs it is credited with.

PyTorch is not installed here: its side runs through a numpy stand-in for the few torch calls it
makes (matmul, no_grad, mT, swapaxes), which checks the operand layouts and transposes it uses.
"""
import contextlib
import os
import re
import sys
import types

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_matmul  # noqa: E402  pylint: disable=wrong-import-position

NUMPY_TORCH = types.SimpleNamespace(matmul=np.matmul, no_grad=contextlib.nullcontext,
                                    from_numpy=lambda x: x)


def einsum_flops(equation, a, b):
  """2 x the product of every index's size: the multiply-adds of a two-operand einsum."""
  lhs = equation.split("->")[0].split(",")
  sizes = {}
  for letters, shape in zip(lhs, (a.shape, b.shape)):
    sizes.update(zip(letters, shape))
  return 2 * int(np.prod(list(sizes.values())))


@pytest.mark.parametrize("name", list(bench_matmul.products()))
def test_every_side_computes_the_same_product(name):
  import tensorflow as tf
  spec = bench_matmul.products()[name]
  ops = bench_matmul.operands(spec, batch=2, length=5)
  calls = bench_matmul.tf_calls(spec, ops)
  expected = calls["tf_einsum"]().numpy()
  if "tf_matmul" in calls:
    np.testing.assert_allclose(calls["tf_matmul"]().numpy().reshape(expected.shape), expected,
                               rtol=1e-4, atol=1e-3)
  torch_result = bench_matmul.torch_product(NUMPY_TORCH, spec, *ops["torch"])  # dense: 2-D
  if spec["torch_to_tf"]:
    torch_result = torch_result.transpose(spec["torch_to_tf"])
  np.testing.assert_allclose(torch_result.reshape(expected.shape), expected, rtol=1e-4, atol=1e-3)
  assert spec["flops"](2, 5) == einsum_flops(spec["tf_einsum"][0], *ops["tf_einsum"])


def test_the_products_are_the_minilm_steps():
  names = set(bench_matmul.products())
  for k, n in ((384, 384), (384, 1536), (1536, 384)):
    assert {f"dense_{k}x{n}_{p}" for p in ("fwd", "dx", "dw")} <= names
  assert {"attention_scores", "attention_context"} <= names
  assert all(re.fullmatch(r"dense_\d+x\d+_(fwd|dx|dw)|attention_\w+", n) for n in names)


def test_sides_alternate_in_a_rotating_order_and_each_gets_its_median():
  order = []
  delays = {"a": 0.0, "b": 0.002}
  def call(n):
    def f():
      order.append(n)
      if delays[n]:
        import time
        time.sleep(delays[n])
    return f
  seconds = bench_matmul.time_alternating({n: call(n) for n in delays}, iters=4, warmup=1)
  timed = order[2:]
  assert [timed[i * 2] for i in range(4)] == ["a", "b", "a", "b"]   # who goes first rotates
  assert sorted(timed) == ["a"] * 4 + ["b"] * 4
  assert seconds["b"] >= 0.002 > seconds["a"]


def test_a_torch_python_without_torch_is_one_line():
  with pytest.raises(SystemExit) as e:
    bench_matmul.torch_site_packages(sys.executable if not _has_torch() else "/nonexistent")
  assert str(e.value).startswith("error: --torch_python=") and "\n" not in str(e.value)


def _has_torch():
  try:
    import torch  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  except ImportError:
    return False
  return True
