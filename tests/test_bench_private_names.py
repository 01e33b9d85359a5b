"""No module of benchmarks/ imports or reaches a private name (`_x`) of the package's own code.

A benchmark that calls, say, `trainer.steps._sum_repeated_rows` measures a copy that can drift from
what it claims to measure; it must time the public function instead (or that function becomes
public). Checked on the source with ast, so nothing is imported.
"""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("trainer", "preprocess", "scoring", "serving", "bertcore")


def private(name):
  return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def of_ours(module):
  return module is not None and module.split(".")[0] in PACKAGES


def private_uses(source):
  """[(line, 'what')] of the private names of PACKAGES that source imports or reaches."""
  tree = ast.parse(source)
  found, bound = [], set()     # bound: local names that stand for one of our modules
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if of_ours(alias.name):
          bound.add(alias.asname or alias.name.split(".")[0])
          found += [(node.lineno, alias.name) for part in alias.name.split(".") if private(part)]
    elif isinstance(node, ast.ImportFrom) and of_ours(node.module):
      found += [(node.lineno, node.module) for part in node.module.split(".") if private(part)]
      for alias in node.names:
        if private(alias.name):
          found.append((node.lineno, f"{node.module}.{alias.name}"))
        else:
          bound.add(alias.asname or alias.name)
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and private(node.attr):
      root = node.value
      while isinstance(root, ast.Attribute):
        root = root.value
      if isinstance(root, ast.Name) and root.id in bound:
        found.append((node.lineno, f"{ast.unparse(node)}"))
  return found


def test_the_check_finds_each_way_of_reaching_a_private_name():
  source = ("from trainer.steps import _sum_repeated_rows\n"
            "import trainer.steps as steps\n"
            "from trainer import train\n"
            "import numpy as np\n"
            "steps._sum_repeated_rows(1)\n"
            "train.loop._inner()\n"
            "np._internal\n"
            "steps.make_train_step()\n")
  assert private_uses(source) == [(1, "trainer.steps._sum_repeated_rows"),
                                  (5, "steps._sum_repeated_rows"), (6, "train.loop._inner")]


def test_no_benchmark_reaches_a_private_name_of_the_package():
  bench = os.path.join(REPO, "benchmarks")
  modules = sorted(n for n in os.listdir(bench) if n.endswith(".py"))
  assert "bench_vs_pytorch.py" in modules
  found = {}
  for name in modules:
    with open(os.path.join(bench, name), encoding="utf-8") as f:
      uses = private_uses(f.read())
    if uses:
      found[name] = uses
  assert found == {}
