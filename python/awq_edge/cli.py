"""awq-edge: quantize | inspect | eval | run | chat | bench."""
import argparse
import sys
from pathlib import Path

from . import __version__
from .corpus import BUILTIN_CALIBRATION, BUILTIN_EVALUATION


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="awq-edge", description="AWQ 4-bit quantization for on-device LLMs")
    parser.add_argument("--version", action="version", version=f"awq-edge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    q = commands.add_parser("quantize", help="quantize a Hugging Face model directory or GGUF file into .awqe")
    q.add_argument("model", nargs="?", help="HF model directory or .gguf file (default: the built-in "
                   "SmolLM2-135M-Instruct, fetched once into ~/.cache/awq_edge)")
    q.add_argument("-o", "--output", help="output .awqe path (default: <model>-<method>-w<bits>g<group>.awqe here)")
    q.add_argument("--method", choices=("awq", "rtn"), default="awq")
    q.add_argument("--bits", type=int, choices=(3, 4), default=4)
    q.add_argument("--group-size", default=None, help="32, 64, 128 or auto (default: 128; auto for the "
                   "built-in model, whose hidden size 576 needs 64)")
    q.add_argument("--lm-head", choices=("fp16", "int8", "int4"), default="fp16",
                   help="storage of the LM head (and of the embedding when they are tied)")
    q.add_argument("--calib", nargs="+", default=[BUILTIN_CALIBRATION], metavar="TEXT",
                   help=f"calibration text files or directories (default: {BUILTIN_CALIBRATION})")
    q.add_argument("--n-samples", type=int, default=128)
    q.add_argument("--seqlen", type=int, default=512)
    q.add_argument("--search-samples", type=int, default=16,
                   help="calibration samples the scale search measures its loss on; the activation statistics "
                        "and the clipping search use all --n-samples (default: 16)")
    q.add_argument("--n-grid", type=int, default=20, help="scale ratios tried per layer group")
    q.add_argument("--no-clip", action="store_true", help="skip the clipping search")
    q.add_argument("--threads", type=int, default=None)
    q.add_argument("--eval", action="store_true", help="then print the perplexity table of the file and the "
                   "source model on the built-in evaluation text")
    q.set_defaults(run=_quantize)

    i = commands.add_parser("inspect", help="print the header, metadata and tensor table of an .awqe file")
    i.add_argument("file")
    i.add_argument("--no-verify", action="store_true", help="skip the tensor checksums")
    i.set_defaults(run=_inspect)

    e = commands.add_parser("eval", help="perplexity of .awqe files (dequantized by the numpy reference) "
                            "and of the original model")
    e.add_argument("files", nargs="+", help=".awqe files")
    e.add_argument("--baseline", help="the original model (HF directory or .gguf) to compare with")
    e.add_argument("--text", default=BUILTIN_EVALUATION, help=f"text file or directory (default: {BUILTIN_EVALUATION})")
    e.add_argument("--window", type=int, default=512)
    e.add_argument("--stride", type=int, default=256)
    e.add_argument("--max-tokens", type=int, default=None, help="score only the first N tokens of the text")
    e.set_defaults(run=_eval)

    from .cli_generate import add_commands
    add_commands(commands)

    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"awq-edge {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        done = "; no output file was written" if args.command == "quantize" else ""
        print(f"awq-edge {args.command}: interrupted{done}", file=sys.stderr)
        return 130


def _quantize(args) -> int:
    from tqdm import tqdm

    from .default_model import DEFAULT_GROUP_SIZE, default_model_path
    from .quantize import QuantizeOptions, quantize_model

    model = Path(args.model) if args.model else default_model_path()
    group_size = args.group_size or ("auto" if not args.model else "128")
    if group_size != "auto":
        group_size = int(group_size)
    stem = model.name[: -len(".gguf")] if model.name.endswith(".gguf") else model.name
    output = Path(args.output) if args.output else None
    options = QuantizeOptions(method=args.method, bits=args.bits, group_size=group_size, lm_head=args.lm_head,
                              calibration=args.calib, n_samples=args.n_samples, seqlen=args.seqlen,
                              search_samples=args.search_samples, n_grid=args.n_grid, clip=not args.no_clip,
                              threads=args.threads)
    if output is None:
        shown_group = DEFAULT_GROUP_SIZE if group_size == "auto" and not args.model else group_size
        output = Path(f"{stem}-{args.method}-w{args.bits}g{shown_group}.awqe")
    report = quantize_model(model, output, options,
                            progress=lambda layers: tqdm(layers, desc=f"{args.method} w{args.bits}", unit="layer"))
    print()
    print(f"wrote {report.path} from {model}")
    _table(["method", "bits", "group", "lm head", "time", "file size", "bits/weight (linears)",
            "bits/weight (file)", "vs fp16"],
           [[args.method, args.bits, report.group_size, args.lm_head, f"{report.seconds:.0f} s",
             f"{report.file_bytes / 2**20:.1f} MiB", f"{report.linear_bits_per_weight:.3f}",
             f"{report.file_bits_per_weight:.3f}", f"{report.compression_vs_fp16:.2f}x"]])
    if args.eval:
        print()
        return _eval(argparse.Namespace(files=[str(report.path)], baseline=str(model), text=BUILTIN_EVALUATION,
                                        window=512, stride=256, max_tokens=None))
    return 0


def _inspect(args) -> int:
    from .awqe import AwqeFile

    f = AwqeFile(args.file, verify=not args.no_verify)
    h, m = f.header, f.metadata
    print(f"{args.file}: .awqe {h['version_major']}.{h['version_minor']}, {h['file_size']} bytes, "
          f"{h['tensor_count']} tensors, data at {h['data_offset']}, tensor alignment {h['tensor_alignment']}"
          f"{'' if args.no_verify else ', checksums verified'}")
    print(f"architecture: {m['architecture']}")
    print("config:       " + ", ".join(f"{k}={v}" for k, v in m["config"].items()))
    quant = m["quantization"]
    print("quantization: " + ", ".join(f"{k}={v}" for k, v in quant.items()))
    tok = m["tokenizer"]
    model = tok["tokenizer_json"].get("model", {})
    print(f"tokenizer:    {model.get('type')} with {len(model.get('vocab', {}))} tokens + "
          f"{len(tok['tokenizer_json'].get('added_tokens', []))} added; bos={tok.get('bos_token')!r} "
          f"eos={tok.get('eos_token')!r} add_bos={tok.get('add_bos_token')} "
          f"chat_template={'yes' if tok.get('chat_template') else 'no'}")
    print("provenance:   " + ", ".join(f"{k}={v}" for k, v in m["provenance"].items()))
    print()
    _table(["tensor", "dtype", "shape", "offset", "bytes", "crc32"],
           [[t.name, t.dtype, "x".join(map(str, t.shape)), t.offset, t.size, f"{t.crc32:08x}"]
            for t in f.tensor_infos.values()])
    return 0


def _eval(args) -> int:
    import torch

    from .corpus import read_texts
    from .evaluate import load_awqe_as_transformers, load_source_as_transformers, perplexity, transformers_logits

    text = read_texts(args.text)
    rows, baseline_ppl, ids = [], None, None
    if args.baseline:
        model, tokenizer = load_source_as_transformers(args.baseline)
        ids = _token_ids(tokenizer, text, args.max_tokens)
        ppl = perplexity(transformers_logits(model), ids, args.window, args.stride)
        baseline_ppl = ppl.value
        rows.append([Path(args.baseline).name, "float32", "-", "-", "-", f"{ppl.value:.3f}", "-", ppl.tokens])
        del model
    for file in args.files:
        model, tokenizer = load_awqe_as_transformers(file)
        file_ids = _token_ids(tokenizer, text, args.max_tokens)
        if ids is not None and not torch.equal(file_ids, ids):
            raise ValueError(f"'{file}' tokenizes the text differently from the baseline model: "
                             f"is it a quantization of {args.baseline}?")
        from .awqe import AwqeFile
        quant = AwqeFile(file, verify=False).metadata["quantization"]
        ppl = perplexity(transformers_logits(model), file_ids, args.window, args.stride)
        gap = f"{ppl.value - baseline_ppl:+.3f}" if baseline_ppl else "-"
        rows.append([Path(file).name, quant["method"], quant["bits"], quant["group_size"], quant["lm_head"],
                     f"{ppl.value:.3f}", gap, ppl.tokens])
        del model
    print(f"perplexity on {args.text} (window {args.window}, stride {args.stride})")
    _table(["model", "method", "bits", "group", "lm head", "perplexity", "vs baseline", "tokens"], rows)
    return 0


def _token_ids(tokenizer, text, max_tokens):
    import torch
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[:max_tokens] if max_tokens else ids, dtype=torch.int64)


def _table(headers, rows) -> None:
    cells = [list(map(str, headers))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(headers))]
    line = lambda row: "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |"  # noqa: E731
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


if __name__ == "__main__":
    sys.exit(main())
