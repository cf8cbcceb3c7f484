"""The generation loop (cpp/src/generator.cpp) through the Python Generator: greedy output against transformers,
stop conditions, streaming, seeds, chat templates, and errors for bad input."""
import _thread
import signal
import threading
import time

import numpy as np
import pytest
import torch

from awq_edge import ModelFileError
from awq_edge.evaluate import load_awqe_as_transformers
from awq_edge.generator import Generator
from awqe_samples import write_tiny_file

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def llama(tiny_awqe):
    return tiny_awqe("llama")


@pytest.mark.parametrize("kind", ["llama", "llama_tied", "mistral", "qwen2", "llama3_rope"])
def test_greedy_generation_matches_transformers(tiny_awqe, kind):
    path = tiny_awqe(kind)
    model, tokenizer = load_awqe_as_transformers(path)
    ids = tokenizer(PROMPT)["input_ids"]
    model.generation_config.eos_token_id = None  # like ignore_eos: run through end-of-sequence tokens
    with torch.no_grad():
        expected = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                                  pad_token_id=0)[0, len(ids):].tolist()
    with Generator(path) as generator:
        assert generator.tokenize(PROMPT) == ids
        generator.generate(ids, max_new_tokens=24, ignore_eos=True)
        assert generator.last_result.tokens == expected
        assert generator.last_result.finish_reason == "length"


def test_stream_pieces_join_to_the_generated_text(llama):
    with Generator(llama) as generator:
        text = generator.generate(PROMPT, max_new_tokens=30, ignore_eos=True)
        pieces = list(generator.stream(PROMPT, max_new_tokens=30, ignore_eos=True))
        assert "".join(pieces) == text
        assert generator.last_result.text == text
        assert generator.detokenize(generator.last_result.tokens, skip_special_tokens=True) == text


def test_prompt_prefix_is_reused_from_the_cache(llama):
    with Generator(llama) as generator:
        first = generator.generate(PROMPT, max_new_tokens=8, ignore_eos=True)
        tokens = generator.tokenize(PROMPT) + generator.last_result.tokens
        generator.generate(tokens + generator.tokenize(" and", add_special_tokens=False), max_new_tokens=4)
        assert generator.last_result.stats["cached_tokens"] == len(tokens) - 1
        fresh = Generator(llama)
        assert fresh.generate(PROMPT, max_new_tokens=8, ignore_eos=True) == first


def test_same_seed_same_text_and_other_seeds_differ(llama):
    with Generator(llama) as generator:
        options = dict(max_new_tokens=32, temperature=1.0, top_k=50, top_p=0.95, ignore_eos=True)
        a = generator.generate(PROMPT, seed=7, **options)
        b = generator.generate(PROMPT, seed=7, **options)
        others = {generator.generate(PROMPT, seed=s, **options) for s in range(8, 12)}
        assert a == b
        assert len(others - {a}) >= 1


def test_stop_strings_end_the_text_before_them(llama):
    with Generator(llama) as generator:
        text = generator.generate(PROMPT, max_new_tokens=40, ignore_eos=True)
        stop = text[10:13]
        assert len(stop) == 3
        cut = generator.generate(PROMPT, max_new_tokens=40, ignore_eos=True, stop=[stop, "never appears"])
        assert cut == text[:text.index(stop)]
        assert generator.last_result.finish_reason == "stop"
        streamed = "".join(generator.stream(PROMPT, max_new_tokens=40, ignore_eos=True, stop=stop))
        assert streamed == cut


def test_stop_token_ids_and_eos(llama):
    with Generator(llama) as generator:
        generator.generate(PROMPT, max_new_tokens=20, ignore_eos=True)
        tokens = generator.last_result.tokens
        generator.generate(PROMPT, max_new_tokens=20, ignore_eos=True, stop_token_ids=[tokens[5]])
        first = tokens.index(tokens[5])
        assert generator.last_result.tokens == tokens[:first + 1]
        assert generator.last_result.finish_reason == "stop"


def test_zero_new_tokens_and_context_limit(llama):
    with Generator(llama, max_context=20) as generator:
        assert generator.generate(PROMPT, max_new_tokens=0) == ""
        assert generator.last_result.finish_reason == "length"
        ids = generator.tokenize(PROMPT)
        generator.generate(ids, max_new_tokens=100, ignore_eos=True)
        assert generator.last_result.finish_reason == "context"
        assert len(ids) + len(generator.last_result.tokens) == 21  # the last token needs no forward pass


def test_chat_template_matches_transformers(llama):
    _, tokenizer = load_awqe_as_transformers(llama)
    messages = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "Tell me more"}]
    with Generator(llama) as generator:
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert generator.apply_chat_template(messages) == expected
        reply = generator.chat(messages, max_new_tokens=10)
        assert isinstance(reply, str)
        assert "".join(generator.chat(messages, max_new_tokens=10, stream=True)) == reply


@pytest.mark.parametrize("bad, message", [
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=1.0, top_p=1.5), "top_p"),
    (dict(temperature=1.0, top_k=-2), "top_k"),
    (dict(temperature=1.0, min_p=1.0), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(stop_token_ids=[10**6]), "stop token id"),
])
def test_invalid_generation_options_are_value_errors(llama, bad, message):
    with Generator(llama) as generator, pytest.raises(ValueError, match=message):
        generator.generate(PROMPT, **{"max_new_tokens": 4, **bad})


def test_bad_prompts_are_value_errors(llama):
    with Generator(llama, max_context=16) as generator:
        with pytest.raises(ValueError, match="empty"):
            generator.generate("")
        with pytest.raises(ValueError, match="empty"):
            generator.generate([])
        with pytest.raises(ValueError, match="out of range"):
            generator.generate([5, 256, 7])
        with pytest.raises(ValueError, match="out of range"):
            generator.generate([-1])
        with pytest.raises(ValueError, match="17 tokens but the context holds 16"):
            generator.generate(list(range(3, 20)))
        with pytest.raises(ValueError, match="out of range"):
            generator.detokenize([999])
        assert generator.generate(PROMPT, max_new_tokens=2)  # still usable


def test_unsupported_architecture_and_truncated_file(tmp_path, llama):
    path = tmp_path / "gpt2.awqe"
    metadata, _ = write_tiny_file(path)
    metadata["architecture"] = "gpt2"
    from awqe_samples import random_tensors
    from awq_edge.awqe import AwqeWriter
    with AwqeWriter(path) as writer:
        for name, array in random_tensors(metadata).items():
            writer.add_tensor(name, array)
        writer.finish(metadata)
    with pytest.raises(ValueError, match="architecture 'gpt2' is not supported"):
        Generator(path)
    truncated = tmp_path / "truncated.awqe"
    truncated.write_bytes(llama.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated.awqe"):
        Generator(truncated)
    with pytest.raises(ValueError, match="backend 'metal'"):
        Generator(llama, backend="metal")
    with pytest.raises(ValueError, match="max_context"):
        Generator(llama, max_context=10**6)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test: interrupt_main does nothing while SIGINT is ignored, as it is
    in a pytest started as a background job of a shell without job control (the shell sets SIG_IGN, Python
    keeps it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_interrupts_generation_and_the_generator_survives(llama, python_sigint_handler):
    generator = Generator(llama, max_context=128)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    deadline = time.monotonic() + 30  # a lost interrupt fails the test after 30 s, not after the whole loop
    with pytest.raises(KeyboardInterrupt):
        while time.monotonic() < deadline:
            generator.generate(PROMPT, max_new_tokens=100, ignore_eos=True)
    timer.cancel()
    assert generator.generate(PROMPT, max_new_tokens=3, ignore_eos=True)


def test_logits_rows_are_float32_numpy(llama):
    generator = Generator(llama)
    logits = generator.logits(generator.tokenize(PROMPT))
    assert logits.dtype == np.float32 and logits.shape[1] == 256


def test_calls_from_several_threads_are_serialised(llama):
    generator = Generator(llama)
    expected = generator.generate(PROMPT, max_new_tokens=20, ignore_eos=True)
    results = []

    def work():
        for _ in range(5):
            results.append(generator.generate(PROMPT, max_new_tokens=20, ignore_eos=True))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 20


def test_a_new_call_ends_an_unfinished_stream_in_the_same_thread(llama):
    generator = Generator(llama)
    stream = generator.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    next(stream)
    text = generator.generate(PROMPT, max_new_tokens=5, ignore_eos=True)
    assert generator.last_result.finish_reason == "length" and text
    assert list(stream) == []


def test_a_closed_generator_says_so(llama):
    with Generator(llama) as generator:
        pass
    assert "closed" in repr(generator)
    with pytest.raises(ValueError, match="closed"):
        generator.generate(PROMPT)
