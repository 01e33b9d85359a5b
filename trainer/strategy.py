"""tf.distribute strategies and the mixed-precision policy that goes with the hardware.

The strategy is built once, by the entry point, and passed explicitly to everything that
creates variables or datasets (Model Garden style); the precision policy is set before the
model is built, because Keras layers read the global policy when they are constructed.
"""
import json
import os

import tensorflow as tf
import tf_keras
from absl import logging

from bertcore import hardware, private_apis
from bertcore.names import STRATEGIES


def build_strategy(name, tpu=None):
  """Builds a tf.distribute strategy.

  Args:
    name: one_device | mirrored | multi_worker_mirrored | tpu.
    tpu: for `tpu`, the TPU name or address given to TPUClusterResolver ("local" on a TPU VM).
  Returns:
    a tf.distribute.Strategy. multi_worker_mirrored reads the cluster from TF_CONFIG.
  """
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker_mirrored":
    if not os.environ.get("TF_CONFIG"):
      logging.warning("multi_worker_mirrored without TF_CONFIG: running as a single worker")
    else:
      try:
        json.loads(os.environ["TF_CONFIG"])
      except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    # A dead worker fails the others' collectives (a reset connection, or missed heartbeats
    # of the coordination service this strategy starts); a live one that never joins is cut
    # off by trainer.peers.CollectiveTimeout (config.collective_timeout_seconds).
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    if not tpu:
      raise ValueError("--strategy=tpu needs --tpu=<name> (or --tpu=local on a TPU VM)")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def device_type(strategy):
  """'TPU', 'GPU' or 'CPU': the kind of device the replicas run on."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return "TPU"
  devices = strategy.extended.worker_devices
  return "GPU" if any("GPU" in d.upper() for d in devices) else "CPU"


def resolve_precision(precision, strategy):
  """Maps `auto` to the policy that suits the hardware: float16 on GPU, bfloat16 on TPU and
  on CPUs with native bfloat16 (faster than float32 there: the bf16 variants of
  bench_step in docs/benchmarks.md), float32 on other CPUs (emulated bfloat16 is slower)."""
  if precision != "auto":
    return precision
  device = device_type(strategy)
  if device == "CPU":
    return "mixed_bfloat16" if hardware.native_bfloat16() else "float32"
  return {"TPU": "mixed_bfloat16", "GPU": "mixed_float16"}[device]


def describe_devices(strategy, precision):
  """One line: what TensorFlow found and will use, e.g.

  `devices: 1 replica on CPU (no GPU or TPU found, oneDNN on); precision float32` or
  `devices: 4 replicas on GPU (4 x NVIDIA A100-SXM4-40GB); precision mixed_float16`.
  It stands in for TensorFlow's own C++ device lines, which are hidden (bertcore.env).
  """
  kind = device_type(strategy)
  replicas = strategy.num_replicas_in_sync
  if kind == "GPU":
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
             for gpu in tf.config.list_physical_devices("GPU")]
    found = ", ".join(f"{names.count(n)} x {n}" for n in sorted(set(names)))
  elif kind == "TPU":
    found = f"{len(tf.config.list_logical_devices('TPU'))} TPU cores"
  else:
    found = f"no GPU or TPU found, oneDNN {'on' if private_apis.onednn_enabled() else 'off'}"
  return (f"devices: {replicas} replica{'s' if replicas > 1 else ''} on {kind} ({found}); "
          f"precision {resolve_precision(precision, strategy)}")


def set_precision(policy):
  """Sets the global Keras policy; call before any layer is built."""
  tf_keras.mixed_precision.set_global_policy(policy)


def is_chief(strategy):
  """True for the one process that writes checkpoints, exports and W&B logs."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and not has_chief


def is_multi_worker(strategy):
  """True for a MultiWorkerMirroredStrategy of more than one process."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
    return False
  return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def task_name(strategy):
  """e.g. 'worker_1', or 'chief' for a single process."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict() or resolver.task_type is None:
    return "chief"
  return f"{resolver.task_type}_{resolver.task_id}"
