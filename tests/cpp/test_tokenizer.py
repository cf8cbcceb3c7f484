"""The C++ tokenizer (awq_edge._awq_edge.Tokenizer, TextStream) against Hugging Face's, id for id.

Every test tokenizer is built offline: the tiny model's Metaspace BPE, and small BPEs trained on
CPython's pydoc text in the layouts of GPT-2, LLaMA-3, Qwen2 and LLaMA-2 / Mistral (their regexes and
normalizer / pre-tokenizer / decoder / post-processor structures copied from the real tokenizer.json
files), plus SmolLM2-135M's real tokenizer from the default model's GGUF. Each goes into the C++
tokenizer exactly as a .awqe file stores it (quantize.pipeline.tokenizer_metadata).
"""
import json
import random
import unicodedata

import pytest
import transformers
from pydoc_data.topics import topics
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers

from awq_edge import _awq_edge
from awq_edge.evaluate import tokenizer_from_metadata
from awq_edge.quantize.pipeline import tokenizer_metadata
from tiny_models import tiny_tokenizer

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

PYDOC = "\n\n".join(topics[key] for key in sorted(topics))
TRAINING_TEXT = [PYDOC[i:i + 2000] for i in range(0, 400_000, 2000)]

CORPUS = [
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space", "trailing space ", "   ", " ", "\n", "\t",
    "two  spaces,   three,    four.\tOne tab,\t\ttwo tabs; mixed \t \n \r\n\r\n end",
    "lines\n\nblank line\n\n\n\nfour newlines\r\nCRLF\rCR \n indented\n    code",
    "café naïve résumé Ångström Øresund straße İstanbul",
    "e\u0301 a\u0308 n\u0303 (combining marks) \u1100\u1161\u11a8 (Hangul jamo) \u212b \u2126",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ flags 🇩🇪🇯🇵",
    "مرحبا بالعالم — שלום עולם — mixed RTL مرحبا123 and LTR",
    "digits 0 12 123 1234 12345 3.14159 1,000,000 9876543210987654321 ١٢٣ ४५६ Ⅻ ½",
    "I'm you're he's we'll they've she'd it's I'M YOU'RE WE'LL 'tis o'clock",
    "def f(x):\n    return {'a': [x ** 2, x // 3]}  # comment\n\nclass A(B):\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; } // C++\n#include <vector>",
    "URLs https://example.com/path?q=1&r=2#frag and e-mail a.b@c.org",
    "punctuation!!! ??? ... --- *** ((( ))) [[ ]] {{ }} <<< >>> @#$%^&* ~`|\\",
    "\u00a0non-breaking\u2003em space\u3000ideographic space\u2028line separator\u0085next line",
    "zero\u200bwidth\u200cjoiners\u200dhere and \ufeffBOM and soft\u00adhyphen",
    "ſ long s, ß, ﬁ ligature, Ⅳ numeral, ① circled, ² superscript",
    # decomposed and misordered marks, singletons, Hangul jamo: what NFC (Qwen2) recomposes
    unicodedata.normalize("NFD", "Ấn Độ, Việt Nam, ǖ Ḝ ṩ 가각힣 Ω Å") + " q\u0307\u0323 a\u0301\u0323 \u0344 \u0958",
    PYDOC[123_456:126_456],
]


# ---------------------------------------------------------------------------------------------
# Test tokenizers, each as (metadata "tokenizer" section, metadata "config")
# ---------------------------------------------------------------------------------------------

def as_metadata(backend: Tokenizer, **special) -> tuple[dict, dict]:
    """The metadata a .awqe file stores for this tokenizer, and a config with its special ids."""
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **special)
    section = tokenizer_metadata(fast)
    config = {"vocab_size": backend.get_vocab_size(), "bos_token_id": fast.bos_token_id,
              "eos_token_id": [fast.eos_token_id] if fast.eos_token_id is not None else []}
    return section, config


def edited(backend: Tokenizer, edit) -> Tokenizer:
    """The tokenizer with its tokenizer.json changed by edit(dict), for fields the Python API cannot set."""
    data = json.loads(backend.to_str())
    edit(data)
    return Tokenizer.from_str(json.dumps(data))


def byte_level_bpe(pre_tokenizer, special_tokens, vocab_size=3000, normalizer=None) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    return tokenizer


def gpt2_style(add_prefix_space=False) -> Tokenizer:
    tokenizer = byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space), ["<|endoftext|>"])
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)

    def merges_as_strings(data):  # GPT-2's own tokenizer.json has the older "a b" merges
        data["model"]["merges"] = [" ".join(pair) for pair in data["model"]["merges"]]
    return edited(tokenizer, merges_as_strings)


def llama3_style() -> Tokenizer:
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer = byte_level_bpe(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]), specials)
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return edited(tokenizer, lambda data: data["model"].update(ignore_merges=True))


def qwen2_style() -> Tokenizer:
    tokenizer = byte_level_bpe(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizer=normalizers.NFC())
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def sentencepiece_style(normalizer=True, pre_tokenizer=None, decoder=None) -> Tokenizer:
    """LLaMA-2 / Mistral: BPE over "▁"-joined text with <0x00>..<0xFF> byte fallback tokens at ids 3..258.

    normalizer=True gives LLaMA-2's Prepend + Replace normalizer (with no pre-tokenizer); otherwise
    pass the Metaspace pre-tokenizer and decoder of the newer layout.
    """
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=80,
                                  show_progress=False)
    trainer_tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]
    names = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    names += [token for token, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]) if token not in names]
    model = models.BPE(vocab={token: i for i, token in enumerate(names)},
                       merges=[tuple(pair) for pair in trained["merges"]], unk_token="<unk>", fuse_unk=True,
                       byte_fallback=True)
    tokenizer = Tokenizer(model)
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in names[:3]])
    if normalizer:
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                               decoders.Strip(content=" ", left=1, right=0)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizer
        tokenizer.decoder = decoder
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    return tokenizer


def metaspace_style(prepend_scheme: str, split: bool) -> Tokenizer:
    return sentencepiece_style(normalizer=False,
                               pre_tokenizer=pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme, split=split),
                               decoder=decoders.Metaspace(prepend_scheme=prepend_scheme, split=split))


def with_added_token_flags(tokenizer: Tokenizer) -> Tokenizer:
    """Added tokens with every matching option: lstrip, rstrip, single_word, normalized."""
    tokenizer.add_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False),
                          AddedToken("[R]", rstrip=True, normalized=False),
                          AddedToken("cat", single_word=True, normalized=False),
                          AddedToken("dog", normalized=True),
                          AddedToken("Straße", normalized=True, single_word=True)])
    return tokenizer


ADDED_FLAG_TEXTS = ["a  <mask> b", "<mask>x", " \t<mask>", "x[R]   y", "[R]\n\nz", "cat concat cats cat_ _cat (cat) cat",
                    "dog hotdog dogs  dog", "Straße Straßen straße", "😀cat😀 1cat é cat", "  dog", "dog"]
SPECIALS_SP = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")
BUILDERS = {
    "tiny_metaspace": lambda: None,  # tests/tiny_models.py's tokenizer, built below
    "gpt2": lambda: as_metadata(gpt2_style(), eos_token="<|endoftext|>"),
    "gpt2_prefix_space": lambda: as_metadata(gpt2_style(add_prefix_space=True), eos_token="<|endoftext|>"),
    "llama3": lambda: as_metadata(llama3_style(), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
    "qwen2": lambda: as_metadata(qwen2_style(), eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    "llama2": lambda: as_metadata(sentencepiece_style(), **SPECIALS_SP),
    "gpt2_added_flags": lambda: as_metadata(with_added_token_flags(gpt2_style()), eos_token="<|endoftext|>"),
    "llama2_added_flags": lambda: as_metadata(with_added_token_flags(sentencepiece_style()), **SPECIALS_SP),
    "metaspace_first": lambda: as_metadata(metaspace_style("first", True), **SPECIALS_SP),
    "metaspace_never_nosplit": lambda: as_metadata(metaspace_style("never", False), **SPECIALS_SP),
    "metaspace_always_nosplit": lambda: as_metadata(metaspace_style("always", False), **SPECIALS_SP),
}


@pytest.fixture(scope="session")
def smollm2_metadata(smollm2_path, tmp_path_factory):
    """SmolLM2-135M-Instruct's tokenizer as transformers reads it from the GGUF (about 6 s, once)."""
    fast = transformers.AutoTokenizer.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name)
    section = tokenizer_metadata(fast)
    config = {"vocab_size": 49152, "bos_token_id": fast.bos_token_id, "eos_token_id": [fast.eos_token_id]}
    return section, config


@pytest.fixture(scope="session")
def built(request):
    cache = {}

    def get(name):
        if name not in cache:
            if name == "smollm2":
                cache[name] = request.getfixturevalue("smollm2_metadata")
            elif name == "smollm2_digits":  # the layout of SmolLM2's own tokenizer.json
                section, config = request.getfixturevalue("smollm2_metadata")
                section = json.loads(json.dumps(section))
                section["tokenizer_json"]["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": True},
                    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
                cache[name] = section, config
            elif name == "tiny_metaspace":
                fast = tiny_tokenizer()
                cache[name] = tokenizer_metadata(fast), {"bos_token_id": 1, "eos_token_id": [2]}
            else:
                cache[name] = BUILDERS[name]()
        return cache[name]
    return get


TOKENIZERS = list(BUILDERS) + ["smollm2", "smollm2_digits"]


class Pair:
    """The C++ tokenizer and the Hugging Face ones for the same metadata."""

    def __init__(self, section, config):
        self.section = section
        self.ours = _awq_edge.Tokenizer.from_json(json.dumps(section), json.dumps(config))
        self.hf = tokenizer_from_metadata(section)                        # transformers, as evaluate.py builds it
        self.backend = Tokenizer.from_str(json.dumps(section["tokenizer_json"]))  # tokenizers itself
        self.added = [token["content"] for token in section["tokenizer_json"]["added_tokens"]]


@pytest.fixture(scope="module", params=TOKENIZERS)
def pair(request, built):
    return Pair(*built(request.param))


def corpus_for(pair: Pair) -> list[str]:
    """CORPUS plus texts with the tokenizer's own added tokens embedded, glued and spaced."""
    texts = CORPUS + ADDED_FLAG_TEXTS
    for token in pair.added[:6]:
        texts += [f"{token}", f"{token}Hello{token} world {token}\n{token}", f"x {token}  {token}{token}y",
                  f" {token} two words "]
    return texts


# ---------------------------------------------------------------------------------------------
# Encode and decode equal Hugging Face's
# ---------------------------------------------------------------------------------------------

def test_encode_matches_hugging_face(pair):
    for text in corpus_for(pair):
        for add_special_tokens in (True, False):
            expected = pair.hf(text, add_special_tokens=add_special_tokens)["input_ids"]
            assert pair.ours.encode(text, add_special_tokens) == expected, (text, add_special_tokens)


def test_encode_matches_on_random_unicode(pair):
    """Code points from every plane among spaces, digits and apostrophes: exercises the class tables."""
    rng = random.Random(0)
    pool = [chr(cp) for cp in range(0x20, 0x3_2000) if not 0xD800 <= cp < 0xE000]
    pool += list(" \t\n\r'0123456789") * 200
    for _ in range(30):
        text = "".join(rng.choice(pool) for _ in range(300))
        assert pair.ours.encode(text, False) == pair.backend.encode(text, add_special_tokens=False).ids


def test_decode_matches_hugging_face(pair):
    for text in corpus_for(pair):
        ids = pair.backend.encode(text).ids
        for skip in (False, True):
            assert pair.ours.decode(ids, skip) == pair.backend.decode(ids, skip_special_tokens=skip), (text, skip)


def test_decode_of_arbitrary_ids_matches_hugging_face(pair):
    """Random id sequences: split characters, stray byte tokens, special tokens anywhere."""
    rng = random.Random(1)
    size = pair.ours.vocab_size
    for _ in range(50):
        ids = [rng.randrange(size) for _ in range(rng.randrange(1, 40))]
        for skip in (False, True):
            assert pair.ours.decode(ids, skip) == pair.backend.decode(ids, skip_special_tokens=skip), (ids, skip)


def test_long_text_encodes_in_milliseconds(pair):
    import time
    text = PYDOC[:10_000]
    start = time.perf_counter()
    ids = pair.ours.encode(text)
    elapsed = time.perf_counter() - start
    assert ids == pair.hf(text)["input_ids"]
    assert elapsed < 0.05, f"10,000 characters took {elapsed * 1000:.1f} ms"


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------

def stream(pair: Pair, ids, skip: bool) -> list[str]:
    text_stream = _awq_edge.TextStream(pair.ours, skip)
    return [text_stream.push(i) for i in ids] + [text_stream.flush()]  # each is a str: valid UTF-8


@pytest.mark.parametrize("skip", [False, True])
def test_stream_concatenates_to_decode(pair, skip):
    rng = random.Random(2)
    sequences = [pair.ours.encode(text) for text in corpus_for(pair)]
    sequences += [[rng.randrange(pair.ours.vocab_size) for _ in range(60)] for _ in range(40)]
    for ids in sequences:
        pieces = stream(pair, ids, skip)
        assert "".join(pieces) == pair.backend.decode(ids, skip_special_tokens=skip), ids


def test_stream_holds_back_half_characters(built):
    """An emoji that byte-level BPE splits arrives whole, and only with its last byte."""
    pair = Pair(*built("gpt2"))
    ids = pair.ours.encode("a 🤗 b", False)
    pieces = stream(pair, ids, False)
    assert "".join(pieces) == "a 🤗 b"
    assert "\ufffd" not in "".join(pieces)
    assert any(piece.endswith("🤗") for piece in pieces)


def test_stream_of_sentencepiece_drops_the_leading_space(built):
    pair = Pair(*built("llama2"))
    ids = pair.ours.encode("Hello world", True)
    pieces = stream(pair, ids, True)
    assert "".join(pieces) == "Hello world"
    assert pieces[0] == "" or not pieces[0].startswith(" ")


# ---------------------------------------------------------------------------------------------
# Special ids and errors
# ---------------------------------------------------------------------------------------------

def test_special_ids(built):
    pair = Pair(*built("llama3"))
    bos = pair.backend.token_to_id("<|begin_of_text|>")
    assert pair.ours.bos_id == bos
    assert pair.ours.eos_ids == [pair.backend.token_to_id("<|eot_id|>")]
    assert pair.ours.is_special(bos) and not pair.ours.is_special(bos - 1)
    assert pair.ours.vocab_size == pair.backend.get_vocab_size()
    assert pair.ours.token_text(bos) == "<|begin_of_text|>"
    with pytest.raises(IndexError, match="token id 99999999"):
        pair.ours.decode([99999999])


def with_part(section: dict, part: str, value) -> str:
    section = json.loads(json.dumps(section))
    section["tokenizer_json"][part] = value
    return json.dumps(section)


def test_unsupported_parts_are_named(built):
    section, config = built("gpt2")
    with pytest.raises(ValueError, match="pre_tokenizer type 'Whitespace' is not supported"):
        _awq_edge.Tokenizer.from_json(with_part(section, "pre_tokenizer", {"type": "Whitespace"}), json.dumps(config))
    split = {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Isolated", "invert": False}
    with pytest.raises(ValueError, match=r"regex '\\w\+' is not supported"):
        _awq_edge.Tokenizer.from_json(with_part(section, "pre_tokenizer", split), json.dumps(config))
    with pytest.raises(ValueError, match="normalizer type 'NFKC' is not supported"):
        _awq_edge.Tokenizer.from_json(with_part(section, "normalizer", {"type": "NFKC"}), json.dumps(config))
    with pytest.raises(ValueError, match="decoder type 'WordPiece' is not supported"):
        _awq_edge.Tokenizer.from_json(with_part(section, "decoder", {"type": "WordPiece"}), json.dumps(config))

