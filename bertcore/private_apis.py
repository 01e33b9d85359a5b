"""The only places this package uses non-public Beam or TensorFlow APIs, and why.

Each function wraps one private API behind a small public-looking call, so that an upgrade
that moves it breaks here, in one place, with the reason at hand. Imports are inside the
functions: importing this module costs nothing (launch stays TensorFlow-free).
"""
import collections


def local_beam_runner(options):
  """Beam's in-process FnApiRunner, configured with `options` like DirectRunner would.

  Why: Beam 2.77's DirectRunner first tries the Prism runner, which downloads a binary (no
  network here, and a surprise on any machine), and then falls back to this FnApiRunner for a
  batch pipeline like ours. Building it directly skips the download attempt.
  direct_num_workers / direct_running_mode are read from the options by the FnApiRunner.
  Public replacement: `beam.Pipeline(runner="DirectRunner")` once DirectRunner lets a pipeline
  opt out of Prism (or `PrismRunner` with a pre-installed binary).
  """
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  from apache_beam.runners.portability.portable_runner import JobServiceHandle
  # The FnApiRunner hands the pipeline options to its workers through the provision info,
  # encoded as DirectRunner encodes them.
  encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
  provision_info = fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
  return fn_runner.FnApiRunner(provision_info=provision_info)


def tf_record_iterator(path):
  """Yields the serialized records of an uncompressed TFRecord file, eagerly, without tf.data.

  Why: the preprocessing job re-reads its own temporary shards inside Beam workers; this plain
  Python iterator is the fastest reader (no tf.data graph built per file). The public
  `tf.compat.v1.io.tf_record_iterator` is the same function but logs a deprecation warning per
  call; `tensorflow.python.util.deprecation.silence` mutes it.
  Public replacement: `tf.data.TFRecordDataset(path)` iterated eagerly (slower per small file).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.util import deprecation  # pylint: disable=g-direct-tensorflow-import
  with deprecation.silence():
    return tf.compat.v1.io.tf_record_iterator(path)


def abort_collectives(code, message):
  """Aborts every pending and future collective op of this process with (code, message).

  Why: a worker blocked in a collective whose peer stopped answering waits forever; this makes
  the blocked call raise instead (MultiWorkerMirroredStrategy's own peer health check does the
  same). The public alternative, CommunicationOptions(timeout_seconds=...), starts one
  sleeping thread per collective op for the whole timeout (its docstring: "only for
  debugging"), tens of thousands of threads at a training step's rate of collectives.
  Public replacement: none in TF 2.20.
  """
  from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import
  context.context().abort_collective_ops(code, message)


def onednn_enabled():
  """True if this process's TensorFlow runs its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS).

  Why: TensorFlow has no public call that says whether oneDNN is on; the decision is made once,
  in C++, from the CPU's features and the environment variable (see bertcore.env.onednn_wanted).
  Public replacement: none in TF 2.20.
  """
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-direct-tensorflow-import
  return bool(_pywrap_util_port.IsMklEnabled())


def attention_layers(encoder):
  """The MultiHeadAttention layer of each block of a built BertEncoderV2.

  Why: trainer.encoders.MatmulAttention computes attention as batched matmuls (faster on CPUs
  than the einsums), which needs the layer objects; Model Garden's TransformerEncoderBlock keeps
  them in a private attribute, built in its build() with no option for the class.
  Public replacement: none in tf-models-official 2.20.
  """
  return [block._attention_layer for block in encoder.transformer_layers]  # pylint: disable=protected-access


FeedForward = collections.namedtuple("FeedForward", "intermediate activation output")


def feedforward_layers(encoder):
  """FeedForward(intermediate dense, activation layer, output dense) of each block of a built
  BertEncoderV2.

  Why: trainer.encoders.use_fused_dense computes the intermediate dense layer and its GELU as
  one fused oneDNN kernel, which needs the activation applied inside the dense layer (on its
  2-D product) instead of in the block's separate activation layer; Model Garden's
  TransformerEncoderBlock keeps these layers in private attributes, with no option for that.
  Public replacement: none in tf-models-official 2.20.
  """
  return [FeedForward(block._intermediate_dense, block._intermediate_activation_layer,  # pylint: disable=protected-access
                      block._output_dense)  # pylint: disable=protected-access
          for block in encoder.transformer_layers]


def attention_dense_layers(layer):
  """The query, key, value and output EinsumDense layers of a tf_keras MultiHeadAttention.

  Why: as feedforward_layers, for the attention's four projections (private attributes).
  Public replacement: none in tf-keras 2.20.
  """
  return [layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense]  # pylint: disable=protected-access


AttentionInternals = collections.namedtuple(
    "AttentionInternals", "key_dim masked_softmax dropout equations")


def attention_internals(layer):
  """AttentionInternals of a tf_keras MultiHeadAttention: key_dim, masked_softmax, dropout (the
  attention dropout layer) and equations ((scores_equation, combine_equation)).

  Why: MultiHeadAttention documents `_compute_attention` as the method to override for another
  attention computation, but what an override needs (the key size, the masked softmax, the
  attention dropout, and the equations to check it replaces) are private attributes.
  Public replacement: none in tf-keras 2.20.
  """
  return AttentionInternals(
      layer._key_dim, layer._masked_softmax, layer._dropout_layer,  # pylint: disable=protected-access
      (layer._dot_product_equation, layer._combine_equation))  # pylint: disable=protected-access
