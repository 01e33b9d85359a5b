"""The scoring job's TFRecord input: the preprocessing job's shards, read record by record.

Why our own reader and not Beam's ReadFromTFRecord: Beam's reader raises on the first record
whose checksum fails ("Mismatch of data mask"), which would stop the whole job, and tf.data's
reader cannot step over a bad record either. Here:
  - a record whose data checksum fails (its length header is intact, so the next record can
    still be found) is one row with the error corrupt_record, and reading goes on;
  - a damaged length header or a file cut short ends that file with one row with the error
    truncated_file (nothing after it can be framed); the data manifest's per-shard row count
    says how many records were lost.
The TFRecord framing: uint64 length, uint32 masked CRC-32C of the length, data, uint32 masked
CRC-32C of the data, all little-endian.
"""
import gzip
import posixpath
import struct
import zlib

import crcmod.predefined
from google.protobuf import message as protobuf_message
import tensorflow as tf

from bertcore import schema

HEADER = struct.Struct("<QI")
FOOTER = struct.Struct("<I")
_crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")


def masked_crc32c(data):
  """TFRecord's checksum of `data` (bytes): CRC-32C, rotated and offset (the format's mask)."""
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path):
  raw = tf.io.gfile.GFile(path, "rb")
  # Preprocessing writes --compression=gzip shards as *.tfrecord.gz.
  return gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw


def iter_records(path):
  """Yields (serialized record or None, problem or None) for each record of a TFRecord file.

  problem: None, corrupt_record (data checksum failed; the record is skipped, reading goes
  on) or truncated_file (the last item: the rest of the file cannot be framed).
  """
  with _open(path) as f:
    while True:
      try:
        header = f.read(HEADER.size)
        if not header:
          return
        length, length_crc = HEADER.unpack(header) if len(header) == HEADER.size else (0, None)
        if length_crc is None or masked_crc32c(header[:8]) != length_crc:
          yield None, "truncated_file"
          return
        data = f.read(length)
        footer = f.read(FOOTER.size)
      except (EOFError, OSError, zlib.error):  # A cut or damaged gzip stream.
        yield None, "truncated_file"
        return
      if len(data) != length or len(footer) != FOOTER.size:
        yield None, "truncated_file"
        return
      if masked_crc32c(data) != FOOTER.unpack(footer)[0]:
        yield None, "corrupt_record"
      else:
        yield data, None


def describe_record(serialized, max_seq_length):
  """A record -> (example_id, token count, problem): problem None, malformed_example or too_long.

  Checked here, per record, because the export's serve_examples refuses a whole batch for one
  bad record (unparsable, or longer than the model's max_seq_length).
  """
  try:
    features = tf.train.Example.FromString(serialized).features.feature
  except protobuf_message.DecodeError:
    return "", 0, "malformed_example"
  if schema.EXAMPLE_ID not in features or schema.INPUT_IDS not in features:
    return "", 0, "malformed_example"
  example_id = b"".join(features[schema.EXAMPLE_ID].bytes_list.value[:1]).decode(
      "utf-8", "backslashreplace")
  length = len(features[schema.INPUT_IDS].int64_list.value)
  return example_id, length, ("too_long" if length > max_seq_length else None)


def resolve_inputs(patterns, split):
  """--input values -> (sorted shard files, {data_dir: Manifest}).

  A value is either a data directory written by preprocess.run (its `split` shards, as listed
  in its manifest) or a glob of shard files (<data_dir>/<split>/<shard>; their data_dir's
  manifest is read for the vocabulary check). ValueError (one line) if nothing usable is found.
  """
  files, manifests = [], {}
  for pattern in patterns:
    pattern = pattern.rstrip("/")
    if tf.io.gfile.exists(posixpath.join(pattern, schema.MANIFEST)):
      manifest = manifests[pattern] = schema.read_manifest(pattern)
      if split not in manifest.splits:
        raise ValueError(f"{pattern} has no split {split!r} (it has "
                         f"{', '.join(sorted(manifest.splits))}); pass --split")
      files += [posixpath.join(pattern, split, name)
                for name in sorted(manifest.splits[split].shards)]
      continue
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise ValueError(f"--input {pattern} is neither a data directory with {schema.MANIFEST} "
                       "nor a glob matching TFRecord files")
    for path in matched:
      data_dir = posixpath.dirname(posixpath.dirname(path))
      if data_dir not in manifests:
        if not tf.io.gfile.exists(posixpath.join(data_dir, schema.MANIFEST)):
          raise ValueError(f"{path} is not in a data directory written by preprocess.run (no "
                           f"{posixpath.join(data_dir, schema.MANIFEST)}): its vocabulary "
                           "cannot be checked")
        manifests[data_dir] = schema.read_manifest(data_dir)
    files += matched
  missing = [path for path in files if not tf.io.gfile.exists(path)]
  if missing:
    raise ValueError(f"shard {missing[0]} is missing ({len(missing)} of {len(files)}); "
                     "re-run preprocessing")
  return sorted(set(files)), manifests


def check_vocabulary(manifests, metadata, model_dir):
  """ValueError (one line) if records were tokenized with another vocabulary than the model's."""
  for data_dir, manifest in sorted(manifests.items()):
    if manifest.vocab_sha256 != metadata["vocab_sha256"]:
      raise ValueError(
          f"{data_dir} was tokenized with another vocabulary than the model {model_dir} "
          f"(vocab_sha256 {manifest.vocab_sha256[:12]}... vs {metadata['vocab_sha256'][:12]}...); "
          "preprocess the data with the model's vocabulary, or score the CSV instead")
