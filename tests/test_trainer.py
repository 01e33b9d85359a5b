"""trainer.train / trainer.task: training, resume, preemption, precision, refusals, W&B offline.

Tiny random encoders on fake preprocessed data (tests/trainer_fixtures.py); every run is a
real train_and_evaluate (or a real `python -m trainer.task` process), nothing is mocked.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from bertcore import schema
from trainer import config as config_lib
from trainer import eval_loop
from trainer import evaluation
from trainer import model as model_lib
from trainer import optimization
from trainer import strategy as strategy_lib
from trainer import train

ENV = dict(os.environ, WANDB_MODE="disabled", CUDA_VISIBLE_DEVICES="",
           PYTHONPATH=os.pathsep.join([fx.REPO, os.path.join(fx.REPO, "tests")]))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(d, n_train=512)
  fx.write_vocab(d)
  return d


pytestmark = pytest.mark.usefixtures("float32_policy")   # conftest.py


def one_device():
  return strategy_lib.build_strategy("one_device")


def checkpoint_steps(model_dir, sub="checkpoints"):
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, sub))
  return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths] if state else []


def test_training_lowers_the_loss_then_a_rerun_does_not_retrain(data_dir, tmp_path, capsys):
  model_dir = str(tmp_path / "run")
  config = fx.tiny_config(data_dir)
  results = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  assert results["final"]["step"] == results["final"]["total_steps"] == 64
  losses = [e["validation"]["loss"] for e in results["epochs"]]
  assert losses[-1] < 0.55 < np.log(2)                # from ~ln 2 at random init
  assert results["final"]["validation"]["best_f1"] > 0.75
  # Both splits of the final evaluation were timed (benchmarks compare evaluation speed).
  assert set(results["final"]["eval_examples_per_sec"]) == {"validation", "test"}
  assert all(v > 0 for v in results["final"]["eval_examples_per_sec"].values())
  written = json.load(open(os.path.join(model_dir, "eval_results.json")))
  assert written["final"]["validation"]["f1"] == results["final"]["validation"]["f1"]
  assert json.load(open(os.path.join(model_dir, "config.json")))["train"]["epochs"] == 2
  assert os.path.exists(os.path.join(model_dir, "export", "saved_model.pb"))
  assert os.listdir(os.path.join(model_dir, "plots", "validation"))
  # The saved outputs are the ones the final metrics were computed from.
  labels, probs = eval_loop.read_outputs(model_dir, "validation")
  recomputed = evaluation.compute_metrics(labels, probs, "binary", ["0", "1"])
  assert recomputed["pr_auc"] == pytest.approx(results["final"]["validation"]["pr_auc"])
  assert len(labels) == results["final"]["validation"]["num_examples"]
  assert checkpoint_steps(model_dir, "best") == [results["final"]["best_step"]]
  capsys.readouterr()

  again = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  assert "not retraining" in capsys.readouterr().out
  assert again["final"] == written["final"]


def test_stopped_run_resumes_and_continues_the_step_count(data_dir, tmp_path, capsys):
  model_dir = str(tmp_path / "run")
  config = fx.tiny_config(data_dir, **{"train.stop_at_step": 37, "export": False})
  stopped = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  assert (stopped["stopped_at_step"], stopped["total_steps"]) == (37, 64)
  assert 0 < stopped["train_padding_efficiency"] <= 1 and stopped["train_examples_per_sec"] > 0
  assert max(checkpoint_steps(model_dir)) == 37
  evaluated = json.load(open(os.path.join(model_dir, "eval_results.json")))["epochs"]
  assert [e["epoch"] for e in evaluated] == [1]
  changed = fx.tiny_config(data_dir, **{"train.global_batch_size": 8})
  with pytest.raises(ValueError, match="train.global_batch_size"):   # would mix two runs
    train.train_and_evaluate(changed, data_dir, model_dir, one_device())
  capsys.readouterr()

  config = fx.tiny_config(data_dir, **{"export": False})
  results = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  out = capsys.readouterr().out
  assert "step 37 (epoch 2, 5 of its 32 steps done)" in out
  assert "skipping the 5 batches trained before the restart" in out
  assert "step 4/64" not in out and "step 40/64" in out   # counting went on from 37
  assert [e["epoch"] for e in results["epochs"]] == [1, 2]
  assert max(checkpoint_steps(model_dir)) == 64


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_with_float32_logits(data_dir, tmp_path, policy):
  config = fx.tiny_config(data_dir, **{"precision": policy, "train.stop_at_step": 3,
                                       "export": False})
  result = train.train_and_evaluate(config, data_dir, str(tmp_path / "run"), one_device())
  assert result["stopped_at_step"] == 3
  assert tf.keras.mixed_precision.global_policy().name == policy
  manifest = schema.read_manifest(data_dir)
  classifier, _ = model_lib.build_classifier(config, manifest)
  ids = tf.constant([[2, 4, 3, 0]])
  logits = classifier({"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32),
                       "input_type_ids": tf.zeros_like(ids)})
  assert logits.dtype == tf.float32 and logits.shape == (1, 1)
  encoder_layer = [l for l in classifier.layers if "encoder" in l.name][0]
  assert encoder_layer.compute_dtype == policy.split("_")[1]


@pytest.mark.parametrize("distil", [False, True])
def test_a_mixed_precision_run_exports_float32_layers_with_its_weights(data_dir, tmp_path, distil):
  from serving import inference
  teacher = None
  if distil:   # a float32 teacher, then a mixed bfloat16 student of 1 layer
    teacher = str(tmp_path / "teacher")
    train.train_and_evaluate(fx.tiny_config(data_dir, **{"train.epochs": 1,
                                                         "train.steps_per_epoch": 4}),
                             data_dir, teacher, one_device())
  overrides = {"precision": "mixed_bfloat16", "train.epochs": 1, "train.steps_per_epoch": 4}
  if distil:
    overrides.update({"distill.teacher": teacher, "distill.layers": (1,)})
  config = fx.tiny_config(data_dir, **overrides)
  model_dir = str(tmp_path / "run")
  result = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  loaded = inference.load(result["final"]["export_dir"])
  graph = loaded.signatures["serving_default"].graph.as_graph_def()
  functions = [f.signature.name for f in graph.library.function]
  assert functions and "DT_BFLOAT16" not in str(graph)   # not one bfloat16 tensor or cast


def test_a_finished_run_without_its_export_is_exported_again_from_its_final_weights(
    data_dir, tmp_path, capsys):
  import shutil
  from serving import export_info, inference
  config = fx.tiny_config(data_dir, **{"train.epochs": 1, "train.steps_per_epoch": 4})
  model_dir = str(tmp_path / "run")
  export_dir = train.train_and_evaluate(config, data_dir, model_dir, one_device())["final"][
      "export_dir"]
  texts = ["how are you ?", "hello , world", "the cat sat on the mat"]
  before = [p for _, p in inference.predict(inference.load(export_dir), "serving_default", texts)]
  checkpoints = checkpoint_steps(model_dir)
  results = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  assert "exporting" not in capsys.readouterr().out   # the export is there: nothing to do
  shutil.rmtree(export_dir)
  results = train.train_and_evaluate(config, data_dir, model_dir, one_device())
  assert "without export/: exporting" in capsys.readouterr().out
  assert results["final"]["export_dir"] == export_dir
  after = [p for _, p in inference.predict(inference.load(export_dir), "serving_default", texts)]
  np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
  assert checkpoint_steps(model_dir) == checkpoints   # not trained again
  assert export_info.read_metadata(export_dir)["compute_dtype"] == "float32"

  # The same weights exported again to compute in bfloat16 (config.export_precision).
  shutil.rmtree(export_dir)
  fast = fx.tiny_config(data_dir, **{"train.epochs": 1, "train.steps_per_epoch": 4,
                                     "export_precision": "bfloat16"})
  train.train_and_evaluate(fast, data_dir, model_dir, one_device())
  loaded = inference.load(export_dir)
  assert export_info.read_metadata(export_dir)["compute_dtype"] == "bfloat16"
  assert "DT_BFLOAT16" in str(loaded.signatures["serving_default"].graph.as_graph_def())
  bf16 = [p for _, p in inference.predict(loaded, "serving_default", texts)]
  np.testing.assert_allclose(bf16, before, rtol=0, atol=0.02)
  assert checkpoint_steps(model_dir) == checkpoints


def test_the_float32_twin_holds_the_mixed_models_weights(data_dir):
  from trainer import export_step
  config = fx.tiny_config(data_dir, **{"precision": "mixed_bfloat16"})
  manifest = schema.read_manifest(data_dir)
  strategy_lib.set_precision("mixed_bfloat16")
  mixed, _ = model_lib.build_classifier(config, manifest)
  twin = export_step.serving_model(config, manifest, mixed)
  assert tf.keras.mixed_precision.global_policy().name == "mixed_bfloat16"   # restored
  assert "bfloat16" not in {l.compute_dtype for l in twin.layers}
  assert "bfloat16" in {l.compute_dtype for l in mixed.layers}
  assert all(np.array_equal(a, b) for a, b in zip(twin.get_weights(), mixed.get_weights()))
  ids = tf.constant([[2, 4, 5, 6, 3]])
  inputs = {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
            "input_type_ids": tf.zeros_like(ids)}
  np.testing.assert_allclose(twin(inputs).numpy(), mixed(inputs).numpy(), atol=0.1)
  strategy_lib.set_precision("float32")
  assert export_step.serving_model(config, manifest, twin) is twin   # float32 already
  # export_precision=bfloat16: a float32 run's export computes in bfloat16, head in float32.
  config = fx.tiny_config(data_dir, **{"export_precision": "bfloat16"})
  fast = export_step.serving_model(config, manifest, twin)
  assert tf.keras.mixed_precision.global_policy().name == "float32"
  assert "bfloat16" in {l.compute_dtype for l in fast.layers}
  assert fast(inputs).dtype == tf.float32
  assert all(np.array_equal(a, b) for a, b in zip(fast.get_weights(), twin.get_weights()))
  assert export_step.serving_model(config, manifest, fast) is fast


def test_non_finite_loss_stops_naming_the_step_and_never_becomes_best(data_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  config = fx.tiny_config(data_dir, **{"train.learning_rate": 1e30, "train.epochs": 1})
  with pytest.raises(train.TrainingError, match="at step 2 "):
    train.train_and_evaluate(config, data_dir, model_dir, one_device())
  assert checkpoint_steps(model_dir) == []

  config = fx.tiny_config(data_dir, **{"train.learning_rate": 1e30, "train.epochs": 1,
                                       "train.nan_policy": "skip"})
  results = train.train_and_evaluate(config, data_dir, str(tmp_path / "skip"), one_device())
  assert results["final"]["nan_steps_skipped"] == 31
  assert checkpoint_steps(str(tmp_path / "skip"), "best") == []   # NaN is never best
  assert results["final"]["export_dir"] is None


def test_vocabulary_mismatch_is_refused_before_building(data_dir, tmp_path):
  other = fx.write_vocab(str(tmp_path), fx.VOCAB[:-1] + ["zzz"])
  config = fx.tiny_config(data_dir, **{"encoder.vocab_file": other})
  with pytest.raises(schema.DataError, match="vocabulary mismatch"):
    train.train_and_evaluate(config, data_dir, str(tmp_path / "run"), one_device())
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_hub_savedmodel_encoder_builds_and_its_vocab_is_checked(data_dir, tmp_path):
  hub_dir = fx.write_hub_encoder(str(tmp_path / "hub"))
  config = fx.tiny_config(data_dir, **{"encoder.kind": "hub", "encoder.hub_handle": hub_dir,
                                       "model.pooling": "cls"})
  manifest = schema.read_manifest(data_dir)
  assert model_lib.check_encoder_fits_data(config.encoder, manifest).endswith("vocab.txt")
  classifier, encoder = model_lib.build_classifier(config, manifest)
  # A TF-Hub BERT keeps Model Garden's variable names: layer decay can place every variable.
  config.train.layer_decay = 0.5
  decay = optimization.lr_multipliers(config.train, classifier, encoder)
  assert sorted(decay.values()).count(0.5) == 5            # the embeddings, 1 layer below
  assert len(decay) == len(classifier.trainable_variables) and min(decay.values()) == 0.5
  ids = tf.constant([[2, 4, 3]])
  logits = classifier({"input_word_ids": ids, "input_mask": tf.ones_like(ids),
                       "input_type_ids": tf.zeros_like(ids)})
  assert logits.shape == (1, 1)
  assert len(classifier.trainable_variables) > 10   # the encoder is fine-tuned too
  fx.write_vocab(os.path.join(hub_dir, "assets"), fx.VOCAB[::-1])
  with pytest.raises(schema.DataError, match="vocabulary mismatch"):
    model_lib.check_encoder_fits_data(config.encoder, manifest)


def test_bad_data_dirs_and_model_dirs_are_refused(data_dir, tmp_path):
  config = fx.tiny_config(data_dir)
  with pytest.raises(schema.DataError, match="no manifest.json"):
    train.train_and_evaluate(config, str(tmp_path), str(tmp_path / "run"), one_device())
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="not writable"):
    train.train_and_evaluate(config, data_dir, str(blocker / "run"), one_device())


def test_every_shipped_config_is_valid():
  configs = os.path.join(fx.REPO, "configs")
  names = sorted(f for f in os.listdir(configs) if f.endswith(".py"))
  assert {"quora_bert_base.py", "tiny.py", "tweets_minilm.py"} <= set(names)
  for name in names:
    config_lib.validate(config_lib.load_config_file(os.path.join(configs, name)))
  quora = config_lib.load_config_file(os.path.join(configs, "quora_bert_base.py"))
  assert quora.encoder.hub_handle.endswith("bert_en_uncased_L-12_H-768_A-12/4")
  assert (quora.train.global_batch_size, quora.train.learning_rate, quora.train.epochs,
          quora.model.dropout, quora.model.head) == (32, 2e-5, 5, 0.5, "binary")


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import trainer_fixtures as fx
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer import strategy as strategy_lib, train
    data_dir, model_dir = sys.argv[1], sys.argv[2]
    strategy = strategy_lib.build_strategy("mirrored")
    try:
      train.train_and_evaluate(fx.tiny_config(data_dir, **{"train.global_batch_size": 15}),
                               data_dir, model_dir + "_odd", strategy)
      refused = None
    except ValueError as e:
      refused = str(e)
    results = train.train_and_evaluate(
        fx.tiny_config(data_dir, **{"train.epochs": 1, "export": False,
                                    "train.steps_per_execution": 4}),
        data_dir, model_dir, strategy)
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync,
                                  "refused": refused, "final": results["final"]}))
""")


def test_mirrored_strategy_on_two_logical_cpus(data_dir, tmp_path):
  proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, data_dir, str(tmp_path / "run")],
                        env=ENV, capture_output=True, text=True, timeout=240)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
  result = json.loads(lines[0][len("RESULT "):])
  assert result["replicas"] == 2
  assert "not divisible by the 2 replicas" in result["refused"]
  assert result["final"]["step"] == 32
  assert "2 replica(s) x 8" in proc.stdout
  assert result["final"]["validation"]["num_examples"] == 64   # filler rows are not counted


# Two logical CPUs must be configured before TensorFlow starts: a process of its own.
MIRRORED_LAYER_DECAY = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import trainer_fixtures as fx
    from bertcore import schema
    from trainer import strategy as strategy_lib, train
    data_dir = sys.argv[1]
    config = fx.tiny_config(data_dir, **{"train.layer_decay": 0.5, "train.weight_decay": 0.0})
    manifest = schema.read_manifest(data_dir)

    def table(name):
      built = train.build_model_and_optimizer(config, manifest,
                                              strategy_lib.build_strategy(name), "float32", 10)
      # Keras numbers a second model's layers (bert_encoder_v2_1/...): compare below the root.
      multipliers = {k.split("/", 1)[1]: v for k, v in built[1].lr_multipliers.items()}
      return built, multipliers

    _, one_device = table("one_device")
    (classifier, optimizer), mirrored = table("mirrored")
    strategy, variables = classifier.distribute_strategy, classifier.trainable_variables
    before = [[c.numpy() for c in strategy.experimental_local_results(v)] for v in variables]

    @tf.function
    def one_step():  # gradient 1 everywhere: Adam's first step moves each weight by its lr
      strategy.run(lambda: optimizer.apply_gradients(
          [(tf.ones_like(v), v) for v in variables]))
    one_step()
    moved = {}
    for v, start in zip(variables, before):
      copies = strategy.experimental_local_results(v)
      moved[v.name.split("/", 1)[1].split(":")[0]] = [
          float(abs(c.numpy() - s).mean()) for c, s in zip(copies, start)]
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync,
                                  "one_device": one_device, "mirrored": mirrored,
                                  "moved": moved, "lr": config.train.learning_rate}))
""")


def test_mirrored_replicas_update_with_the_one_device_multipliers(data_dir):
  proc = subprocess.run([sys.executable, "-c", MIRRORED_LAYER_DECAY, data_dir],
                        env=fx.task_env(), cwd=fx.REPO, capture_output=True, text=True,
                        timeout=240)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
  got = json.loads(lines[0][len("RESULT "):])
  assert got["replicas"] == 2
  assert got["mirrored"] == got["one_device"]
  # configs/tiny.py: 2 layers, so embeddings x0.25, layer_0 x0.5, layer_1 and the head x1.
  assert sorted(set(got["one_device"].values())) == [0.25, 0.5, 1.0]
  for name, k in got["one_device"].items():
    for replica_moved in got["moved"][name]:          # both copies, by k x lr
      assert replica_moved == pytest.approx(k * got["lr"], rel=1e-3), name


def _task(data_dir, model_dir, *flags, env=ENV):
  return [sys.executable, "-m", "trainer.task", f"--config={fx.TINY_CONFIG}",
          f"--data_dir={data_dir}", f"--model_dir={model_dir}",
          f"--config.encoder.vocab_file={os.path.join(data_dir, 'vocab.txt')}", *flags]


def test_sigterm_saves_a_checkpoint_exits_nonzero_and_the_rerun_resumes(data_dir, tmp_path,
                                                                        capsys):
  model_dir = str(tmp_path / "run")
  proc = subprocess.Popen(_task(data_dir, model_dir, "--config.train.epochs=200",
                                "--config.train.checkpoint_every_steps=0"),
                          env=ENV, cwd=fx.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith("step 8/"):
      proc.send_signal(signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=60)
  output = "".join(output) + rest
  assert proc.returncode == 143, output[-3000:]
  saved = [l for l in output.splitlines() if l.startswith("preempted: checkpoint saved at step")]
  assert len(saved) == 1, output[-3000:]
  step = int(saved[0].rsplit(" ", 1)[1])
  assert step >= 8 and checkpoint_steps(model_dir) == [step]

  # The rerun in this process: what it reads is the checkpoint the signalled process saved.
  capsys.readouterr()
  rerun = train.train_and_evaluate(
      fx.tiny_config(data_dir, **{"train.epochs": 200, "train.checkpoint_every_steps": 0,
                                  "train.stop_at_step": step + 2}),
      data_dir, model_dir, one_device())
  assert rerun["stopped_at_step"] == step + 2
  assert (f"resuming from {model_dir}/checkpoints/ckpt-{step}: step {step}"
          in capsys.readouterr().out)
  assert checkpoint_steps(model_dir)[-1] == step + 2


def test_task_prints_one_line_errors(data_dir, tmp_path):
  proc = subprocess.run(_task(str(tmp_path), str(tmp_path / "run")), env=ENV, cwd=fx.REPO,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "Traceback" not in proc.stderr


def test_a_mistyped_override_is_one_line_naming_the_closest_field(tmp_path):
  proc = subprocess.run(_task(str(tmp_path), str(tmp_path / "run"),
                              "--config.train.learnin_rate=3"),
                        env=ENV, cwd=fx.REPO, capture_output=True, text=True, timeout=120)
  assert (proc.returncode, proc.stderr) == (
      1, "error: --config.train.learnin_rate: the config has no field 'learnin_rate'; "
         'Did you mean "learning_rate" instead of "learnin_rate"?\n')
  assert not (tmp_path / "run").exists()


# The default tier has the same run with more checks (the records and config of each W&B run):
# test_secrets.test_the_api_key_is_never_printed_written_or_logged.
@pytest.mark.slow
def test_wandb_offline_run_writes_its_files_and_never_the_key(data_dir, tmp_path):
  sentinel = "SENTINEL-wandb-key-0123456789abcdef0123456789abcdef"
  model_dir = str(tmp_path / "run")
  env = dict(ENV, WANDB_MODE="offline", WANDB_API_KEY=sentinel,
             WANDB_CACHE_DIR=str(tmp_path / "cache"), WANDB_DATA_DIR=str(tmp_path / "data"),
             WANDB_CONFIG_DIR=str(tmp_path / "config"), WANDB_ARTIFACT_DIR=str(tmp_path / "art"))
  proc = subprocess.run(_task(data_dir, model_dir, "--config.train.epochs=1",
                              "--config.wandb.mode=auto"),
                        env=env, cwd=fx.REPO, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert sentinel not in proc.stdout + proc.stderr
  runs = sorted(os.listdir(os.path.join(model_dir, "wandb")))
  offline = [r for r in runs if r.startswith("offline-run-")]
  assert len(offline) == 3, runs                        # train, evaluate, save
  for run in offline:
    assert any(f.endswith(".wandb") for f in os.listdir(os.path.join(model_dir, "wandb", run)))
  scanned = 0
  for root in (model_dir, str(tmp_path)):
    for dirpath, _, files in os.walk(root):
      for name in files:
        with open(os.path.join(dirpath, name), "rb") as f:
          assert sentinel.encode() not in f.read(), os.path.join(dirpath, name)
        scanned += 1
  assert scanned > 20


def test_wandb_mode_and_secret_filtering(monkeypatch, tmp_path):
  from trainer import tracking
  monkeypatch.setenv("HOME", str(tmp_path))           # no ~/.netrc login
  for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED"):
    monkeypatch.delenv(name, raising=False)
  assert tracking.resolve_mode("auto") == "disabled"  # no key: off, never a login prompt
  monkeypatch.setenv("WANDB_MODE", "offline")
  assert tracking.resolve_mode("auto") == "offline"
  monkeypatch.delenv("WANDB_MODE")
  monkeypatch.setenv("WANDB_API_KEY", "k3y-value")
  assert tracking.resolve_mode("auto") == "online"
  assert tracking.resolve_mode("disabled") == "disabled"
  cleaned = tracking.sanitize({"wandb": {"api_key": "x", "project": "p"},
                               "note": "uses k3y-value here", "tags": ["k3y-value"]})
  assert cleaned == {"wandb": {"api_key": "<redacted>", "project": "p"},
                     "note": "uses <redacted> here", "tags": ["<redacted>"]}


@pytest.mark.slow
def test_xla_compiled_training_matches_the_plain_step(data_dir, tmp_path):
  weights = {}
  for xla in (False, True):
    config = fx.tiny_config(data_dir, **{"xla": xla, "train.stop_at_step": 8, "export": False})
    train.train_and_evaluate(config, data_dir, str(tmp_path / f"xla{xla}"), one_device())
    reader = tf.train.load_checkpoint(str(tmp_path / f"xla{xla}" / "checkpoints" / "ckpt-8"))
    weights[xla] = {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(
        str(tmp_path / f"xla{xla}" / "checkpoints" / "ckpt-8"))
                    if name.startswith("model/") and name.endswith("VARIABLE_VALUE")}
  assert weights[False].keys() == weights[True].keys() and len(weights[True]) > 10
  for name, value in weights[False].items():
    np.testing.assert_allclose(weights[True][name], value, atol=2e-3, err_msg=name)
