"""Command-line conventions shared by the entry points, absl (trainer.task, serving.predict,
trainer.convert) and argparse (preprocess.run, scoring.run) alike.

    if __name__ == "__main__":
      app.run(main, flags_parser=cli.parse_flags)

A bad command line ends with one `error: ...` line and exit code 1 instead of absl's
two-line "FATAL Flags parsing error"; `--help` is absl's. error_line() makes any exception
such a line. SHARED_FLAGS declares, once and with their defaults, the flags several commands
take (the CSV's columns and format, truncation, the W&B project); add_shared_flags puts them on an argparse
parser, define_shared_flags on absl's. TensorFlow-free, so the launcher uses it too.
"""
import argparse
import re
import sys
from typing import NamedTuple

from absl import flags
from absl import logging


class SharedFlag(NamedTuple):
  default: object
  help: str
  boolean: bool = False  # argparse: --name=true|false (parse_bool); absl: --name / --noname
  number: bool = False   # a float (argparse type=float; absl DEFINE_float)


# The flags of more than one command, each declared here only: preprocess.run describes the
# training CSV with them, serving.predict and scoring.run the CSV to score (which flags each
# takes: its add_shared_flags / define_shared_flags call).
SHARED_FLAGS = {
    "id_column": SharedFlag(
        "qid", "the id column; '' = none: preprocess.run ids a row by a SHA-1 of its text(s), "
               "predict and scoring number the rows (column `row`)"),
    "text_column": SharedFlag("question_text", "the text column"),
    "text_pair_column": SharedFlag(
        "", "a second text column: sentence-pair examples (a text-pair model)"),
    "encoding": SharedFlag("utf-8", "the CSV's encoding, e.g. latin-1; a UTF-8 BOM is skipped"),
    "delimiter": SharedFlag(",", "the field separator: one character, or tab / \\t for TSV"),
    "unescape_html": SharedFlag(
        None, "decode HTML character references (&#039; &quot; &amp;) in the text(s) before "
              "tokenizing; unset: false for preprocess.run (which records it in "
              "the manifest and the export), as the training data for predict and scoring",
        boolean=True),
    "truncation": SharedFlag(
        "head", "which word pieces a longer text keeps: head (its first), tail (its last) or "
                "head_tail (the first quarter of the budget and the last three quarters); "
                "pairs: see README 'Long texts'"),
    "min_confidence": SharedFlag(
        None, "a confidence floor p in (0, 1): a row whose top (calibrated) probability is below "
              "p gets an empty label and `low_confidence` in a `flag` column (its probabilities "
              "are still written); unset: no floor, no flag column", number=True),
    "wandb_project": SharedFlag(
        "", "log the job's statistics (preprocess.run: with its plots; scoring.run: counts and "
            "the label distribution) to this W&B project, if WANDB_MODE allows"),
}
CSV_FLAGS = ("id_column", "text_column", "text_pair_column", "encoding", "delimiter",
             "unescape_html")
# What serving.predict and scoring.run write besides the CSV's columns.
PREDICTION_FLAGS = ("min_confidence",)


def parse_bool(value):
  """An argparse type: true/1/yes or false/0/no."""
  if value.lower() in ("true", "1", "yes"):
    return True
  if value.lower() in ("false", "0", "no"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_shared_flags(parser, names):
  """Adds the SHARED_FLAGS `names` to an argparse parser (or argument group)."""
  for name in names:
    flag = SHARED_FLAGS[name]
    if flag.boolean:
      parser.add_argument(f"--{name}", default=flag.default, help=flag.help, type=parse_bool,
                          metavar="true|false")
    elif flag.number:
      parser.add_argument(f"--{name}", default=flag.default, help=flag.help, type=float)
    else:
      parser.add_argument(f"--{name}", default=flag.default, help=flag.help)


def define_shared_flags(names, flag_values=flags.FLAGS):
  """Defines the SHARED_FLAGS `names` as absl flags of the calling module (call it at import,
  in the entry module), so that its --help lists them."""
  caller = sys._getframe(1).f_globals["__name__"]  # pylint: disable=protected-access
  # absl files the main module's flags under the program's path.
  module_name = sys.argv[0] if caller == "__main__" else caller
  for name in names:
    flag = SHARED_FLAGS[name]
    define = (flags.DEFINE_boolean if flag.boolean else
              flags.DEFINE_float if flag.number else flags.DEFINE_string)
    define(name, flag.default, flag.help, flag_values=flag_values, module_name=module_name)


def parse_flags(argv):
  """Parses argv (program name first) into flags.FLAGS; app.run's `flags_parser`.

  Returns [program name]. Exits with one `error:` line for an unknown flag, a bad value, an
  override of a config field that does not exist, or a positional argument.
  """
  # Parsing starts from the defaults, so that calling this twice in one process (tests) does
  # not keep the first command line's values.
  flags.FLAGS.unparse_flags()
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}")
  except (AttributeError, KeyError) as e:
    # ml_collections' config_flags raises these (not a flags.Error) for an override of a
    # field the config does not have, e.g. --config.train.learnin_rate=3.
    line = unknown_field_line(argv, e)
    if line is None:  # Not about an override (e.g. a bug in the config file): keep the trace.
      raise
    sys.exit(f"error: {line}")
  if len(rest) > 1:
    sys.exit(f"error: unexpected arguments: {' '.join(rest[1:])}")
  if not flags.FLAGS["verbosity"].present:
    # absl's INFO lines (and TensorFlow's, through absl) are not for users: our own progress
    # lines say what happens. --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  return rest


def unknown_field_line(argv, exc):
  """The one line for a --config.<field> override of a field the config does not have.

  exc: ml_collections' AttributeError (wrapping a KeyError) whose text is the field's name in
  quotes, then its own `Did you mean "learning_rate" instead of "learnin_rate"?` if a field is
  close. Names the override from argv that mentions the field; None if none does.
  """
  while exc.args and isinstance(exc.args[0], BaseException):  # AttributeError(KeyError(...))
    exc = exc.args[0]
  text = str(exc.args[0]) if exc.args else str(exc)
  field, _, hint = text.partition("\n")
  field = field.strip("'\"")
  overrides = [arg.split("=", 1)[0] for arg in argv[1:]
               if arg.startswith("--config.") and field in arg.split("=", 1)[0].split(".")]
  if not overrides:
    return None
  return (f"{overrides[0]}: the config has no field {field!r}"
          + (f"; {hint.strip()}" if hint else ""))


def require_flags(*names):
  """Exits with one `error: --a, --b required` line unless every named flag has a value."""
  missing = [f"--{name}" for name in names
             if flags.FLAGS[name].value is None or flags.FLAGS[name].value == ""]
  if missing:
    sys.exit(f"error: {', '.join(missing)} required")


# Lines TensorFlow puts before the cause of a graph error.
_TF_PREAMBLE = ("Graph execution error:", "Detected at node")


def error_line(exc):
  """The line of an error's message that says what went wrong (the type name if it has none).

  TensorFlow's OpError keeps its own text in `.message` (str() adds the op's context). A graph
  error starts with a generic "Graph execution error:" and an indented "Detected at node ..."
  traceback; the cause is the first unindented line after them, without TF's
  `{{function_node ...}}` prefix and `[[{{node ...}}]] [Op:...]` suffix.
  """
  message = getattr(exc, "message", None)
  text = (message if isinstance(message, str) and message.strip() else str(exc)).strip()
  lines = [line for line in text.splitlines() if line.strip()]
  for line in lines:
    if line[0].isspace() or line.startswith(_TF_PREAMBLE):
      continue
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
    line = re.sub(r"\s*(\[\[\{\{node .*|\[Op:[^\]]*\].*)$", "", line).strip()
    if line:
      return line
  return lines[0].strip() if lines else type(exc).__name__

# --delimiter spellings that an @args file or a shell can carry (a literal tab is hard to type).
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def parse_delimiter(value):
  """A --delimiter flag -> the one field-separator character for Python's csv module.

  Accepts the character itself (`,`, `;`, a literal tab) or a name: `tab` / `\\t` (TSV), `comma`,
  `semicolon`, `pipe`. Raises ValueError with one line for anything else.
  """
  delimiter = _DELIMITER_NAMES.get(value.lower(), value) if value else value
  if len(delimiter) != 1 or delimiter in "\"\r\n" or delimiter.isalnum():
    raise ValueError(f"--delimiter must be one character (e.g. ',' or tab / '\\t' for TSV), "
                     f"got {value!r}")
  return delimiter
