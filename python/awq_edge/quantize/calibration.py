"""Calibration samples: token windows cut from text."""
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..corpus import read_texts


@dataclass
class Calibration:
    tokens: torch.Tensor  # (n_samples, seqlen) int64
    source: str

    def summary(self) -> dict:
        ids = self.tokens.numpy().astype("<i4")
        return {"source": self.source, "n_samples": int(ids.shape[0]), "seqlen": int(ids.shape[1]),
                "n_tokens": int(ids.size), "sha256": hashlib.sha256(ids.tobytes()).hexdigest()}


def calibration_samples(tokenizer, sources, n_samples: int = 128, seqlen: int = 512, seed: int = 0) -> Calibration:
    """Tokenize the texts, cut them into non-overlapping windows of `seqlen`, take `n_samples` of them."""
    if n_samples < 1 or seqlen < 2:
        raise ValueError(f"need n_samples >= 1 and seqlen >= 2, got {n_samples} and {seqlen}")
    sources = [sources] if isinstance(sources, str) else list(sources)
    ids = []
    for source in sources:
        ids.extend(tokenizer(read_texts(source), add_special_tokens=False)["input_ids"])
    windows = len(ids) // seqlen
    if windows < n_samples:
        raise ValueError(f"calibration text ({', '.join(sources)}) has {len(ids)} tokens, fewer than "
                         f"n_samples x seqlen = {n_samples} x {seqlen}; give more text or lower "
                         f"--n-samples / --seqlen (at most {windows} samples of {seqlen} fit)")
    chosen = np.sort(np.random.default_rng(seed).choice(windows, size=n_samples, replace=False))
    tokens = torch.tensor(ids[: windows * seqlen], dtype=torch.int64).view(windows, seqlen)[chosen]
    return Calibration(tokens, "+".join(sources))
