"""`py-echo`: the echo provider (guests/echo) in Python. Deterministic, no network:
it answers with the last user message (prefixed by the config key `prefix`), counts
whitespace-separated words as tokens, honours `max_tokens` by truncating the answer
(finish reason `length`) and streams word by word.

For sandbox tests, request metadata `spin`="1" loops forever and `grow`="1"
allocates without bound.
"""

from dataclasses import dataclass
from typing import Iterator, List

from tamma_provider import (
    CompletionRequest, CompletionResponse, Config, FinishReason, Provider, ProviderError,
    StreamChunk, Usage, capabilities, chunk, count_words, export_provider, healthy,
    last_user_message, log, metadata, model, response, usage,
)

MODEL = "echo-1"


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
