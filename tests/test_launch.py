"""Tests for launch/: the dry-run requests and commands, the validation errors, and submission
through fake gcloud / client-library stand-ins. Offline; no cloud SDK and no TensorFlow needed.

The CLI runs as a subprocess from a temporary "repository" (a dummy setup.py and a tiny config
file), with this repository on PYTHONPATH, exactly as a user runs it from the repository root.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import types

import pytest

from launch import dataflow
from launch import tpu
from launch import validation
from launch import vertex

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_CONFIG = '''\
import ml_collections


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.train = ml_collections.ConfigDict()
  config.train.global_batch_size = int(arg) if arg else 32
  return config
'''

VERTEX = ["vertex", "--project=proj", "--region=us-central1", "--staging_bucket=gs://bkt/staging/",
          "--image=us-central1-docker.pkg.dev/proj/repo/bert-trainer:1", "--job_name=bert-quora"]
TPU_VM = ["tpu_vm", "--project=proj", "--zone=us-central1-b", "--job_name=bert-tpu"]
DATAFLOW = ["dataflow", "--project=proj", "--region=europe-west4", "--staging_bucket=gs://bkt",
            "--job_name=prep-quora"]
PATHS = ["--config=configs/tiny.py", "--data_dir=gs://bkt/data", "--model_dir=gs://bkt/model"]
IMAGE = "us-central1-docker.pkg.dev/proj/repo/bert-trainer:1"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
  """A repository root as the launcher sees it: ./setup.py, ./configs/tiny.py, flag files."""
  (tmp_path / "setup.py").write_text("# stand-in\n")
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "tiny.py").write_text(TINY_CONFIG)
  (tmp_path / "configs" / "tweets.args").write_text("# a recipe\n--text_column=text\n\n"
                                                    "--labels=rest,positive\n")
  (tmp_path / "configs" / "direct.args").write_text("--runner=DirectRunner\n")
  monkeypatch.chdir(tmp_path)
  return tmp_path


def run_cli(args, cwd, path_prefix=None):
  env = dict(os.environ, PYTHONPATH=REPO)
  if path_prefix:
    env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
  return subprocess.run([sys.executable, "-m", "launch.submit"] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=60)


def dry_run(args, cwd):
  i = args.index("--") if "--" in args else len(args)
  result = run_cli(args[:i] + ["--dry_run"] + args[i:], cwd)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def gpu_pool(replicas, machine_spec, args):
  return {
      "machine_spec": machine_spec,
      "replica_count": replicas,
      "container_spec": {"image_uri": IMAGE, "command": ["python", "-m", "trainer.task"],
                         "args": args},
  }


# --- dry runs -----------------------------------------------------------------------------------

def test_vertex_single_machine_dry_run_is_the_exact_request(workdir):
  trainer_args = PATHS + ["--strategy=mirrored"]
  request = dry_run(VERTEX + ["--machine_type=n1-standard-8", "--accelerator_type=NVIDIA_TESLA_T4",
                              "--accelerator_count=2", "--"] + trainer_args, workdir)
  spec = {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
          "accelerator_count": 2}
  assert request == {
      "target": "vertex",
      "parent": "projects/proj/locations/us-central1",
      "custom_job": {
          "display_name": "bert-quora",
          "job_spec": {
              "worker_pool_specs": [gpu_pool(1, spec, trainer_args)],
              "base_output_directory": {"output_uri_prefix": "gs://bkt/staging/bert-quora"},
          },
      },
  }


def test_vertex_multi_worker_dry_run_has_chief_and_worker_pools(workdir):
  # Passthrough is unchanged: odd spacing, an override, a boolean flag, a value with a space.
  trainer_args = PATHS + ["--strategy", "multi_worker_mirrored",
                          "--config.train.global_batch_size=64", "--model_dir_per_trial",
                          "--wandb_group=run 7"]
  request = dry_run(VERTEX + ["--machine_type=a2-highgpu-2g", "--workers=4", "--"] + trainer_args,
                    workdir)
  spec = {"machine_type": "a2-highgpu-2g", "accelerator_type": "NVIDIA_TESLA_A100",
          "accelerator_count": 2}
  pools = request["custom_job"]["job_spec"]["worker_pool_specs"]
  assert pools == [gpu_pool(1, spec, trainer_args), gpu_pool(3, spec, trainer_args)]


def test_vertex_cpu_only_machine_has_no_accelerator_fields():
  request = vertex.build_request("p", "r", "j", "gs://b", IMAGE, "n1-standard-4", None, 0, 1,
                                 ["--strategy=one_device"])
  pool, = request["custom_job"]["job_spec"]["worker_pool_specs"]
  assert pool["machine_spec"] == {"machine_type": "n1-standard-4"}


def test_tpu_vm_dry_run_is_create_copy_setup_run(workdir):
  trainer_args = PATHS + ["--strategy=tpu", "--tpu=local"]
  plan = dry_run(TPU_VM + ["--tpu_type=v3-8", "--"] + trainer_args, workdir)
  gcloud = ["gcloud", "compute", "tpus", "tpu-vm"]
  where = ["--project=proj", "--zone=us-central1-b"]
  assert plan["commands"] == [
      gcloud + ["create", "bert-tpu"] + where +
      ["--accelerator-type=v3-8", "--version=tpu-ubuntu2204-base"],
      gcloud + ["scp", "build/launch/bert-tpu-src.tar.gz", "bert-tpu:bert-tf-finetune.tar.gz"] +
      where + ["--worker=all"],
      gcloud + ["ssh", "bert-tpu"] + where +
      ["--worker=all", "--command=rm -rf bert-tf-finetune && mkdir bert-tf-finetune && "
       "tar -xzf bert-tf-finetune.tar.gz -C bert-tf-finetune && "
       "bash bert-tf-finetune/docker/tpu_vm_setup.sh"],
      gcloud + ["ssh", "bert-tpu"] + where +
      ["--worker=all", "--command=cd bert-tf-finetune && nohup $HOME/bert-venv/bin/python -m "
       "trainer.task --config=configs/tiny.py --data_dir=gs://bkt/data --model_dir=gs://bkt/model "
       "--strategy=tpu --tpu=local > $HOME/bert-tpu.log 2>&1 < /dev/null &"],
  ]
  assert plan["delete"] == gcloud + ["delete", "bert-tpu"] + where + ["--quiet"]
  assert plan["shell"][0] == ("gcloud compute tpus tpu-vm create bert-tpu --project=proj "
                              "--zone=us-central1-b --accelerator-type=v3-8 "
                              "--version=tpu-ubuntu2204-base")


def test_tpu_vm_runtime_override_and_skip_create(workdir):
  plan = dry_run(TPU_VM + ["--tpu_type=v5litepod-8", "--skip_create", "--"] + PATHS +
                 ["--strategy=tpu", "--tpu=local"], workdir)
  assert [c[4] for c in plan["commands"]] == ["scp", "ssh", "ssh"]
  plan = dry_run(TPU_VM + ["--tpu_type=v5litepod-8", "--runtime_version=tpu-vm-tf-2.20.0-pjrt",
                           "--"] + PATHS + ["--strategy=tpu", "--tpu=local"], workdir)
  assert plan["commands"][0][-2:] == ["--accelerator-type=v5litepod-8",
                                      "--version=tpu-vm-tf-2.20.0-pjrt"]


def test_dataflow_dry_run_has_pipeline_options_and_setup_file(workdir):
  job_args = ["@configs/tweets.args", "--input=gs://bkt/raw/train*.csv",
              "--input=gs://bkt/raw/more.csv", "--output_dir=gs://bkt/data",
              "--vocab_file=vocab.txt", "--num_shards=64"]
  plan = dry_run(DATAFLOW + ["--machine_type=n2-standard-4", "--workers=20", "--"] + job_args,
                 workdir)
  options = {
      "runner": "DataflowRunner", "project": "proj", "region": "europe-west4",
      "temp_location": "gs://bkt/prep-quora/tmp",
      "staging_location": "gs://bkt/prep-quora/staging",
      "setup_file": "./setup.py", "job_name": "prep-quora",
      "machine_type": "n2-standard-4", "max_num_workers": "20",
  }
  assert plan["pipeline_options"] == options
  assert plan["command"] == (["python", "-m", "preprocess.run"] +
                             [f"--{k}={v}" for k, v in options.items()] + job_args)
  assert "--setup_file=./setup.py" in plan["shell"]


# --- validation errors, as the user sees them ---------------------------------------------------

GOOD_VERTEX = VERTEX + ["--machine_type=g2-standard-48"]   # 4 x L4
ERRORS = [
    ("non-gs data_dir", GOOD_VERTEX + ["--", "--config=configs/tiny.py", "--data_dir=/data",
                                       "--model_dir=gs://b/m", "--strategy=mirrored"],
     "--data_dir must be a gs:// path for a cloud run (got '/data')"),
    ("non-gs model_dir", GOOD_VERTEX + ["--", "--config=configs/tiny.py", "--data_dir=gs://b/d",
                                        "--model_dir", "runs/m", "--strategy=mirrored"],
     "--model_dir must be a gs:// path"),
    ("missing model_dir", GOOD_VERTEX + ["--", "--config=configs/tiny.py", "--data_dir=gs://b/d",
                                         "--strategy=mirrored"],
     "--model_dir=gs://... is required after --"),
    ("non-gs staging bucket", ["vertex", "--project=p", "--region=r", "--staging_bucket=/tmp/s",
                               f"--image={IMAGE}", "--machine_type=g2-standard-4", "--"] +
     PATHS + ["--strategy=mirrored"],
     "--staging_bucket must be a gs:// path"),
    ("A100 on n1", VERTEX + ["--machine_type=n1-standard-8", "--accelerator_type=NVIDIA_TESLA_A100",
                             "--"] + PATHS + ["--strategy=mirrored"],
     "n1-standard-8 takes NVIDIA_TESLA_P100, NVIDIA_TESLA_P4, NVIDIA_TESLA_T4, NVIDIA_TESLA_V100, "
     "not NVIDIA_TESLA_A100"),
    ("wrong count for g2", VERTEX + ["--machine_type=g2-standard-24", "--accelerator_count=1",
                                     "--"] + PATHS + ["--strategy=mirrored"],
     "g2-standard-24 comes with 2 x NVIDIA_L4; got 1 x NVIDIA_L4"),
    ("T4 x 8", VERTEX + ["--machine_type=n1-standard-16", "--accelerator_type=NVIDIA_TESLA_T4",
                         "--accelerator_count=8", "--"] + PATHS + ["--strategy=mirrored"],
     "NVIDIA_TESLA_T4 on n1-standard-16 comes in counts of 1/2/4, not 8"),
    ("GPU on e2", VERTEX + ["--machine_type=e2-standard-8", "--accelerator_type=NVIDIA_TESLA_T4",
                            "--"] + PATHS + ["--strategy=mirrored"],
     "e2-standard-8 cannot take GPUs on Vertex AI"),
    ("unknown GPU machine", VERTEX + ["--machine_type=a3-highgpu-3g", "--"] + PATHS +
     ["--strategy=mirrored"], "unknown GPU machine type 'a3-highgpu-3g'"),
    ("batch override on 4 GPUs", GOOD_VERTEX + ["--"] + PATHS +
     ["--strategy=mirrored", "--config.train.global_batch_size=30"],
     "global batch 30 does not divide across 4 replicas (1 worker(s) x 4 NVIDIA_L4, "
     "--strategy=mirrored); use a multiple of 4"),
    ("config batch on 3 workers", VERTEX + ["--machine_type=g2-standard-8", "--workers=3", "--"] +
     PATHS + ["--strategy=multi_worker_mirrored"],
     "global batch 32 does not divide across 3 replicas (3 worker(s) x 1 NVIDIA_L4"),
    ("config arg batch on v3-8", TPU_VM + ["--tpu_type=v3-8", "--", "--config=configs/tiny.py:12",
                                           "--data_dir=gs://b/d", "--model_dir=gs://b/m",
                                           "--strategy=tpu", "--tpu=local"],
     "global batch 12 does not divide across 8 replicas (v3-8 = 8 TPUStrategy replicas)"),
    ("mirrored on several workers", GOOD_VERTEX + ["--workers=2", "--"] + PATHS +
     ["--strategy=mirrored"],
     "--workers=2 needs --strategy=multi_worker_mirrored, not --strategy=mirrored"),
    ("multi-worker on one worker", GOOD_VERTEX + ["--"] + PATHS +
     ["--strategy=multi_worker_mirrored"],
     "--strategy=multi_worker_mirrored needs --workers > 1"),
    ("tpu strategy on vertex", GOOD_VERTEX + ["--"] + PATHS + ["--strategy=tpu"],
     "--strategy=tpu needs a TPU: use the tpu_vm target"),
    ("one_device on 4 GPUs", GOOD_VERTEX + ["--"] + PATHS + ["--strategy=one_device"],
     "--strategy=one_device would use 1 of 4 GPUs"),
    ("mirrored on a TPU VM", TPU_VM + ["--tpu_type=v4-8", "--"] + PATHS + ["--strategy=mirrored"],
     "the tpu_vm target runs TPUStrategy: pass --strategy=tpu, not --strategy=mirrored"),
    ("TPU name on a TPU VM", TPU_VM + ["--tpu_type=v4-8", "--"] + PATHS +
     ["--strategy=tpu", "--tpu=my-tpu"],
     "on a TPU VM the trainer needs --tpu=local after -- (got --tpu=my-tpu)"),
    ("no strategy", GOOD_VERTEX + ["--"] + PATHS, "--strategy=... is required after --"),
    ("multi-host TPU", TPU_VM + ["--tpu_type=v3-32", "--"] + PATHS + ["--strategy=tpu"],
     "v3-32 is a multi-host TPU slice"),
    ("unknown TPU", TPU_VM + ["--tpu_type=v9-8", "--"] + PATHS + ["--strategy=tpu"],
     "unknown --tpu_type 'v9-8'"),
    ("config outside the repository", GOOD_VERTEX + ["--", "--config=/etc/x.py",
                                                     "--data_dir=gs://b/d", "--model_dir=gs://b/m",
                                                     "--strategy=mirrored"],
     "--config=/etc/x.py must be a path inside this repository"),
    ("missing config file", GOOD_VERTEX + ["--", "--config=configs/nope.py",
                                           "--data_dir=gs://b/d", "--model_dir=gs://b/m",
                                           "--strategy=mirrored"],
     "config file not found: configs/nope.py"),
    ("dataflow local output", DATAFLOW + ["--", "--input=gs://b/x.csv", "--output_dir=out"],
     "--output_dir must be a gs:// path for a cloud run (got 'out')"),
    ("dataflow second input local", DATAFLOW + ["--", "--input=gs://b/x.csv", "--input",
                                                "more/*.csv", "--output_dir=gs://b/o"],
     "--input must be a gs:// path for a cloud run (got 'more/*.csv')"),
    ("dataflow runner in a flag file", DATAFLOW + ["--", "@configs/direct.args",
                                                   "--input=gs://b/x.csv", "--output_dir=gs://b/o"],
     "--runner is set by the launcher; remove it from after --"),
    ("dataflow runner after --", DATAFLOW + ["--", "--input=gs://b/x.csv",
                                             "--output_dir=gs://b/o", "--runner=DirectRunner"],
     "--runner is set by the launcher; remove it from after --"),
    ("dataflow job name", ["dataflow", "--project=p", "--region=r", "--staging_bucket=gs://b",
                           "--job_name=Prep_1", "--", "--input=gs://b/x", "--output_dir=gs://b/o"],
     "--job_name 'Prep_1' is not a valid Dataflow job name"),
    ("dry_run after --", GOOD_VERTEX + ["--"] + PATHS + ["--strategy=mirrored", "--dry_run"],
     "--dry_run belongs before --"),
    ("missing launcher flag", ["vertex", "--project=p", "--"] + PATHS,
     "the following arguments are required: --region, --staging_bucket, --image"),
]


@pytest.mark.parametrize("args, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_invalid_submission_is_one_error_line(workdir, args, message):
  result = run_cli(args, workdir)
  assert result.returncode == 2
  assert result.stdout == ""
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("error: ") and message in lines[0], lines[0]


@pytest.mark.skipif(importlib.util.find_spec("google.cloud.aiplatform_v1") is not None,
                    reason="the [cloud] extra is installed here")
def test_vertex_submit_without_cloud_extra_says_how_to_install(workdir):
  result = run_cli(GOOD_VERTEX + ["--"] + PATHS + ["--strategy=mirrored"], workdir)
  assert (result.returncode, result.stderr) == (
      2, "error: install the cloud extra: pip install '.[cloud]'\n")


@pytest.mark.skipif(dataflow.beam_gcp_installed(), reason="apache-beam[gcp] is installed here")
def test_dataflow_submit_without_gcp_extra_says_how_to_install(workdir):
  result = run_cli(DATAFLOW + ["--", "--input=gs://b/x.csv", "--output_dir=gs://b/o"], workdir)
  assert (result.returncode, result.stderr) == (2, f"error: {dataflow.CLOUD_HINT}\n")


# --- the pure pieces ----------------------------------------------------------------------------

def test_parse_flags_reads_absl_styles():
  assert validation.parse_flags(
      ["--a=1", "--b", "2", "--model_dir_per_trial", "--c=x=y", "-d=4", "--a=5", "--e"]) == {
          "a": "5", "b": "2", "model_dir_per_trial": "true", "c": "x=y", "d": "4", "e": "true"}


def test_flag_items_keep_repeats_and_read_flag_files(workdir):
  assert validation.flag_items(["--input=a", "@configs/tweets.args", "--input", "b"]) == [
      ("input", "a"), ("text_column", "text"), ("labels", "rest,positive"), ("input", "b")]


@pytest.mark.parametrize("tpu_type, replicas, runtime", [
    ("v2-8", 8, "tpu-ubuntu2204-base"),
    ("v3-8", 8, "tpu-ubuntu2204-base"),
    ("v4-8", 4, "tpu-ubuntu2204-base"),      # 8 TensorCores = 4 megacore chips
    ("v5p-8", 4, "v2-alpha-tpuv5"),
    ("v5litepod-8", 8, "v2-alpha-tpuv5-lite"),
    ("v5litepod-4", 4, "v2-alpha-tpuv5-lite"),
    ("v6e-1", 1, "v2-alpha-tpuv6e"),
])
def test_tpu_topology_counts_strategy_replicas(tpu_type, replicas, runtime):
  assert validation.tpu_topology(tpu_type) == (replicas, runtime)


@pytest.mark.parametrize("machine, gpu, count, expected", [
    ("a2-highgpu-8g", None, None, ("NVIDIA_TESLA_A100", 8)),
    ("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1, ("NVIDIA_A100_80GB", 1)),
    ("a3-highgpu-8g", None, 8, ("NVIDIA_H100_80GB", 8)),
    ("g2-standard-96", None, None, ("NVIDIA_L4", 8)),
    ("n1-highmem-16", "NVIDIA_TESLA_V100", 8, ("NVIDIA_TESLA_V100", 8)),
    ("n1-standard-4", "NVIDIA_TESLA_T4", None, ("NVIDIA_TESLA_T4", 1)),
    ("n2-standard-8", None, None, (None, 0)),
])
def test_resolve_accelerator_valid_combinations(machine, gpu, count, expected):
  assert validation.resolve_accelerator(machine, gpu, count) == expected


def test_global_batch_comes_from_override_then_config_file(workdir):
  assert validation.global_batch_size({"config": "configs/tiny.py"}) == 32
  assert validation.global_batch_size({"config": "configs/tiny.py:48"}) == 48
  assert validation.global_batch_size({"config": "configs/tiny.py",
                                       "config.train.global_batch_size": "16"}) == 16
  (workdir / "configs" / "other.py").write_text("def get_config():\n  return {'train': {}}\n")
  with pytest.raises(ValueError, match="has no train.global_batch_size"):
    validation.global_batch_size({"config": "configs/other.py"})


def test_launcher_reads_the_same_batch_as_the_trainer_from_shipped_configs(monkeypatch):
  from trainer import config as trainer_config  # imports TensorFlow: the real configs need it
  monkeypatch.chdir(REPO)
  names = sorted(n for n in os.listdir("configs") if n.endswith(".py"))
  assert "quora_bert_base.py" in names
  for name in names:
    path = f"configs/{name}"
    assert validation.global_batch_size({"config": path}) == (
        trainer_config.load_config_file(path).train.global_batch_size), path


def test_source_files_ship_package_configs_and_setup_only(tmp_path):
  for name in ["setup.py", "bertcore/__init__.py", "bertcore/__pycache__/env.cpython-311.pyc",
               "configs/tiny.py", "docker/tpu_vm_setup.sh", "docker/Dockerfile", "tests/test_x.py",
               ".venv/bin/python", "README.md"]:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("x")
  assert tpu.source_files(str(tmp_path)) == [
      "bertcore/__init__.py", "configs/tiny.py", "docker/tpu_vm_setup.sh", "setup.py"]


# --- submission, with stand-ins for gcloud and the client library -------------------------------

FAKE_GCLOUD = '''#!{python}
import json, os, sys
with open(os.environ["GCLOUD_LOG"], "a") as log:
  log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(1 if os.environ.get("GCLOUD_FAIL") in sys.argv else 0)
'''


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
  bin_dir = tmp_path / "fakebin"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
  (bin_dir / "gcloud").chmod(0o755)
  log = tmp_path / "gcloud.log"
  monkeypatch.setenv("GCLOUD_LOG", str(log))
  return bin_dir, log


def test_tpu_vm_submit_runs_the_dry_run_commands(workdir, fake_gcloud):
  bin_dir, log = fake_gcloud
  args = TPU_VM + ["--tpu_type=v4-8", "--"] + PATHS + ["--strategy=tpu", "--tpu=local"]
  plan = dry_run(args, workdir)
  result = run_cli(args, workdir, path_prefix=bin_dir)
  assert result.returncode == 0, result.stderr
  ran = [["gcloud"] + json.loads(line) for line in log.read_text().splitlines()]
  assert ran == plan["commands"]
  assert "gcloud compute tpus tpu-vm delete bert-tpu" in result.stdout
  with tarfile.open(workdir / "build" / "launch" / "bert-tpu-src.tar.gz") as tar:
    assert sorted(tar.getnames()) == [
        "configs/direct.args", "configs/tiny.py", "configs/tweets.args", "setup.py"]


def test_tpu_vm_submit_stops_at_the_first_failing_command(workdir, fake_gcloud, monkeypatch):
  bin_dir, log = fake_gcloud
  monkeypatch.setenv("GCLOUD_FAIL", "create")
  result = run_cli(TPU_VM + ["--tpu_type=v4-8", "--"] + PATHS + ["--strategy=tpu", "--tpu=local"],
                   workdir, path_prefix=bin_dir)
  assert result.returncode == 1
  assert result.stderr.startswith(
      "error: command failed with exit code 1: gcloud compute tpus tpu-vm create bert-tpu ")
  assert len(log.read_text().splitlines()) == 1


def test_vertex_submit_sends_the_dry_run_request_with_the_client_library(monkeypatch):
  calls = {}

  class FakeJobServiceClient:
    def __init__(self, client_options):
      calls["client_options"] = client_options

    def create_custom_job(self, parent, custom_job):
      calls["create"] = (parent, custom_job)
      return types.SimpleNamespace(name=f"{parent}/customJobs/123")

  fake = types.ModuleType("google.cloud.aiplatform_v1")
  fake.JobServiceClient = FakeJobServiceClient
  fake.CustomJob = lambda body: ("CustomJob", body)
  cloud = types.ModuleType("google.cloud")
  cloud.aiplatform_v1 = fake
  monkeypatch.setitem(sys.modules, "google.cloud", cloud)
  monkeypatch.setitem(sys.modules, "google.cloud.aiplatform_v1", fake)

  request = vertex.build_request("proj", "europe-west4", "j", "gs://b", IMAGE, "g2-standard-4",
                                 "NVIDIA_L4", 1, 1, ["--strategy=mirrored"])
  assert vertex.submit(request, "europe-west4") == (
      "projects/proj/locations/europe-west4/customJobs/123")
  assert calls["client_options"] == {"api_endpoint": "europe-west4-aiplatform.googleapis.com"}
  assert calls["create"] == ("projects/proj/locations/europe-west4",
                             ("CustomJob", request["custom_job"]))


def _aiplatform_installed():
  try:
    return importlib.util.find_spec("google.cloud.aiplatform_v1") is not None
  except ModuleNotFoundError:  # No google.cloud namespace at all.
    return False


# CI installs .[dev,demo], not the [cloud] extra (google-cloud-aiplatform and its cloud client
# dependencies), so CI skips this one test and says so (pytest.ini's -rs; README "Tests").
@pytest.mark.skipif(not _aiplatform_installed(),
                    reason="needs google-cloud-aiplatform: pip install '.[cloud]' (CI does not "
                           "install the [cloud] extra)")
def test_vertex_request_is_a_valid_custom_job_proto():
  from google.cloud import aiplatform_v1  # pylint: disable=import-outside-toplevel
  request = vertex.build_request("p", "r", "j", "gs://b", IMAGE, "a2-highgpu-2g",
                                 "NVIDIA_TESLA_A100", 2, 3, ["--strategy=multi_worker_mirrored"])
  job = aiplatform_v1.CustomJob(request["custom_job"])
  assert [p.replica_count for p in job.job_spec.worker_pool_specs] == [1, 2]
  assert job.job_spec.worker_pool_specs[1].machine_spec.accelerator_type.name == "NVIDIA_TESLA_A100"


def test_dataflow_submit_runs_the_command_with_this_interpreter(workdir, monkeypatch):
  ran = []
  monkeypatch.setattr(dataflow, "beam_gcp_installed", lambda: True)
  monkeypatch.setattr(dataflow.subprocess, "run", lambda cmd, check: ran.append((cmd, check)))
  job = dataflow.build_command("p", "r", "j", "gs://b", ["--input=gs://b/x"])
  dataflow.submit(job["command"])
  assert ran == [([sys.executable] + job["command"][1:], True)]


# --- the image and the TPU VM setup agree with the pinned set -----------------------------------

def _pinned(package):
  with open(os.path.join(REPO, "constraints.txt")) as f:
    return re.search(rf"^{re.escape(package)}==(\S+)$", f.read(), re.M).group(1)


def test_docker_image_and_tpu_setup_use_the_pinned_tensorflow():
  with open(os.path.join(REPO, "docker", "Dockerfile")) as f:
    dockerfile = f.read()
  with open(os.path.join(REPO, "docker", "tpu_vm_setup.sh")) as f:
    setup = f.read()
  version = _pinned("tensorflow")
  assert f'"tensorflow[and-cuda]=={version}"' in dockerfile
  assert "-c constraints.txt" in dockerfile
  assert 'ENTRYPOINT ["python", "-m", "trainer.task"]' in dockerfile
  assert vertex.TRAINER_COMMAND == ["python", "-m", "trainer.task"]
  assert f"TF_VERSION={version}\n" in setup
  assert '"tensorflow-tpu==$TF_VERSION"' in setup
  assert '"libtpu==$LIBTPU_VERSION"' in setup  # unpinned, the newest libtpu breaks TF's import
  assert "-c constraints.txt ." in setup
