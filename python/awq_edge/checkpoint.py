"""Reading a source model one tensor at a time.

open_checkpoint(path) accepts
  - a Hugging Face model directory with *.safetensors (sharded or not): tensors are read lazily,
    one at a time, from memory-mapped files;
  - a Hugging Face model directory with pytorch_model*.bin: torch.load(mmap=True), also lazy;
  - a .gguf file: transformers loads and dequantizes the whole model (it has no lazy GGUF path) on
    the first tensor read, so peak memory for GGUF input is the whole model in float32.
Tensors are addressed by their Hugging Face state_dict names and returned as float32.
"""
from pathlib import Path

import torch

from .models import ModelConfig, UnsupportedModelError


class CheckpointError(ValueError):
    """The source model cannot be read."""


class Checkpoint:
    """Lazy access to one source model's tensors, config and tokenizer."""

    def __init__(self, path: Path, source_format: str, hf_config, tensor_reader, tokenizer_loader):
        self.path = path
        self.source_format = source_format  # "safetensors" | "pytorch_bin" | "gguf"
        self.hf_config = hf_config
        self.config = ModelConfig.from_hf(hf_config)  # raises UnsupportedModelError naming what is supported
        self._read = tensor_reader
        self._load_tokenizer = tokenizer_loader

    def tensor(self, hf_name: str) -> torch.Tensor:
        """float32 copy of one tensor; CheckpointError names a missing tensor."""
        try:
            return self._read(hf_name).to(torch.float32)
        except KeyError:
            raise CheckpointError(f"'{self.path}': tensor '{hf_name}' is missing from the checkpoint") from None

    def tokenizer(self):
        return self._load_tokenizer()


def open_checkpoint(path) -> Checkpoint:
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"model path '{path}' does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise CheckpointError(f"'{path}' is a file but not a .gguf file; give a Hugging Face model "
                                  f"directory (config.json + *.safetensors or pytorch_model*.bin) or a GGUF file")
        return _open_gguf(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"'{path}' has no config.json: not a Hugging Face model directory")
    from transformers import AutoConfig
    hf_config = AutoConfig.from_pretrained(path)
    safetensors_files = sorted(path.glob("*.safetensors"))
    bin_files = sorted(path.glob("pytorch_model*.bin"))
    if safetensors_files:
        reader = _safetensors_reader(safetensors_files)
        source_format = "safetensors"
    elif bin_files:
        reader = _torch_bin_reader(bin_files)
        source_format = "pytorch_bin"
    else:
        raise CheckpointError(f"'{path}' has neither *.safetensors nor pytorch_model*.bin weight files")
    return Checkpoint(path, source_format, hf_config, reader, lambda: _auto_tokenizer(path))


def _safetensors_reader(files):
    """Each read maps its shard only for that read and copies the tensor out: a mapping kept open
    would keep every page read so far resident, so RSS would grow with the number of layers."""
    from safetensors import safe_open
    where = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            where.update(dict.fromkeys(handle.keys(), str(f)))

    def read(name):
        with safe_open(where[name], framework="pt") as handle:
            return handle.get_tensor(name).to(torch.float32, copy=True)
    return read


def _torch_bin_reader(files):
    """As for safetensors: the shard is mapped (torch.load(mmap=True)) for one read at a time."""
    where = {}
    for f in files:
        where.update(dict.fromkeys(torch.load(f, map_location="cpu", mmap=True, weights_only=True), f))

    def read(name):
        return torch.load(where[name], map_location="cpu", mmap=True, weights_only=True)[name].to(
            torch.float32, copy=True)
    return read


def _auto_tokenizer(path):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as error:  # transformers raises many kinds; the message is what matters
        raise CheckpointError(f"'{path}': cannot load its tokenizer ({error})") from error


def _open_gguf(path: Path) -> Checkpoint:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    try:
        hf_config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as error:
        raise CheckpointError(f"'{path}': transformers cannot read this GGUF file ({error})") from error
    state = {}

    def read(name):
        if not state:  # the whole model, once, on the first read
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            state.update((key, tensor.detach()) for key, tensor in model.state_dict().items())
        return state[name]

    def load_tokenizer():
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return Checkpoint(path, "gguf", hf_config, read, load_tokenizer)


__all__ = ["Checkpoint", "CheckpointError", "UnsupportedModelError", "open_checkpoint"]
