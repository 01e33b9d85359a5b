"""README.md and docs/*.md: relative links resolve; `python -m` commands use only known flags.

The flags are checked against the commands' own parsers, in this process (no subprocess):
- an argparse entry point exposes `make_parser()` (launch's `build_parser()`, with sub-commands);
- an absl entry point defines its flags on `absl.flags.FLAGS` when imported: the flags of the
  module and of the repository modules it imports at module level (what `python -m` knows);
- `--config.a.b=...` overrides are checked against the fields of the config given with
  `--config=` (trainer.config's defaults when it is a placeholder);
- the Beam jobs also take Beam's pipeline options;
- `launch.submit` / `launch.sweep` pass what follows `--` to the job they launch.
Only flag names are checked: placeholders (`<...>`), shell variables and `$(...)` are fine values.
"""
import argparse
import ast
import collections
import glob
import importlib
import importlib.util
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
OUR_PACKAGES = ("benchmarks", "bertcore", "launch", "preprocess", "scoring", "serving", "trainer")
# The jobs built on Beam's `known_args, pipeline_args = parse_known_args(argv)` idiom.
BEAM_JOBS = ("preprocess.run", "scoring.run")
# What the launchers run with the flags after `--` (launch.dataflow.JOB_MODULES: --job=...).
LAUNCHED = {("launch.submit", "vertex"): "trainer.task",
            ("launch.submit", "tpu_vm"): "trainer.task",
            ("launch.sweep", "optuna"): "trainer.task",
            ("launch.sweep", "wandb"): "trainer.task"}

Command = collections.namedtuple("Command", "doc text module args")


def _rel(path):
  return os.path.relpath(path, REPO)


# ---------------------------------------------------------------- Markdown

_FENCE = re.compile(r"^\s*(```|~~~)")


def split_markdown(text):
  """text -> (prose with code blocks blanked, [fenced code block texts])."""
  prose, blocks, block = [], [], None
  for line in text.splitlines():
    if _FENCE.match(line):
      if block is None:
        block = []
      else:
        blocks.append("\n".join(block))
        block = None
      prose.append("")
    elif block is not None:
      block.append(line)
      prose.append("")
    else:
      prose.append(line)
  return "\n".join(prose), blocks


_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def links(text):
  """The link targets of Markdown text, outside code."""
  prose = _INLINE_CODE.sub("", split_markdown(text)[0])
  return _LINK.findall(prose) + _REF_LINK.findall(prose)


def anchors(text):
  """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats -1, -2..."""
  seen, result = collections.Counter(), set()
  for line in split_markdown(text)[0].splitlines():
    m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not m:
      continue
    slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
    result.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
    seen[slug] += 1
  return result


# ---------------------------------------------------------------- shell commands

def shell_commands(text):
  """Shell text -> token lists, one per simple command (`&&`, `;`, `|` and `$(...)` split them)."""
  text = text.replace("\\\n", " ")
  pieces = [text]
  while True:  # innermost $(...) first: each is a command of its own, and a value outside
    m = re.search(r"\$\(([^()]*)\)", pieces[0])
    if not m:
      break
    pieces.append(m.group(1))
    pieces[0] = pieces[0][:m.start()] + "$SUBST" + pieces[0][m.end():]
  commands = []
  for piece in pieces:
    for line in piece.splitlines():
      line = re.sub(r"<[^<>\n]*>", "PLACEHOLDER", line.strip().removeprefix("$ "))
      lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
      lexer.whitespace_split = True
      try:
        tokens = list(lexer)
      except ValueError:  # an unbalanced quote in prose-like code: words are enough here
        tokens = line.split("#")[0].split()
      command = []
      for token in tokens + [";"]:
        if token and set(token) <= set(";&|"):
          if command:
            commands.append(command)
          command = []
        else:
          command.append(token)
  return commands


def python_m(tokens):
  """(module, args) of a `python -m module args...` command of our packages, else None."""
  for i, token in enumerate(tokens[:-2]):
    if re.fullmatch(r"python(3(\.\d+)?)?", os.path.basename(token)) and tokens[i + 1] == "-m":
      module = tokens[i + 2]
      if module.split(".")[0] in OUR_PACKAGES:
        return module, tokens[i + 3:]
      return None
  return None


def documented_commands():
  """Every `python -m <our module>` command of the docs: in code blocks and in inline code."""
  commands = []
  for doc in DOCS:
    with open(doc, encoding="utf-8") as f:
      prose, blocks = split_markdown(f.read())
    spans = [m.group(2).replace("\n", " ") for m in _INLINE_CODE.finditer(prose)]
    texts = [(block, False) for block in blocks] + [(s, True) for s in spans if "python -m" in s]
    for text, inline in texts:
      for tokens in shell_commands(text):
        found = python_m(tokens)
        if found:
          # Prose writes optional flags as `[--flag=...]`.
          args = [a.strip("[]") for a in found[1]] if inline else found[1]
          commands.append(Command(_rel(doc), shlex.join(tokens), found[0], args))
  return commands


# ---------------------------------------------------------------- parsers

def _find_spec(name):
  try:
    return importlib.util.find_spec(name)
  except ModuleNotFoundError:  # a.b.c where a.b is a module, not a package
    return None


def _module_file(name):
  spec = _find_spec(name)
  return spec.origin if spec and spec.origin and spec.origin.endswith(".py") else None


def _top_level_imports(name):
  """The repository modules `name` imports at module level (what runs before flags are parsed)."""
  path = _module_file(name)
  if path is None:
    return set()
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read())
  found = set()
  statements = list(tree.body)
  while statements:
    node = statements.pop()
    if isinstance(node, (ast.If, ast.Try)):
      statements += node.body + node.orelse + getattr(node, "finalbody", []) + [
          s for h in getattr(node, "handlers", []) for s in h.body]
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      found.add(node.module)
      found.update(f"{node.module}.{a.name}" for a in node.names)
  # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
  parents = {".".join(n.split(".")[:i]) for n in found for i in range(1, n.count(".") + 1)}
  return {n for n in found | parents
          if n.split(".")[0] in OUR_PACKAGES and _find_spec(n) is not None}


def _import_closure(name):
  seen, todo = set(), [name]
  while todo:
    current = todo.pop()
    if current not in seen:
      seen.add(current)
      todo += _top_level_imports(current)
  return seen


class Flags:
  """What one command line of `module` may contain."""

  def __init__(self, options, subcommands=None, absl=False, booleans=(), config=False):
    self.options = set(options)            # e.g. {"--input", "-h"}
    self.subcommands = subcommands or {}   # name -> Flags of that sub-command
    self.absl = absl                       # absl also reads -name and --noname (booleans)
    self.booleans = set(booleans)
    self.config = config                   # accepts --config.a.b=... overrides

  def knows(self, flag):
    if flag in self.options:
      return True
    name = flag.lstrip("-")
    return self.absl and (f"--{name}" in self.options
                          or (name.startswith("no") and name[2:] in self.booleans))


def _argparse_flags(parser):
  options, subcommands = set(), {}
  for action in parser._actions:  # argparse keeps no public list of its options
    options.update(action.option_strings)
    if isinstance(action, argparse._SubParsersAction):
      for name, sub in action.choices.items():
        subcommands[name] = _argparse_flags(sub)
  return Flags(options, subcommands)


def _absl_flags(name):
  """The flags `python -m name` knows; `name` is imported (its flags defined) already."""
  from absl import flags
  closure = _import_closure(name)
  options, booleans = set(), set()
  for owner, owned in flags.FLAGS.flags_by_module_dict().items():
    # Flags of other entry points in this process are not known to `python -m name`.
    if owner.split(".")[0] in OUR_PACKAGES and owner not in closure:
      continue
    for flag in owned:
      options.add(f"--{flag.name}")
      if flag.boolean:
        booleans.add(flag.name)
  options.update(f"--{n}" for n in ("flagfile", "undefok", "help", "helpshort", "helpfull"))
  return Flags(options, absl=True, booleans=booleans, config="--config" in options)


_PARSERS = {}


def parser_of(name):
  """Flags of `python -m name`, or None when it has no parser this test can read."""
  if name not in _PARSERS:
    module_name = f"{name}.__main__" if _module_file(f"{name}.__main__") else name
    module = importlib.import_module(module_name)
    make = getattr(module, "make_parser", None) or getattr(module, "build_parser", None)
    if make is not None:
      _PARSERS[name] = _argparse_flags(make())
    else:
      # absl: flags defined by the module, or by one it imports (e.g. a thin alias of another).
      from absl import flags
      closure = _import_closure(module_name)
      owners = flags.FLAGS.flags_by_module_dict()
      _PARSERS[name] = _absl_flags(module_name) if closure & set(owners) else None
  return _PARSERS[name]


def beam_options():
  from apache_beam.options import pipeline_options
  return {f"--{n}" for n in pipeline_options.PipelineOptions([]).get_all_options()}


def config_fields(config_arg):
  """The trainer config of `--config=<file>` (the defaults for a placeholder or none)."""
  from trainer import config as config_lib
  path = os.path.join(REPO, config_arg) if config_arg else ""
  if not os.path.isfile(path):
    return config_lib.default_config()
  spec = importlib.util.spec_from_file_location("_doc_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def has_field(config, dotted):
  node = config
  for part in dotted.split("."):
    try:
      if part not in node:
        return False
      node = node[part]
    except TypeError:  # a leaf value has no fields
      return False
  return True


def _flag_tokens(args):
  """The flag names among args: `--a=1` -> `--a`; values, @files and placeholders skipped."""
  return [a.partition("=")[0] for a in args
          if a.startswith("-") and a != "-" and not re.fullmatch(r"-[\d.e+-]+", a)]


def problems(command, module=None, args=None):
  """Lines naming each flag of `command` its module does not know."""
  module = module or command.module
  args = command.args if args is None else args
  where = f"{command.doc}: `{command.text}`"
  own, job_args = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args \
      else (args, None)
  flags = _flag_tokens(own)
  if not flags and job_args is None:
    return []
  known = parser_of(module)
  if known is None:
    return [f"{where}: {module} has no make_parser() (or absl flags), so {flags[0]} cannot be "
            f"checked"]
  positional = [a for a in own if not a.startswith("-") and not a.startswith("@")]
  sub = None
  if known.subcommands:
    sub = positional[0] if positional and positional[0] in known.subcommands else None
    scopes = [known.subcommands[sub]] if sub else list(known.subcommands.values())
  else:
    scopes = []
  extra = beam_options() if module in BEAM_JOBS else set()
  config_arg = next((a.partition("=")[2] for a in own if a.startswith("--config=")), "")
  found = []
  for flag in flags:
    if flag.startswith("--config.") and known.config:
      if not has_field(config_fields(config_arg), flag[len("--config."):]):
        found.append(f"{where}: {flag} is not a field of the config "
                     f"({config_arg or 'trainer.config defaults'})")
    elif not (known.knows(flag) or flag in extra or any(s.knows(flag) for s in scopes)):
      found.append(f"{where}: {module} has no flag {flag}")
  if job_args is not None and sub is not None:
    job = LAUNCHED.get((module, sub))
    if module == "launch.submit" and sub == "dataflow":
      from launch import dataflow
      choice = next((a.partition("=")[2] for a in own if a.startswith("--job=")), "preprocess")
      job = dataflow.JOB_MODULES.get(choice)
    if job is None:
      found.append(f"{where}: no job known for `{module} {sub} ... --`")
    else:
      found += problems(command, job, job_args)
  return found


# ---------------------------------------------------------------- tests

def test_docs_exist():
  names = {_rel(d) for d in DOCS}
  assert "README.md" in names and os.path.join("docs", "README.md") in names


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_resolve(doc):
  with open(doc, encoding="utf-8") as f:
    text = f.read()
  broken = []
  for target in links(text):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
      continue
    path, _, anchor = target.partition("#")
    full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
    if not os.path.exists(full):
      broken.append(f"{target}: no such file")
    elif anchor and full.endswith(".md"):
      with open(full, encoding="utf-8") as f:
        if anchor not in anchors(f.read()):
          broken.append(f"{target}: no heading #{anchor} in {_rel(full)}")
  assert not broken, f"{_rel(doc)}: broken links:\n" + "\n".join(broken)


def documented_overrides():
  """`--config.a.b=...` overrides quoted in prose without a command: (doc, flag)."""
  found = []
  for doc in DOCS:
    with open(doc, encoding="utf-8") as f:
      prose = split_markdown(f.read())[0]
    for m in _INLINE_CODE.finditer(prose):
      if "python -m" not in m.group(2):
        found += [(_rel(doc), flag) for flag in re.findall(r"--config\.([\w.]+)", m.group(2))]
  return found


def test_config_overrides_in_prose_are_config_fields():
  overrides = documented_overrides()
  defaults = config_fields("")
  assert not [f"{doc}: --config.{flag} is not a field of trainer.config"
              for doc, flag in overrides if not has_field(defaults, flag)]
  assert ("docs/training.md", "precision") in overrides


def test_documented_commands_use_known_flags():
  commands = documented_commands()
  found = [line for command in commands for line in problems(command)]
  assert not found, "\n".join(found)
  # The front page's four pipeline commands are among what was checked.
  checked = {(c.doc, c.module) for c in commands}
  for module in ("preprocess.run", "trainer.task", "serving.predict", "scoring.run"):
    assert ("README.md", module) in checked


# The checker itself, on commands that must fail or pass.

def _check(text, doc="x.md"):
  return [line for tokens in shell_commands(text) if python_m(tokens)
          for line in problems(Command(doc, shlex.join(tokens), *python_m(tokens)))]


def test_shell_commands_split_continuations_substitutions_and_comments():
  text = ('python -m preprocess.run @a.args \\\n  --input="$(python -m preprocess.datasets tweets)"'
          ' --output_dir=<dir>  # a comment\npython -m x && python -m y')
  assert shell_commands(text) == [
      ["python", "-m", "preprocess.run", "@a.args", "--input=$SUBST", "--output_dir=PLACEHOLDER"],
      ["python", "-m", "x"], ["python", "-m", "y"],
      ["python", "-m", "preprocess.datasets", "tweets"]]


def test_checker_finds_unknown_flags_and_config_fields():
  assert not _check("python -m scoring.run --model=m --input=i --output_dir=o "
                    "--direct_num_workers=2 --runner=DirectRunner")
  assert _check("python -m scoring.run --modle=m") == [
      "x.md: `python -m scoring.run --modle=m`: scoring.run has no flag --modle"]
  assert not _check("python -m trainer.task --config=configs/tweets_minilm.py "
                    "--config.train.learning_rate=1e-4 --nomodel_dir_per_trial")
  bad = _check("python -m trainer.task --config=configs/tweets_minilm.py "
               "--config.train.learnin_rate=3 --bundled_minilm")
  assert len(bad) == 2 and "--config.train.learnin_rate is not a field" in bad[0]
  assert bad[1].endswith("trainer.task has no flag --bundled_minilm")  # trainer.convert's flag


def test_checker_follows_launchers_to_their_jobs():
  assert not _check("python -m launch.submit dataflow --job=score --project=p --region=r -- "
                    "--model=gs://m --input=gs://i --output_dir=gs://o")
  bad = _check("python -m launch.submit dataflow --project=p --region=r -- --model=gs://m")
  assert bad and bad[0].endswith("preprocess.run has no flag --model")
  bad = _check("python -m launch.sweep optuna --space=s -- --config.train.nope=1")
  assert bad and "--config.train.nope is not a field" in bad[0]


def test_links_and_anchors_are_read_as_github_does():
  text = "# Long texts\n## Why not X?\nsee [a](b.md#c) and `[no](link)`\n```\n[x](y)\n```\n"
  assert links(text) == ["b.md#c"]
  assert anchors(text) == {"long-texts", "why-not-x"}


def test_the_readme_is_a_front_page():
  """At most 8 KB, the two fresh-machine commands first: the detail lives in docs/."""
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  assert len(text.encode("utf-8")) <= 8 * 1024
  blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
  assert [b.strip() for b in blocks[:2]] == [
      "bash scripts/setup.sh && bash scripts/quickstart.sh",
      "bash scripts/setup.sh && bash scripts/test.sh"]
