"""bertcore/hardware.py and precision=auto: bfloat16 only on CPUs that compute it natively."""
import bertcore  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import pytest
import tensorflow as tf

from bertcore import hardware
from trainer import strategy as strategy_lib


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx2 avx512_bf16\n")
  assert hardware.cpu_flags.__wrapped__(str(cpuinfo)) == {"fpu", "sse2", "avx2", "avx512_bf16"}
  assert hardware.cpu_flags.__wrapped__(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags, native", [
    ({"avx2", "fma"}, False),
    ({"avx512f", "avx512_vnni"}, False),
    ({"avx512f", "avx512_bf16"}, True),
    ({"amx_tile", "amx_bf16"}, True),
])
def test_native_bfloat16_needs_avx512_bf16_or_amx(flags, native, monkeypatch):
  monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
  assert hardware.native_bfloat16(frozenset(flags)) is native


@pytest.mark.parametrize("native, policy", [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_precision_on_cpu_follows_the_cpu(native, policy, monkeypatch):
  monkeypatch.setattr(hardware, "native_bfloat16", lambda: native)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  assert strategy_lib.resolve_precision("auto", strategy) == policy
  assert strategy_lib.resolve_precision("float32", strategy) == "float32"
