"""A BERT forward pass in NumPy on Hugging Face tensor names: the converter's independent reference.

It shares no code with TensorFlow or trainer/convert.py: it follows the Hugging Face BertModel
(post-LayerNorm, eps 1e-12) directly on the original [out, in] Linear weights, in float64.
"""
import math

import numpy as np
from scipy import special

LAYER_NORM_EPS = 1e-12


def gelu_exact(x):
  return 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


# Hugging Face's names (config.json's hidden_act).
ACTIVATIONS = {
    "gelu": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


def _layer_norm(x, weight, bias):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


def forward(weights, hf_config, input_ids, attention_mask, token_type_ids):
  """Runs BertModel.

  Args:
    weights: {HF tensor name: array}, with or without a 'bert.' prefix (LayerNorm.weight/bias).
    hf_config: the HF config.json dict.
    input_ids, attention_mask, token_type_ids: int [batch, seq]; attention_mask 1 = real token.
  Returns:
    (sequence_output float64 [batch, seq, hidden], pooled_output float64 [batch, hidden]).
  """
  w = {k[len("bert."):] if k.startswith("bert.") else k: np.asarray(v, np.float64)
       for k, v in weights.items()}
  heads = hf_config["num_attention_heads"]
  act = ACTIVATIONS[hf_config.get("hidden_act", "gelu")]
  linear = lambda x, name: x @ w[name + ".weight"].T + w[name + ".bias"]
  norm = lambda x, name: _layer_norm(x, w[name + ".weight"], w[name + ".bias"])

  input_ids = np.asarray(input_ids)
  batch, seq = input_ids.shape
  x = (w["embeddings.word_embeddings.weight"][input_ids]
       + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
       + w["embeddings.token_type_embeddings.weight"][np.asarray(token_type_ids)])
  x = norm(x, "embeddings.LayerNorm")
  hidden = x.shape[-1]
  head_dim = hidden // heads
  # Padded keys get no attention weight at all (HF adds a large negative number: same result).
  key_bias = np.where(np.asarray(attention_mask)[:, None, None, :] > 0, 0.0, -np.inf)

  split = lambda t: t.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)
  for i in range(hf_config["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    q = split(linear(x, f"{p}.attention.self.query"))  # [batch, heads, seq, head_dim]
    k = split(linear(x, f"{p}.attention.self.key"))
    v = split(linear(x, f"{p}.attention.self.value"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + key_bias
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    x = norm(linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
    inner = act(linear(x, f"{p}.intermediate.dense"))
    x = norm(linear(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
  pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
  return x, pooled
