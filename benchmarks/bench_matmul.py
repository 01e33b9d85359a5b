"""The float32 matrix products of the training step: TensorFlow vs PyTorch, in one process.

  python -m benchmarks.bench_matmul --torch_python=/tmp/torchenv/bin/python --lengths=32,64

Why: on some CPUs this package's float32 step is slower than the PyTorch Trainer's with the same
model and recipe (results/vs_pytorch.md). This times the products of that step alone, at its
shapes (MiniLM: hidden 384, 12 heads of 32, intermediate 1536; --batch rows of each --length):
  dense_<K>x<N>_fwd / _dx / _dw  a dense layer's forward product and its two gradient products
  attention_scores / _context    the attention einsums (forward)
each the way the two models compute it: TensorFlow as the einsum Model Garden's layers run
(`tf_einsum`), and as a plain 2-D tf.matmul (`tf_matmul`, dense only: does the op form matter?);
PyTorch as torch.nn.Linear / Hugging Face's attention run it (`torch`). The sides alternate call
by call (rotating order) in one process, so a drift of the host's speed hits them alike; each
side's figure is its median over --iters calls. Both sides use --threads threads; --isa caps
both libraries' kernels as in bench_vs_pytorch (an emulation on this CPU, never such a CPU).
torch is not a dependency of this package: --torch_python names a venv that has it (see
benchmarks/pytorch_reference.py), whose site-packages is appended to sys.path.
One JSON line per product and length is appended to --out: product, batch, length, flops,
seconds (median per side), gflops (per side), iters, threads, isa, provenance.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import common
from benchmarks.bench_vs_pytorch import ISA_ENV

HIDDEN, HEADS, INTERMEDIATE = 384, 12, 1536


def _dense(k, n):
  """The three products of a dense layer [b, l, k] -> [b, l, n], as specs (see products())."""
  def base(rng, b, l):
    return {"x": rng.standard_normal((b, l, k)), "dy": rng.standard_normal((b, l, n)),
            "w": rng.standard_normal((k, n))}          # TF's kernel layout; torch's is w.T
  flat = lambda a: a.reshape(-1, a.shape[-1])
  return {
      f"dense_{k}x{n}_fwd": dict(
          base=base, flops=lambda b, l: 2 * b * l * k * n,
          tf_einsum=("abc,cd->abd", "x", "w"),
          tf_matmul=(lambda a: (flat(a["x"]), a["w"]), False, False),
          torch=(lambda a: (flat(a["x"]), a["w"].T.copy()), False, True), torch_to_tf=None),
      f"dense_{k}x{n}_dx": dict(
          base=base, flops=lambda b, l: 2 * b * l * k * n,
          tf_einsum=("abd,cd->abc", "dy", "w"),
          tf_matmul=(lambda a: (flat(a["dy"]), a["w"]), False, True),
          torch=(lambda a: (flat(a["dy"]), a["w"].T.copy()), False, False), torch_to_tf=None),
      f"dense_{k}x{n}_dw": dict(
          base=base, flops=lambda b, l: 2 * b * l * k * n,
          tf_einsum=("abc,abd->cd", "x", "dy"),
          tf_matmul=(lambda a: (flat(a["x"]), flat(a["dy"])), True, False),
          torch=(lambda a: (flat(a["dy"]), flat(a["x"])), True, False), torch_to_tf=(1, 0)),
  }


def _attention():
  d = HIDDEN // HEADS
  def base(rng, b, l):
    return {"q": rng.standard_normal((b, l, HEADS, d)), "k": rng.standard_normal((b, l, HEADS, d)),
            "v": rng.standard_normal((b, l, HEADS, d)),
            "p": rng.standard_normal((b, HEADS, l, l))}
  # Hugging Face's BERT attention: [b, l, heads, d] views transposed to [b, heads, l, d] inside
  # the call (torch_views), as its forward does before torch.matmul.
  heads_first = lambda t: t.swapaxes(1, 2)
  return {
      "attention_scores": dict(
          base=base, flops=lambda b, l: 2 * b * HEADS * l * l * d,
          tf_einsum=("aecd,abcd->acbe", "k", "q"), tf_matmul=None,
          torch=(lambda a: (a["q"], a["k"]), False, True), torch_views=(heads_first, heads_first),
          torch_to_tf=None),
      "attention_context": dict(
          base=base, flops=lambda b, l: 2 * b * HEADS * l * l * d,
          tf_einsum=("acbe,aecd->abcd", "p", "v"), tf_matmul=None,
          torch=(lambda a: (a["p"], a["v"]), False, False), torch_views=(None, heads_first),
          torch_to_tf=(0, 2, 1, 3)),
  }


def products():
  """{name: spec}: base(rng, batch, length) -> float arrays; flops(batch, length); tf_einsum =
  (equation, operand, operand); tf_matmul / torch = (operands(base) -> (a, b), transpose_a,
  transpose_b) or None; torch_views: optional per-operand views taken inside torch's call;
  torch_to_tf: the permutation that turns torch's result into TF's."""
  return {**_dense(HIDDEN, HIDDEN), **_dense(HIDDEN, INTERMEDIATE), **_dense(INTERMEDIATE, HIDDEN),
          **_attention()}


def operands(spec, batch, length, seed=0):
  """float32 numpy operands per side: {side: (a, b)} for the sides the spec has."""
  arrays = {k: v.astype(np.float32) for k, v in
            spec["base"](np.random.default_rng(seed), batch, length).items()}
  out = {"tf_einsum": (arrays[spec["tf_einsum"][1]], arrays[spec["tf_einsum"][2]])}
  for side in ("tf_matmul", "torch"):
    if spec[side]:
      out[side] = tuple(np.ascontiguousarray(x) for x in spec[side][0](arrays))
  return out


def tf_calls(spec, ops):
  """{side: zero-argument callable} of the TensorFlow sides, each a traced tf.function."""
  import tensorflow as tf
  calls = {}
  eq = spec["tf_einsum"][0]
  a, b = (tf.constant(x) for x in ops["tf_einsum"])
  einsum = tf.function(lambda x, y: tf.einsum(eq, x, y))
  calls["tf_einsum"] = lambda: einsum(a, b)
  if spec["tf_matmul"]:
    _, ta, tb = spec["tf_matmul"]
    a2, b2 = (tf.constant(x) for x in ops["tf_matmul"])
    matmul = tf.function(lambda x, y: tf.matmul(x, y, transpose_a=ta, transpose_b=tb))
    calls["tf_matmul"] = lambda: matmul(a2, b2)
  return calls


def torch_call(torch, spec, ops):
  return lambda: torch_product(torch, spec, *(torch.from_numpy(x) for x in ops["torch"]))


def torch_product(torch, spec, a, b):
  """The spec's product as PyTorch runs it (views and transposes are free strides)."""
  _, ta, tb = spec["torch"]
  view_a, view_b = spec.get("torch_views", (None, None))
  a, b = (view_a(a) if view_a else a), (view_b(b) if view_b else b)
  with torch.no_grad():
    return torch.matmul(a.mT if ta else a, b.mT if tb else b)


def time_alternating(calls, iters, warmup=5):
  """{side: median seconds}: the calls alternate, in an order rotated every iteration."""
  names = list(calls)
  for _ in range(warmup):
    for n in names:
      calls[n]()
  seconds = {n: [] for n in names}
  for i in range(iters):
    for n in names[i % len(names):] + names[:i % len(names)]:
      start = time.perf_counter()
      calls[n]()
      seconds[n].append(time.perf_counter() - start)
  return {n: common.median(s) for n, s in seconds.items()}


def torch_site_packages(torch_python):
  """The site-packages directory that holds torch in the venv of `torch_python`."""
  code = "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"
  try:
    return subprocess.run([torch_python, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError) as e:
    sys.exit(f"error: --torch_python={torch_python} cannot import torch ({e})")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--torch_python", required=True)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--lengths", default="32")
  p.add_argument("--products", default=",".join(products()))
  p.add_argument("--iters", type=int, default=200)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--isa", default="native", choices=sorted(ISA_ENV))
  p.add_argument("--out", default=os.path.join(common.RESULTS, "matmul.jsonl"))
  args = p.parse_args(argv)
  specs = products()
  names = common.variant_names(p, args.products, specs)
  lengths = [int(x) for x in args.lengths.split(",") if x]
  # Both libraries read these when they load: set before either is imported.
  os.environ.update(ISA_ENV[args.isa], OMP_NUM_THREADS=str(args.threads))
  sys.path.append(torch_site_packages(args.torch_python))
  import tensorflow as tf
  import torch
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  torch.set_num_threads(args.threads)
  fixed, before = common.machine(), common.sample()
  rows = []
  for length in lengths:
    for name in names:
      spec = specs[name]
      ops = operands(spec, args.batch, length)
      calls = dict(tf_calls(spec, ops), torch=torch_call(torch, spec, ops))
      seconds = time_alternating(calls, args.iters)
      flops = spec["flops"](args.batch, length)
      rows.append(dict(product=name, batch=args.batch, length=length, flops=flops,
                       seconds=seconds, gflops={k: flops / s / 1e9 for k, s in seconds.items()},
                       iters=args.iters, threads=args.threads, isa=args.isa,
                       versions={"tensorflow": tf.__version__, "torch": torch.__version__},
                       onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS")))
      g = rows[-1]["gflops"]
      print(f"L={length:<4} {name:<24} " + "  ".join(f"{k} {v:6.1f}" for k, v in g.items())
            + " GFLOP/s", flush=True)
  prov = common.provenance(fixed, before, common.sample())
  for r in rows:
    common.append_record(args.out, dict(r, provenance=prov))
  print(f"appended {len(rows)} records to {args.out}")


if __name__ == "__main__":
  main()
