"""File helpers every job uses, all through tf.io.gfile (local paths and gs:// alike).

  write_atomic(path, text|bytes)   write to a temporary name, then rename over `path`
  write_json(path, obj)            write_atomic of indented, key-sorted JSON
  read_json(path)                  the parsed JSON of a file
  write_npz(path, arrays)          write_atomic of a dict of numpy arrays as an .npz
  read_npz(path)                   the dict of numpy arrays of an .npz

(Named `files`, not `io`, so that modules using the standard library's io can import it.)
"""
import io
import json
import uuid

import numpy as np
import tensorflow as tf


def write_atomic(path, content):
  """Writes `content` (str or bytes) to `path` so that a reader never sees half a file.

  The data goes to `<path>.tmp-<random>` first and is renamed over `path` when complete; a
  crash leaves at most the temporary file. (On object stores a rename is a copy + delete of
  one object, which still never exposes a partial `path`.)
  """
  tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
  try:
    with tf.io.gfile.GFile(tmp, "wb" if isinstance(content, bytes) else "w") as f:
      f.write(content)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise


def write_json(path, obj):
  """Writes `obj` as indented, key-sorted JSON (NaN refused) atomically; returns `path`."""
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False)
               + "\n")
  return path


def read_json(path):
  """The parsed JSON of `path` (json.JSONDecodeError / tf.errors.OpError as raised)."""
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_npz(path, arrays):
  """Writes a dict of numpy arrays as an uncompressed .npz, atomically; returns `path`."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_atomic(path, buffer.getvalue())
  return path


def read_npz(path):
  """The dict of numpy arrays that write_npz wrote to `path`."""
  with tf.io.gfile.GFile(path, "rb") as f:
    with np.load(io.BytesIO(f.read())) as data:
      return {k: data[k] for k in data.files}
