"""Text generation from a .awqe file: the C++ engine's Generator with text prompts, streaming and chat.

    with Generator("model.awqe") as g:
        print(g.generate("The capital of France is", max_new_tokens=20))
        for piece in g.stream("Once upon a time", temperature=0.8, seed=1):
            print(piece, end="", flush=True)
        print(g.chat([{"role": "user", "content": "Hello!"}]))

The model runs in C++ with the GIL released; Ctrl-C interrupts within one forward pass. One Generator serves one
thread at a time: calls from several threads are serialised by a lock (use one Generator per thread to run in
parallel).
"""
from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator, Sequence

from . import _awq_edge

__all__ = ["Generator", "GenerationResult"]

GenerationResult = _awq_edge.GenerationResult


class Generator:
    """A model file loaded on a backend, ready to generate.

    path: a .awqe file. backend: "auto" (the GPU when usable, else NEON on aarch64, else the CPU) or a name
    from `awq_edge._awq_edge.backends.compiled()` ("cuda", "neon", "cpu"); `backends.available(name)` says why
    one cannot run. threads: CPU threads (None: one per physical core). max_context: KV cache positions (None:
    min(max_position_embeddings, 4096)). kernels: CPU kernel level "auto" | "avx512" | "avx2" | "reference"; with
    backend="neon" (aarch64) "neon" (faithful, the default) | "neon-int8" (int8 activations) | a level's name;
    "auto" only for "cuda".
    verify_checksums: check every tensor's CRC-32 while loading (reads the whole file once).
    """

    def __init__(self, path, backend: str = "auto", threads: int | None = None, max_context: int | None = None,
                 *, kernels: str = "auto", prefill_chunk: int = 128, verify_checksums: bool = True):
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for one per physical core), got {threads}")
        if max_context is not None and max_context < 1:
            raise ValueError(f"max_context must be >= 1 (or None for the default), got {max_context}")
        self._lock = threading.RLock()  # the engine releases the GIL: one thread at a time (re-entrant: a
        # call while this thread still holds an unfinished stream ends that stream instead of deadlocking)
        self._engine = _awq_edge.Generator(str(path), backend=backend, threads=threads or 0, kernels=kernels,
                                           max_context=max_context or 0, prefill_chunk=prefill_chunk,
                                           verify_checksums=verify_checksums)
        self.metadata: dict = json.loads(self._engine.metadata_json)
        self.last_result: GenerationResult | None = None

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        """The backend and its settings, e.g. "cpu (avx2 kernels, 2 threads)"."""
        return self._engine.backend

    @property
    def vocab_size(self) -> int:
        return self._engine.vocab_size

    @property
    def max_context(self) -> int:
        return self._engine.max_context

    @property
    def load_seconds(self) -> float:
        return self._engine.load_seconds

    # ------------------------------------------------------------------------------------------------ tokens
    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`, exactly as the model's Hugging Face tokenizer gives them."""
        return self._engine.tokenize(text, add_special_tokens)

    def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._engine.detokenize(list(ids), skip_special_tokens)

    def logits(self, ids: Sequence[int], all_positions: bool = True):
        """Runs `ids` after the tokens already in the KV cache (call reset() first for a fresh sequence) and
        returns float32 logits: (len(ids), vocab) or (1, vocab) for the last position only."""
        with self._lock:
            return self._engine.forward(list(ids), all_positions)

    def reset(self) -> None:
        """Forgets the KV cache (the next prompt is run from its first token)."""
        with self._lock:
            self._engine.reset()

    # ------------------------------------------------------------------------------------------------ generation
    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 256, *, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
                 seed: int | None = None, stop: str | Sequence[str] | None = None,
                 stop_token_ids: Sequence[int] = (), ignore_eos: bool = False,
                 add_special_tokens: bool = True) -> str:
        """Generates a continuation of `prompt` (text, or token ids used as given) and returns its text.

        temperature 0 is greedy decoding; otherwise tokens are sampled after Hugging Face's processors in HF's
        order: repetition_penalty, temperature, top_k (0 = off), top_p (1 = off), min_p (0 = off). seed: the same
        seed and input give the same output (None: a random seed). Generation ends at an end-of-sequence token,
        a token of stop_token_ids, the first occurrence of a `stop` string (not included in the text), after
        max_new_tokens, or when the context is full; `last_result.finish_reason` says which.
        """
        ids, options = self._prepare(prompt, max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                                     seed, stop, stop_token_ids, ignore_eos, add_special_tokens)
        with self._lock:
            self.last_result = self._engine.generate(ids, options)
        return self.last_result.text

    def stream(self, prompt: str | Sequence[int], max_new_tokens: int = 256, **options) -> Iterator[str]:
        """Like generate(), but yields the text in pieces as tokens are produced (never half a character, never
        a piece of a stop string)."""
        add_special_tokens = options.pop("add_special_tokens", True)
        ids, opts = self._prepare(prompt, max_new_tokens, add_special_tokens=add_special_tokens,
                                  **_sampling_defaults(options))
        with self._lock:  # held while the stream is consumed: another thread's call waits for its end
            self._engine.start(ids, opts)
            while (piece := self._engine.next()) is not None:
                if piece:
                    yield piece
            self.last_result = self._engine.result

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, rendered with the chat template stored in the file, exactly as
        transformers' `tokenizer.apply_chat_template(messages, tokenize=False)` renders it."""
        from transformers.utils.chat_template_utils import render_jinja_template

        tokenizer = self.metadata["tokenizer"]
        template = tokenizer.get("chat_template")
        if not template:
            raise ValueError(f"{self._engine.path} has no chat template; use generate() with a plain prompt")
        special = {name: tokenizer.get(name) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
        rendered, _ = render_jinja_template(conversations=[list(messages)], chat_template=template,
                                            add_generation_prompt=add_generation_prompt, **special)
        return rendered[0]

    def chat(self, messages: Sequence[dict], max_new_tokens: int = 256, *, stream: bool = False, **options):
        """Answers a conversation ([{"role": "user", "content": "..."}, ...]) as the assistant: the chat template
        is applied, the reply generated (greedy by default; same options as generate()) and returned as text,
        or as an iterator of pieces with stream=True. The KV cache keeps the conversation, so a follow-up call
        with the reply and a new message appended only runs the new tokens."""
        prompt = self.apply_chat_template(messages)
        ids = self.tokenize(prompt, add_special_tokens=False)  # the template writes the special tokens
        if stream:
            return self.stream(ids, max_new_tokens, **options)
        return self.generate(ids, max_new_tokens, **options)

    # ------------------------------------------------------------------------------------------------ internals
    def _prepare(self, prompt, max_new_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                 repetition_penalty=1.0, seed=None, stop=None, stop_token_ids=(), ignore_eos=False,
                 add_special_tokens=True) -> tuple[list[int], _awq_edge.GenerationOptions]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty: give some text or token ids")
            ids = self.tokenize(prompt, add_special_tokens)
        else:
            ids = [int(i) for i in prompt]
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if seed is None:
            seed = secrets.randbits(64)
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        return ids, _awq_edge.GenerationOptions(
            max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
            min_p=float(min_p), repetition_penalty=float(repetition_penalty), seed=int(seed),
            stop_token_ids=[int(i) for i in stop_token_ids], stop_strings=stops, ignore_eos=bool(ignore_eos))

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Releases the model (memory and file mapping); the object cannot generate afterwards."""
        self._engine = _Closed()

    def __repr__(self) -> str:
        if not hasattr(self, "metadata"):  # __init__ did not finish
            return "Generator(<not loaded>)"
        where = "closed" if isinstance(self._engine, _Closed) else self.backend
        return f"Generator({self.metadata.get('provenance', {}).get('source_model', '?')!r}, {where!r})"


def _sampling_defaults(options: dict) -> dict:
    allowed = {"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "stop", "stop_token_ids",
               "ignore_eos"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
    return options


class _Closed:
    def __getattr__(self, name):
        raise ValueError("this Generator is closed")
