"""Fine-tunes BERT classifiers on the preprocessing job's TFRecords with tf.distribute."""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
