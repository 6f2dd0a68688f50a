"""`py-echo`: the echo provider (guests/echo) in Python. Deterministic, no network:
it answers with the last user message (prefixed by the config key `prefix`), counts
whitespace-separated words as tokens, honours `max_tokens` by truncating the answer
(finish reason `length`) and streams word by word. Its embedding model
`echo-embed-1` gives a deterministic toy unit vector per input (FNV-1a of the text
and the component index), as the Rust echo does.

For sandbox tests, request metadata `spin`="1" loops forever and `grow`="1"
allocates without bound.
"""

from dataclasses import dataclass
from typing import Iterator, List

from tamma_provider import (
    CompletionRequest, CompletionResponse, Config, EmbeddingRequest, FinishReason, Provider,
    ProviderError, StreamChunk, Usage, capabilities, chunk, count_words, embedding_model,
    embedding_response, export_provider, healthy, last_user_message, log, metadata, model,
    response, usage,
)

MODEL = "echo-1"
EMBED_MODEL = "echo-embed-1"
EMBED_DIMENSIONS = 8
MAX_EMBED_DIMENSIONS = 4096


def toy_embedding(text: str, dimensions: int) -> List[float]:
    raw = []
    for i in range(dimensions):
        h = 0xCBF29CE484222325
        for b in text.encode() + i.to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        raw.append((h >> 40) / float(1 << 24) * 2.0 - 1.0)
    norm = sum(x * x for x in raw) ** 0.5
    return raw if norm == 0 else [x / norm for x in raw]


@dataclass
class Answer:
    id: str
    model: str
    words: List[str]
    finish_reason: FinishReason
    usage: Usage


class Echo(Provider):
    @classmethod
    def initialize(cls, config: Config) -> "Echo":
        return cls(config.get("prefix", ""))

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.counter = 0

    def capabilities(self):
        return capabilities([model(MODEL, name="Echo (Python)")], features=["deterministic"])

    def answer(self, request: CompletionRequest) -> Answer:
        misbehave_on_request(request)
        last = last_user_message(request)
        if last is None:
            raise ProviderError.invalid_request("the conversation has no user message")
        words = f"{self.prefix}{last}".split()
        finish = FinishReason.STOP
        if request.max_tokens is not None and len(words) > request.max_tokens:
            words = words[: request.max_tokens]
            finish = FinishReason.LENGTH
        self.counter += 1
        input_tokens = sum(count_words(m.content) for m in request.messages)
        return Answer(f"echo-{self.counter}", request.model or MODEL, words, finish,
                      usage(input_tokens, len(words)))

    def complete(self, request: CompletionRequest) -> CompletionResponse:
        a = self.answer(request)
        log.debug(f"echo answered {len(a.words)} words (finish: {a.finish_reason.name.lower()})",
                  id=a.id, model=a.model)
        return response(a.id, a.model, " ".join(a.words), finish_reason=a.finish_reason,
                        usage=a.usage)

    def stream(self, request: CompletionRequest) -> Iterator[StreamChunk]:
        a = self.answer(request)
        if not a.words:
            yield chunk(a.id, a.model, "", finish_reason=a.finish_reason, usage=a.usage)
            return
        for i, word in enumerate(a.words):
            last = i == len(a.words) - 1
            yield chunk(a.id, a.model, word if i == 0 else f" {word}",
                        finish_reason=a.finish_reason if last else None,
                        usage=a.usage if last else None)

    def embedding_models(self):
        return [embedding_model(EMBED_MODEL, EMBED_DIMENSIONS)]

    def embed(self, request: EmbeddingRequest):
        dimensions = request.dimensions if request.dimensions is not None else EMBED_DIMENSIONS
        if not 1 <= dimensions <= MAX_EMBED_DIMENSIONS:
            raise ProviderError.invalid_request(
                f"dimensions must be between 1 and {MAX_EMBED_DIMENSIONS}, got {dimensions}")
        vectors = [toy_embedding(t, dimensions) for t in request.inputs]
        tokens = sum(count_words(t) for t in request.inputs)
        return embedding_response(request.model or EMBED_MODEL, vectors, tokens)

    def health_check(self):
        return healthy("echo is ready")


def misbehave_on_request(request: CompletionRequest) -> None:
    """Exercise the sandbox limits on request."""
    if metadata(request, "spin") == "1":
        n = 0
        while True:
            n += 1
    if metadata(request, "grow") == "1":
        hoard = []
        while True:
            hoard.append(bytearray(b"\xa5" * (1 << 20)))


ProviderApi = export_provider(Echo)
Embeddings = ProviderApi.Embeddings
