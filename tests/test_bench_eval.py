"""bench_eval's two paths: the old one is the batch-128 baseline whatever the recipe says now."""
import os
import sys
import types

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_eval  # noqa: E402  pylint: disable=wrong-import-position
from trainer import config as config_lib  # noqa: E402  pylint: disable=wrong-import-position


def test_old_path_is_batch_128_and_the_old_buckets_new_path_is_the_recipe():
  flags.FLAGS(["bench_eval"])          # the flags' defaults (no --new_eval_batch)
  try:
    config = config_lib.default_config()
    config.eval.global_batch_size = 64
    runs = bench_eval.paths(config, types.SimpleNamespace(bucket_boundaries=(16, 24, 128),
                                                          padding="bucket"))
  finally:
    flags.FLAGS.unparse_flags()
  old, old_kwargs = runs["old"]
  new, new_kwargs = runs["new"]
  assert old.eval.global_batch_size == bench_eval.OLD_EVAL_BATCH == 128
  assert (old.train.padding, tuple(old.train.bucket_boundaries)) == ("bucket", (16, 32, 64, 128))
  assert old_kwargs == {"steps_per_call": 1, "pool_batches": 1}
  assert new.eval.global_batch_size == 64 and tuple(new.train.bucket_boundaries) == (16, 24, 128)
  assert new_kwargs == {} and config.eval.global_batch_size == 64   # the config is not changed
