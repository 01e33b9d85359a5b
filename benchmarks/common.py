"""What every benchmark shares: paths, subprocess runs, provenance, interleaving, JSON-lines records.

A record is one JSON line per run (asv / MLPerf style): the run's figures plus `provenance`, so
that every figure `python -m benchmarks report` renders traces to the run, commit and machine that
made it. A run is `loaded` (kept, flagged) when other work kept more than LOADED_BUSY_FRACTION of
the cores busy just before or after it (/proc/stat over BUSY_SECONDS: the load average lags and
counts our own threads), or the hypervisor stole more than LOADED_STEAL_FRACTION of the CPU time
during it. The speed of a large copy and of a float32 matrix product before and after show a
host busy on memory or slowed clocks (docs/benchmarks.md).
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import timeit

from bertcore import hardware   # no TensorFlow: the bf16 rule precision=auto follows, reused

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
# The CPU flags a record names: native bfloat16 (AVX512_BF16, AMX), AVX-512, AVX2.
CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")
BUSY_SECONDS = 1.0
LOADED_BUSY_FRACTION = 0.5
LOADED_STEAL_FRACTION = 0.10
COPY_BYTES = 64 * 2**20    # bigger than any last-level cache here: the copy measures memory
MATMUL_N = 1024            # float32 n x n operands (12 MiB together): a compute-bound product
PRECISION_LINE = re.compile(r"; precision (\S+)")   # trainer.task's plan line (trainer/train.py)


# ---- the machine ---------------------------------------------------------------------------

def cpu_info(cpuinfo="/proc/cpuinfo"):
  """{"model", "flags": the CPU_FLAGS present, "native_bf16": precision=auto's rule} ("" and no
  flags where /proc/cpuinfo cannot be read)."""
  info = {}   # each key's first value: the first processor's
  try:
    with open(cpuinfo, encoding="utf-8") as f:
      for key, _, value in (line.partition(":") for line in f):
        info.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  flags = set(info.get("flags", "").split())
  return {"model": info.get("model name", ""), "flags": [f for f in CPU_FLAGS if f in flags],
          "native_bf16": hardware.native_bfloat16(frozenset(flags))}


def bf16_label(cpu):
  """'native bf16 (avx512_bf16)' or 'no native bf16 (avx512f, avx2)': how tables name a CPU."""
  flags = ", ".join(cpu["flags"]) or "flags unknown"
  return f"{'native' if cpu['native_bf16'] else 'no native'} bf16 ({flags})"


def load_average(loadavg="/proc/loadavg"):
  """The 1-minute load average, or None."""
  try:
    with open(loadavg) as f:
      return float(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    return None


def _cpu_times(stat="/proc/stat"):
  """(total, idle + iowait, steal) jiffies of all CPUs since boot, from /proc/stat's first line."""
  with open(stat) as f:
    fields = [int(x) for x in f.readline().split()[1:]]
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
  steal = fields[7] if len(fields) > 7 else 0
  return sum(fields[:8]), idle, steal


def busy_cores(seconds=BUSY_SECONDS, stat="/proc/stat"):
  """Cores kept busy over the next `seconds` (machine-wide, from /proc/stat); None if unreadable."""
  try:
    total0, idle0, _ = _cpu_times(stat)
    time.sleep(seconds)
    total1, idle1, _ = _cpu_times(stat)
  except (OSError, ValueError, IndexError):
    return None
  if total1 == total0:
    return 0.0
  machine_cores = os.cpu_count() or 1
  return round(machine_cores * (1 - (idle1 - idle0) / (total1 - total0)), 2)


def steal_share(before, after):
  """The share of CPU time the hypervisor stole between two _cpu_times(); None if unknown."""
  if before is None or after is None or after[0] <= before[0]:
    return None
  return round((after[2] - before[2]) / (after[0] - before[0]), 4)


def best_seconds(fn, repeats):
  """The fastest of `repeats` calls of fn, in seconds."""
  return min(timeit.repeat(fn, timer=time.perf_counter, number=1, repeat=repeats))


def copy_gbps(nbytes=COPY_BYTES, repeats=5):
  """Memory bandwidth now: GB/s read + written by the fastest of `repeats` copies of nbytes."""
  import numpy as np   # only here: the rest of this module runs without it
  src = np.ones(nbytes // 8)
  dst = np.empty_like(src)
  return round(2 * nbytes / best_seconds(lambda: np.copyto(dst, src), repeats) / 1e9, 2)


def matmul_gflops(n=MATMUL_N, repeats=10):
  """Compute speed now: float32 GFLOP/s of the fastest of `repeats` n x n matrix products."""
  import numpy as np
  a = np.ones((n, n), np.float32)
  return round(2 * n**3 / best_seconds(lambda: np.matmul(a, a), repeats) / 1e9, 1)


def is_loaded(busy_before, busy_after, n_cores, steal=None):
  """The rule of the module docstring."""
  busy = [b for b in (busy_before, busy_after) if b is not None]
  return ((bool(busy) and max(busy) > LOADED_BUSY_FRACTION * n_cores)
          or (steal is not None and steal > LOADED_STEAL_FRACTION))


def git_state(repo=REPO):
  """{"commit": full hash or None, "dirty": bool or None}: tracked files differ from the commit,
  benchmarks/results/ left out (a benchmark's own records must not make its next run dirty)."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout
  try:
    commit = git("rev-parse", "HEAD").strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     ":(exclude)benchmarks/results").strip())
  except (OSError, subprocess.CalledProcessError):
    return {"commit": None, "dirty": None}
  return {"commit": commit, "dirty": dirty}


def machine():
  """The parts of the provenance that do not change during a benchmark run."""
  return dict(git_state(), cpu=cpu_info(), cores=len(os.sched_getaffinity(0)),
              host=platform.node(), python=platform.python_version())


def provenance(fixed, before, after):
  """A record's provenance: `fixed` (machine()) and the samples before / after the run."""
  steal = steal_share(before.get("cpu_times"), after.get("cpu_times"))
  samples = {f"{key}_{when}": s.get(key) for when, s in (("before", before), ("after", after))
             for key in ("load", "busy", "copy_gbps", "matmul_gflops")}
  return dict(fixed, **samples, steal_during=steal, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              loaded=is_loaded(before["busy"], after["busy"], fixed["cores"], steal))


def sample():
  """The machine now: load average, busy cores, memory and compute speed, CPU time counters."""
  busy = busy_cores()
  try:
    cpu_times = _cpu_times()
  except (OSError, ValueError, IndexError):
    cpu_times = None
  return {"load": load_average(), "busy": busy, "copy_gbps": copy_gbps(),
          "matmul_gflops": matmul_gflops(), "cpu_times": cpu_times}


# ---- running benchmarks --------------------------------------------------------------------

def variant_names(parser, text, known):
  """The comma-separated variants of `text`, in order; an unknown one is a usage error."""
  names = [v for v in text.split(",") if v]
  unknown = sorted(set(names) - set(known))
  if unknown:
    parser.error(f"unknown variants {unknown}; known: {', '.join(known)}")
  if not names:
    parser.error(f"no variants given; known: {', '.join(known)}")
  return names


def interleave(rounds, names):
  """[(round, name), ...] as A B C A B C ...: a change of machine load hits every variant alike."""
  return [(r, name) for r in rounds for name in names]


def run_logged(command, log_path, env=None, cwd=REPO):
  """Runs command with its output in log_path, W&B off and the Hugging Face hub offline unless
  `env` says otherwise; -> {"seconds", "returncode", "output": the log's text, "log"}."""
  env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1") | dict(env or {})
  os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  start = time.perf_counter()
  with open(log_path, "w") as log:
    done = subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
  seconds = time.perf_counter() - start
  with open(log_path) as f:
    output = f.read()
  if done.returncode:
    print(f"  failed (exit {done.returncode}): see {log_path}", flush=True)
  return {"seconds": seconds, "returncode": done.returncode, "output": output, "log": log_path}


def trainer_command(model_dir, data_dir, encoder_dir, overrides=(),
                    config="configs/tweets_minilm.py"):
  """`python -m trainer.task` of `config` on one device; overrides: ["train.seed=1", ...]."""
  return [sys.executable, "-m", "trainer.task", f"--config={config}",
          f"--config.encoder.dir={encoder_dir}", f"--data_dir={data_dir}",
          f"--model_dir={model_dir}", "--strategy=one_device"] + [
              f"--config.{o}" for o in overrides]


def precision_used(output):
  """The precision policy trainer.task's plan line printed ('mixed_bfloat16', ...), or None."""
  match = PRECISION_LINE.search(output)
  return match.group(1) if match else None


def f1_at(metrics, threshold):
  """A split's F1 at `threshold`, read from its threshold sweep (0.01 steps); None if absent."""
  sweep = metrics.get("threshold_sweep")
  if not sweep or threshold is None:
    return None
  return min(zip(sweep["thresholds"], sweep["f1"]), key=lambda tf: abs(tf[0] - threshold))[1]


def combined_rate(rates, counts):
  """Examples/s over several passes: sum(counts) / sum(count / rate); None if any is missing."""
  if not counts or any(not rates.get(s) or not counts[s] for s in counts):
    return None
  return sum(counts.values()) / sum(counts[s] / rates[s] for s in counts)


def read_final(model_dir):
  """A finished trainer.task run's figures from its eval_results.json, or None: train_eps and
  train_padding_efficiency (steady state), eval_eps (validation + test), threshold, per split
  <split>_pr_auc, _best_f1, _f1 (at 0.5), and test_f1_tuned (at the tuned threshold)."""
  final = (read_json_in(model_dir, "eval_results.json") or {}).get("final")
  if not final:
    return None
  rates = final.get("eval_examples_per_sec") or {}
  splits = [s for s in ("validation", "test") if s in final]
  out = {"train_eps": final.get("train_examples_per_sec"),
         "train_padding_efficiency": final.get("train_padding_efficiency"),
         "eval_eps": combined_rate(rates, {s: final[s].get("num_examples") for s in splits}),
         "eval_eps_by_split": rates, "threshold": final.get("threshold"),
         **{f"{s}_{k}": final[s].get(k) for s in splits for k in ("pr_auc", "best_f1", "f1")}}
  if "test" in final:
    out["test_f1_tuned"] = f1_at(final["test"], final.get("threshold"))
  return out


def read_json_in(directory, name):
  """directory/name parsed as JSON, or None when it does not exist (a run that failed)."""
  path = os.path.join(directory, name)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_config(model_dir):   # the resolved config.json of a trainer.task run, or None
  return read_json_in(model_dir, "config.json")


def read_manifest(data_dir):   # the manifest.json of a preprocess.run job, or None
  return read_json_in(data_dir, "manifest.json")


# ---- records -------------------------------------------------------------------------------

def append_record(path, record):
  """Appends one JSON line to path (its directory is created)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")


def read_records(path):
  """The records of a JSON-lines file, in order (blank lines skipped)."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def mean_sd(values):
  """(mean, sample SD or None for one value) of the non-None values; (None, None) if none."""
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)

