"""bench_step's MFU: each variant against its own dtype's peak, never above 1 (no TF step run)."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_step  # noqa: E402  pylint: disable=wrong-import-position


def timed(variant, flops):
  return {"label": "fixed [32,32]", "variant": variant, "model_flops_per_s": flops}


def test_each_variant_is_divided_by_its_own_dtypes_peak():
  records = [timed("f32", 50e9), timed("lazyemb", 60e9), timed("bf16", 150e9)]
  before = {"float32": 100e9, "bfloat16": 300e9}
  after = {"float32": 120e9, "bfloat16": 250e9}
  peaks = bench_step.apply_mfu(records, before, after)
  assert peaks["float32"] == {"before": 100e9, "after": 120e9, "used": 120e9, "source": "matmul"}
  assert peaks["bfloat16"]["used"] == 300e9                 # the higher of before / after
  assert [r["dtype"] for r in records] == ["float32", "float32", "bfloat16"]
  assert [r["mfu"] for r in records] == pytest.approx([50 / 120, 60 / 120, 150 / 300])


def test_mfu_never_exceeds_one_when_a_step_beats_the_measured_peak():
  """The old records divided a bf16 step by a float32 peak measured under load (MFU 1.99)."""
  records = [timed("f32", 26.8e9), timed("bf16", 58.7e9), timed("noemb", 33.5e9),
             {"label": "profile [32,32]", "variant": "f32", "op_seconds": {}}]
  peaks = bench_step.apply_mfu(records, {"float32": 29.5e9, "bfloat16": 40e9},
                               {"float32": 20e9, "bfloat16": 30e9})
  assert peaks["float32"]["source"] == "step" and peaks["float32"]["used"] == 33.5e9
  assert peaks["bfloat16"]["source"] == "step"
  assert all(0 < r["mfu"] <= 1 for r in records if "mfu" in r)
  assert "mfu" not in records[-1] and records[-1]["peaks"] == peaks


def test_mfu_rejects_a_peak_below_the_achieved_figure():
  assert bench_step.mfu(50.0, 100.0) == 0.5
  with pytest.raises(ValueError):
    bench_step.mfu(101.0, 100.0)
  with pytest.raises(ValueError):
    bench_step.mfu(1.0, 0.0)


def test_variant_policies_and_dtypes():
  assert (bench_step.policy("bf16_lazyemb"), bench_step.dtype("bf16_lazyemb")) == (
      "mixed_bfloat16", "bfloat16")
  assert bench_step.dtype("f16") == "float16" and bench_step.dtype("lazyemb") == "float32"


def test_model_flops_counts_dense_and_attention_matmuls_three_times():
  dense = 2 * 1 * (4 * 2 * 2 + 2 * 2 * 3) * (1 * 4)         # 2 * params * tokens
  attention = 1 * 4 * 1 * 4 * 4 * 2
  assert bench_step.model_flops(1, 4, hidden=2, layers=1, intermediate=3) == 3 * (dense + attention)
