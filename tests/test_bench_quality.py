"""benchmarks/bench_quality.py: the stages as the package's own commands (subprocesses faked), the
baseline on the same rows, one record that report.py's quality page renders."""
import json
import os

import pytest

from benchmarks import bench_quality as bq, report, tfidf_baseline
from preprocess import datasets

THRESHOLDS = [round(i / 100, 2) for i in range(1, 100)]


def metrics(f1, pr_auc):
  return {"best_threshold": 0.3, "best_f1": f1, "f1": f1 - 0.01, "pr_auc": pr_auc,
          "roc_auc": 0.9, "accuracy": 0.8,
          "threshold_sweep": {"thresholds": THRESHOLDS, "f1": [f1] * len(THRESHOLDS)}}


@pytest.fixture
def fakes(tmp_path, monkeypatch):
  """Subprocesses that write what the real ones would; the baseline's rows and fit recorded."""
  calls = []

  def fake_run(command, log_path, env=None):
    calls.append(command)
    flag = lambda name: next(a.split("=", 1)[1] for a in command if a.startswith(name + "="))
    if "trainer.convert" in command:
      os.makedirs(flag("--output_dir"))
      open(os.path.join(flag("--output_dir"), "bert_config.json"), "w").close()
    elif "preprocess.run" in command:
      os.makedirs(flag("--output_dir"))
      open(os.path.join(flag("--output_dir"), "manifest.json"), "w").close()
    else:
      model_dir = flag("--model_dir")
      os.makedirs(model_dir)
      with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
        json.dump({"epochs": [{"validation": {"best_f1": 0.7}}], "final": {
            "validation": metrics(0.7, 0.8), "test": metrics(0.7356, 0.8098), "best_step": 200,
            "train_examples_per_sec": 44.0}}, f)
      with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump({"precision": "auto", "model": {"pooling": "mean", "head": "binary"},
                   "train": {"seed": 7}}, f)
    return {"seconds": 12.0, "returncode": 0, "log": log_path,
            "output": "...; precision float32\n"}

  monkeypatch.setattr(bq.common, "run_logged", fake_run)
  monkeypatch.setattr(bq.common, "sample", lambda: {"load": 0.1, "busy": 0.05})
  monkeypatch.setattr(datasets, "dataset_path", lambda name: f"/data/{name}.csv")
  monkeypatch.setattr(tfidf_baseline, "load_dataset", lambda argv: calls.append(argv) or "rows")
  monkeypatch.setattr(tfidf_baseline, "check_against_data_dir",
                      lambda dataset, data_dir: calls.append(("checked", data_dir)))
  monkeypatch.setattr(tfidf_baseline, "run_baseline", lambda dataset, head: {
      "summary": {"test_f1": 0.6604, "test_pr_auc": 0.7096}, "C": 4.0, "class_weight": None})
  return calls


def test_one_run_records_both_models_on_the_same_rows(tmp_path, fakes):
  out = tmp_path / "quality_runs.jsonl"
  bq.main(["--task=binary", "--seed=7", f"--work_dir={tmp_path}/w", f"--out={out}",
           "--run_name=r1", "--config.train.epochs=2"])
  convert, preprocess, train, baseline_argv, checked = fakes
  data_dir = f"{tmp_path}/w/data_binary_L128"
  assert preprocess[3:] == baseline_argv           # the baseline reads the job's own flags
  assert checked == ("checked", data_dir)
  assert "--input=/data/tweets.csv" in baseline_argv
  assert {"--config.model.head=binary", "--config.train.seed=7", "--config.export=False",
          "--config.train.epochs=2", f"--data_dir={data_dir}"} <= set(train)
  (record,) = bq.common.read_records(str(out))
  assert record["fine_tuned"]["overrides"]["train.epochs"] == "2"
  assert record["fine_tuned"]["stages"]["train"] == {"seconds": 12.0, "precision": "float32"}
  assert record["fine_tuned"]["summary"]["test_f1"] == 0.7356
  text = report.render_page(report.QUALITY, [record])
  assert "| r1 " in text and "| auto (float32) " in text and "| +0.0752 " in text


def test_a_second_run_reuses_the_encoder_data_and_baseline(tmp_path, fakes):
  args = [f"--work_dir={tmp_path}/w", f"--out={tmp_path}/q.jsonl"]
  bq.main(args + ["--run_name=a"])
  fakes.clear()
  bq.main(args + ["--run_name=b"])
  assert len(fakes) == 1 and "trainer.task" in fakes[0]   # only the fine-tuning runs again


def test_flags_other_than_config_overrides_are_one_error_line(tmp_path, capsys):
  with pytest.raises(SystemExit):
    bq.main([f"--work_dir={tmp_path}", "--pooling=cls"])
  assert "trainer settings go as --config.<field>=<value>" in capsys.readouterr().err
