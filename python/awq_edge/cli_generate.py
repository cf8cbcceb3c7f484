"""awq-edge run | chat | bench: the engine from the shell (python/awq_edge/cli.py registers them)."""
import resource
import statistics
import sys
import time


def add_commands(commands) -> None:
    r = commands.add_parser("run", help="generate text from a prompt, streamed to stdout")
    _engine_arguments(r)
    r.add_argument("-p", "--prompt", required=True, help="the prompt text")
    r.add_argument("--chat", action="store_true", help="send the prompt as a user message through the file's chat "
                   "template (for instruction-tuned models)")
    _sampling_arguments(r)
    r.add_argument("--stats", action="store_true", help="print token counts and speed to stderr at the end")
    r.set_defaults(run=_run)

    c = commands.add_parser("chat", help="interactive chat with the file's chat template (/reset, /exit)")
    _engine_arguments(c)
    c.add_argument("--system", help="a system message to start the conversation with")
    _sampling_arguments(c)
    c.set_defaults(run=_chat)

    b = commands.add_parser("bench", help="prefill and decode tokens/s, load time and peak memory, as a table")
    _engine_arguments(b)
    b.add_argument("--prompt-tokens", type=int, default=128, help="prefill length (default: 128)")
    b.add_argument("--new-tokens", type=int, default=128, help="decoded tokens (default: 128)")
    b.add_argument("--repetitions", type=int, default=3)
    b.set_defaults(run=_bench)


def _engine_arguments(parser) -> None:
    parser.add_argument("file", help=".awqe model file (see `awq-edge quantize`)")
    parser.add_argument("--backend", default="auto", help="auto (default: the GPU when usable, else the CPU) or a compiled backend: cuda, neon, cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--max-context", type=int, default=None,
                        help="KV cache positions (default: the model's, at most 4096)")
    parser.add_argument("--no-verify", action="store_true", help="skip the tensor checksums while loading")


def _sampling_arguments(parser) -> None:
    parser.add_argument("-n", "--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    parser.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off")
    parser.add_argument("--seed", type=int, default=None, help="same seed + same prompt = same text")
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def _open(args):
    from .generator import Generator
    return Generator(args.file, backend=args.backend, threads=args.threads, max_context=args.max_context,
                     verify_checksums=not args.no_verify)


def _sampling(args) -> dict:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop)


def _run(args) -> int:
    generator = _open(args)
    if args.chat:
        pieces = generator.chat([{"role": "user", "content": args.prompt}], args.max_new_tokens, stream=True,
                                **_sampling(args))
    else:
        pieces = generator.stream(args.prompt, args.max_new_tokens, **_sampling(args))
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        stats = generator.last_result.stats
        print(f"[{generator.backend}] prompt {stats['prompt_tokens']} tokens "
              f"({_rate(stats['prompt_tokens'] - stats['cached_tokens'], stats['prefill_seconds'])} tokens/s), "
              f"generated {stats['generated_tokens']} ({_rate(stats['generated_tokens'], stats['decode_seconds'])} "
              f"tokens/s), finish: {generator.last_result.finish_reason}", file=sys.stderr)
    return 0


def _chat(args) -> int:
    generator = _open(args)
    start = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(start)
    print(f"chatting with {args.file} on {generator.backend}; /reset starts over, /exit (or Ctrl-D) quits, "
          "Ctrl-C stops a reply", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            messages = list(start)
            generator.reset()
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        reply = []
        try:
            for piece in generator.chat(messages, args.max_new_tokens, stream=True, **_sampling(args)):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})


def _bench(args) -> int:
    import random

    from .cli import _table

    if args.prompt_tokens < 1 or args.new_tokens < 1 or args.repetitions < 1:
        raise ValueError("--prompt-tokens, --new-tokens and --repetitions must be >= 1")
    began = time.perf_counter()
    generator = _open(args)
    load_seconds = time.perf_counter() - began
    rng = random.Random(0)  # speed does not depend on the token values
    prompt = [rng.randrange(generator.vocab_size) for _ in range(args.prompt_tokens)]
    prefill, decode = [], []
    for _ in range(args.repetitions):
        generator.reset()
        generator.generate(prompt, args.new_tokens, ignore_eos=True)
        stats = generator.last_result.stats
        prefill.append(stats["prompt_tokens"] / stats["prefill_seconds"])
        decode.append((stats["generated_tokens"] - 1) / stats["decode_seconds"])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.file} on {generator.backend}, {args.repetitions} repetitions")
    _table(["load", "peak RSS", f"prefill {args.prompt_tokens} tok/s", f"decode {args.new_tokens} tok/s"],
           [[f"{load_seconds:.2f} s", f"{peak_mib:.0f} MiB", _spread(prefill), _spread(decode)]])
    print(f"command: awq-edge {' '.join(sys.argv[2:]) if len(sys.argv) > 2 else 'bench ' + args.file}")
    return 0


def _rate(tokens: int, seconds: float) -> str:
    return f"{tokens / seconds:.1f}" if seconds > 0 else "-"


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

