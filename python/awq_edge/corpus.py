"""The built-in text: CPython's own pydoc topics (about 465k characters of English).

Split at a topic boundary into a calibration part (the first 60% of the characters)
and a disjoint evaluation part (the rest), so perplexity is never measured on the
text the quantizer calibrated on.
"""
from pathlib import Path

CALIBRATION_FRACTION = 0.6
BUILTIN_CALIBRATION = "builtin:pydoc-topics/calibration"
BUILTIN_EVALUATION = "builtin:pydoc-topics/evaluation"


def _topics() -> list:
    from pydoc_data.topics import topics
    return [topics[key] for key in sorted(topics)]


def builtin_split(part: str) -> str:
    """part: "calibration" | "evaluation"."""
    texts = _topics()
    total = sum(len(t) for t in texts)
    cut, seen = len(texts), 0
    for index, text in enumerate(texts):
        if seen >= CALIBRATION_FRACTION * total:
            cut = index
            break
        seen += len(text)
    chosen = texts[:cut] if part == "calibration" else texts[cut:]
    return "\n\n".join(chosen)


def read_texts(source) -> str:
    """A built-in name, a text file, or a directory (all *.txt / *.md files in it, sorted)."""
    source = str(source)
    if source == BUILTIN_CALIBRATION:
        return builtin_split("calibration")
    if source == BUILTIN_EVALUATION:
        return builtin_split("evaluation")
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
        if not files:
            raise FileNotFoundError(f"text directory '{path}' has no .txt or .md files")
        return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    raise FileNotFoundError(f"text source '{source}' is neither a file, a directory nor "
                            f"{BUILTIN_CALIBRATION} / {BUILTIN_EVALUATION}")
