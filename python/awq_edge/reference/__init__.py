"""Readable float32 references that the quantizer and the fast kernels are checked against."""

from .decoder import (apply_rope, decoder_forward, decoder_layer, layer_weights, mlp, rms_norm, rope_cos_sin,
                      rope_inv_freq, self_attention)

__all__ = ["apply_rope", "decoder_forward", "decoder_layer", "layer_weights", "mlp", "rms_norm", "rope_cos_sin",
           "rope_inv_freq", "self_attention"]
