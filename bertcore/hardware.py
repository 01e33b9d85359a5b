"""What the CPU can do, read from the machine rather than assumed (CPUs differ between hosts)."""
import functools
import platform

# Instruction sets with native bfloat16 arithmetic: AVX512_BF16 (Cooper Lake, Zen 4 and later)
# and AMX (Sapphire Rapids and later). Without them oneDNN emulates bfloat16, which is slower
# than float32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags(cpuinfo="/proc/cpuinfo"):
  """The CPU feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
  try:
    with open(cpuinfo, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.partition(":")[2].split())
  except OSError:
    pass
  return frozenset()


def native_bfloat16(flags=None):
  """True when the CPU computes bfloat16 natively (x86 with AVX512_BF16 or AMX)."""
  flags = cpu_flags() if flags is None else flags
  return platform.machine() in ("x86_64", "AMD64") and any(f in flags for f in BF16_FLAGS)
