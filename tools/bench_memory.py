"""Benchmark: the quantizer's peak memory does not grow with the number of decoder layers.

It builds (once, cached in --workdir) two random LLaMA checkpoints, float16 safetensors Hugging Face
directories with a small BPE tokenizer, identical except for depth: N and 2N layers of hidden 2048,
intermediate 5632, 16 heads, 4 kv heads, vocab 32000 (one layer is 45M weights, 172 MiB in float32).
It quantizes each with AWQ (16 x 256 calibration tokens) and with RTN, every run in a fresh
process, and prints a markdown table of wall time and peak RSS. If the quantizer holds one layer
at a time, the 2N-layer peak is within about one float32 layer of the N-layer peak.

Peak RSS is the kernel's high-water mark (getrusage ru_maxrss). It counts both the process's own
memory (anonymous: tensors, the heap) and the pages of memory-mapped files it has touched, which
the kernel can drop again without swapping; a thread sampling /proc/self/status every 10 ms gives
the peak of each part, so the table shows which one grows.

    python tools/bench_memory.py [--layers N] [--workdir DIR]

Building the two checkpoints (2.5 GiB of float16) takes under a minute the first time; the four
quantization runs take about 25 minutes on two cores, most of it AWQ's search on the 2N-layer model.
"""
import argparse
import datetime
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=16, num_key_value_heads=4,
             vocab_size=32000)
TOKENIZER_VOCAB = 2000
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
METHODS = ("awq", "rtn")
AWQ_CALIBRATION = dict(n_samples=16, seqlen=256, search_samples=4)
SAMPLE_SECONDS = 0.01
MIB = 2**20


# ----------------------------------------------------------------------------------------------
# the random checkpoints

def layer_shapes() -> dict:
    """Hugging Face name suffix -> shape of one decoder layer's tensors."""
    h, i = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    kv = h // SHAPE["num_attention_heads"] * SHAPE["num_key_value_heads"]
    return {"self_attn.q_proj.weight": (h, h), "self_attn.k_proj.weight": (kv, h),
            "self_attn.v_proj.weight": (kv, h), "self_attn.o_proj.weight": (h, h),
            "mlp.gate_proj.weight": (i, h), "mlp.up_proj.weight": (i, h), "mlp.down_proj.weight": (h, i),
            "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,)}


def layer_parameters() -> int:
    return sum(math.prod(shape) for shape in layer_shapes().values())


def model_parameters(layers: int) -> int:
    """Embedding and LM head (untied), the layers, the final norm."""
    return 2 * SHAPE["vocab_size"] * SHAPE["hidden_size"] + layers * layer_parameters() + SHAPE["hidden_size"]


def train_tokenizer(directory: Path, config) -> None:
    """A byte-level BPE trained on CPython's pydoc topics, saved as a PreTrainedTokenizerFast."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator((topics[key] for key in sorted(topics)), trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(             # LLaMA-like: <s> before the text
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    assert tokenizer.get_vocab_size() <= SHAPE["vocab_size"]
    config.bos_token_id, config.eos_token_id = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS.values())
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS).save_pretrained(directory)


def build_checkpoint(directory: Path, layers: int) -> None:
    """Random float16 LLaMA weights, one safetensors shard per layer, so that no more than one layer
    is ever in memory; written to a temporary directory and renamed into place when complete."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    config = LlamaConfig(num_hidden_layers=layers, max_position_embeddings=2048, tie_word_embeddings=False,
                         architectures=["LlamaForCausalLM"], **SHAPE)
    partial = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    train_tokenizer(partial, config)
    config.save_pretrained(partial)

    generator = torch.Generator().manual_seed(layers)
    h, v = SHAPE["hidden_size"], SHAPE["vocab_size"]

    def weights(shapes: dict) -> dict:
        return {name: torch.ones(shape, dtype=torch.float16) if name.endswith("norm.weight") else
                (0.02 * torch.randn(shape, generator=generator)).half() for name, shape in shapes.items()}

    shards = [{"model.embed_tokens.weight": (v, h)}]
    shards += [{f"model.layers.{i}.{name}": shape for name, shape in layer_shapes().items()} for i in range(layers)]
    shards += [{"model.norm.weight": (h,), "lm_head.weight": (v, h)}]
    weight_map = {}
    for index, shapes in enumerate(shards, 1):
        file = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(weights(shapes), partial / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shapes, file))
    index = {"metadata": {"total_size": 2 * model_parameters(layers)}, "weight_map": weight_map}
    (partial / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    partial.rename(directory)


def checkpoint(workdir: Path, layers: int) -> Path:
    directory = workdir / f"llama-random-{layers}L"
    if not directory.exists():
        print(f"building {directory} ...", flush=True)
        build_checkpoint(directory, layers)
    return directory


# ----------------------------------------------------------------------------------------------
# one measured run (in its own process)

def proc_fields(path: str, keys) -> dict:
    """The named 'Key: N kB' fields of a /proc file (/proc/self/status, /proc/meminfo), in bytes."""
    fields = {}
    with open(path) as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key in keys:
                fields[key] = int(value.split()[0]) * 1024
    return fields


def rss_parts() -> dict:
    """RssAnon and RssFile of this process in bytes."""
    return proc_fields("/proc/self/status", ("RssAnon", "RssFile"))


def child(model: str, method: str, output: str) -> None:
    """Quantize once and print one JSON line: wall seconds, peak RSS and the peak of each part."""
    from awq_edge.quantize import QuantizeOptions, quantize_model

    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample():
        while not done.wait(SAMPLE_SECONDS):
            for key, value in rss_parts().items():
                peaks[key] = max(peaks[key], value)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    options = QuantizeOptions(method=method, group_size=128, **(AWQ_CALIBRATION if method == "awq" else {}))
    started = time.perf_counter()
    quantize_model(model, output, options)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    print(json.dumps({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "peak_anon": peaks["RssAnon"], "peak_file": peaks["RssFile"]}))


def measure(model: Path, method: str, workdir: Path) -> dict:
    output = workdir / f"{model.name}-{method}.awqe"
    print(f"quantizing {model.name} with {method} ...", flush=True)
    result = subprocess.run([sys.executable, __file__, "--child", str(model), method, str(output)],
                            capture_output=True, text=True)
    output.unlink(missing_ok=True)
    if result.returncode:
        sys.exit(f"quantizing {model.name} with {method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# the table

def machine() -> str:
    import torch
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8, help="N: the models have N and 2N layers (default 8)")
    parser.add_argument("--workdir", default="~/.cache/awq_edge/bench_memory",
                        help="where the checkpoints are cached and the .awqe files briefly written")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "METHOD", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    workdir = Path(args.workdir).expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    depths = (args.layers, 2 * args.layers)
    models = {layers: checkpoint(workdir, layers) for layers in depths}
    results = {(layers, method): measure(models[layers], method, workdir) for method in METHODS for layers in depths}

    layer_fp32 = 4 * layer_parameters()
    command = " ".join(["python", "tools/bench_memory.py"] + sys.argv[1:])
    print()
    print(f"- date: {datetime.date.today()}; machine: {machine()}")
    print(f"- command: `{command}`")
    print(f"- models: random LLaMA, hidden {SHAPE['hidden_size']}, intermediate {SHAPE['intermediate_size']}, "
          f"{SHAPE['num_attention_heads']} heads, {SHAPE['num_key_value_heads']} kv heads, "
          f"vocab {SHAPE['vocab_size']}, untied LM head, float16 safetensors (one shard per layer); "
          f"AWQ calibration {AWQ_CALIBRATION['n_samples']} x {AWQ_CALIBRATION['seqlen']} tokens, "
          f"search on {AWQ_CALIBRATION['search_samples']}; group size 128")
    print(f"- peak anonymous / file-mapped: highest RssAnon / RssFile sampled every {SAMPLE_SECONDS * 1000:.0f} ms")
    print()
    print("| layers | method | checkpoint (fp16, disk) | weights fp32 | one layer fp32 | wall time | peak RSS "
          "| peak anonymous | peak file-mapped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in METHODS:
        for layers in depths:
            disk = sum(f.stat().st_size for f in models[layers].glob("*.safetensors"))
            fp32 = 4 * model_parameters(layers)
            r = results[(layers, method)]
            print(f"| {layers} | {method.upper()} | {disk / MIB:.0f} MiB | {fp32 / MIB:.0f} MiB "
                  f"| {layer_fp32 / MIB:.0f} MiB | {r['seconds']:.0f} s | {r['peak_rss'] / MIB:.0f} MiB "
                  f"| {r['peak_anon'] / MIB:.0f} MiB | {r['peak_file'] / MIB:.0f} MiB |")
    print()
    for method in METHODS:
        growth = results[(depths[1], method)]["peak_rss"] - results[(depths[0], method)]["peak_rss"]
        print(f"- {method.upper()}: {depths[0]} -> {depths[1]} layers, peak RSS grows by {growth / MIB:.0f} MiB "
              f"= {growth / layer_fp32:.2f} float32 layers")


if __name__ == "__main__":
    main()
