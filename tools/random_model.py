"""Write an .awqe file of a given model shape with random weights, for speed benchmarks (speed does not
depend on the values): a LLaMA-2-7B-shaped q4 model without downloading one.

    python tools/random_model.py OUT.awqe [--shape llama2-7b|llama3-8b|tiny] [--scheme q4_g128] [--lm-head f16]
                                          [--embedding f16]

Schemes are the file's storage schemes (docs/FORMAT.md): f16, q8_row, q{3,4}_g{32,64,128}; the LM head is untied.

The tokenizer is byte-level BPE over the 256 byte values with no merges (every byte one token), so
any text encodes; the model's vocabulary is larger, as real ones are.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from transformers import LlamaConfig, PreTrainedTokenizerFast

SHAPES = {
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                      rope_theta=500000.0),
    "tiny": dict(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096),
}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    vocab["<s>"], vocab["</s>"] = len(vocab), len(vocab) + 1
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")


def write_random_model(path, shape: str = "llama2-7b", scheme: str = "q4_g128", lm_head: str = "f16",
                       seed: int = 0, embedding: str = "f16") -> Path:
    from awq_edge.awqe import AwqeWriter, expected_tensors
    from awq_edge.models.config import ModelConfig
    from awq_edge.quantize.pipeline import tokenizer_metadata

    bits, group = int(scheme[1]), int(scheme.split("_g")[1])
    tokenizer = byte_tokenizer()
    hf = LlamaConfig(**SHAPES[shape], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     tie_word_embeddings=False)
    config = ModelConfig.from_hf(hf)
    metadata = {
        "format": "awqe", "architecture": config.architecture, "config": config.to_metadata(),
        "tokenizer": tokenizer_metadata(tokenizer),
        "quantization": {"method": "rtn", "bits": bits, "group_size": group, "zero_point": True, "embedding": embedding,
                         "lm_head": lm_head, "overrides": {}},
        "provenance": {"tool": "awq_edge", "tool_version": "bench", "source_model": f"random {shape}",
                       "source_format": "none", "calibration": None},
    }
    rng = np.random.default_rng(seed)
    with AwqeWriter(path) as writer:
        for name, (dtype, shape_) in expected_tensors(metadata).items():
            if dtype == "U32":
                array = rng.integers(0, 2**32, size=shape_, dtype=np.uint32)
            elif dtype == "I8":
                array = rng.integers(-127, 128, size=shape_, dtype=np.int8)
            elif dtype == "F16":
                low, high = (0.9, 1.1) if name.endswith("norm") or "norm." in name else (0.0005, 0.002)
                array = rng.uniform(low, high, size=shape_).astype(np.float16)
            else:
                array = rng.uniform(-0.01, 0.01, size=shape_).astype(np.float32)
            writer.add_tensor(name, array)
        writer.finish(metadata)
    return Path(path)


def storage_scheme(text: str) -> str:
    from awq_edge.awqe.format import FormatError
    from awq_edge.awqe.schemes import parse_scheme
    try:
        parse_scheme(text)
    except FormatError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    parser.add_argument("--scheme", default="q4_g128", choices=[f"q{b}_g{g}" for b in (3, 4) for g in (32, 64, 128)],
                        help="the layers' scheme")
    parser.add_argument("--lm-head", default="f16", type=storage_scheme)
    parser.add_argument("--embedding", default="f16", type=storage_scheme)
    args = parser.parse_args()
    path = write_random_model(args.out, args.shape, args.scheme, args.lm_head, embedding=args.embedding)
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
