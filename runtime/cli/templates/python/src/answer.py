"""The provider's logic, pure (no ``tamma_provider`` imports), so the unit tests
run it on the host with plain ``python``."""

from typing import List


def reply(prefix: str, prompt: str) -> str:
    """The answer to ``prompt``."""
    return f"{prefix}{prompt}"


def embed_text(text: str, dimensions: int) -> List[float]:
    """A toy embedding: letter counts folded into ``dimensions`` buckets, scaled to
    length 1. Replace it with a call to a real embedding model."""
    v = [0.0] * dimensions
    for ch in text.lower():
        v[ord(ch) % dimensions] += 1.0
    norm = sum(x * x for x in v) ** 0.5
    return v if norm == 0 else [x / norm for x in v]
