"""Helpers for Tamma providers written in Python (componentize-py).

A provider is a class; ``export_provider(MyProvider)`` turns it into the
``ProviderApi`` class that componentize-py looks for in the app module::

    from tamma_provider import Provider, ProviderError, export_provider, capabilities, model

    class Hello(Provider):
        @classmethod
        def initialize(cls, config):
            return cls()

        def capabilities(self):
            return capabilities([model("hello-1")])

        def complete(self, request):
            return response("id-1", request.model, "hi", usage=usage(1, 1))

    ProviderApi = export_provider(Hello)
    Embeddings = ProviderApi.Embeddings   # the `embeddings` export (contract 0.2.0)

What ``export_provider`` adds, like the Rust SDK's ``export_provider!``:

- ``initialize`` receives a :class:`Config` (lookup with defaults, required keys);
- a raised :class:`ProviderError` becomes the WIT ``provider-error``; any other
  exception becomes ``provider-error`` with code ``provider-error`` (the instance
  survives; the traceback's last line is in the message);
- ``stream`` may return a list, an iterator or a generator of chunks; the first
  chunk is pulled before ``stream`` returns, so an error before any output is an
  error of ``stream`` itself;
- ``list_models``, ``stream`` (one chunk from ``complete``), ``health_check`` and
  ``dispose`` have defaults in :class:`Provider`;
- ``embedding_models`` (none) and ``embed`` (``invalid-request``: "embeddings are
  not supported by this provider") have defaults too; the returned class carries
  the ``Embeddings`` export class, which the app module must bind at top level.

The WIT types (``CompletionRequest``, ``StreamChunk``, ``Role``, ``FinishReason``...)
are re-exported from the bindings componentize-py generates.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.exports import embeddings as _embeddings
from wit_world.exports import provider_api as _provider_api
from wit_world.exports.embeddings import (
    EmbeddingModelInfo,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from wit_world.imports import host as _host
from wit_world.imports.tamma_provider_types import (
    Capabilities,
    CompletionRequest,
    CompletionResponse,
    ErrorCode,
    FinishReason,
    Health,
    HealthStatus,
    Message,
    ModelInfo,
    ProviderError as WitProviderError,
    Role,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
)

__all__ = [
    "Capabilities", "CompletionRequest", "CompletionResponse", "ErrorCode", "FinishReason",
    "Health", "HealthStatus", "Message", "ModelInfo", "Role", "StreamChunk", "ToolCall",
    "ToolCallDelta", "ToolDefinition", "Usage",
    "EmbeddingModelInfo", "EmbeddingRequest", "EmbeddingResponse", "EmbeddingUsage",
    "embedding_model", "embedding_response",
    "Config", "Provider", "ProviderError", "export_provider", "log",
    "capabilities", "model", "usage", "response", "chunk", "healthy", "degraded", "unhealthy",
    "count_words", "last_user_message", "metadata", "http",
]

_RETRYABLE = {
    ErrorCode.RATE_LIMIT_EXCEEDED,
    ErrorCode.NETWORK_ERROR,
    ErrorCode.TIMEOUT,
    ErrorCode.SERVICE_UNAVAILABLE,
}


class ProviderError(Exception):
    """A failure reported by the provider; becomes the WIT ``provider-error``."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: Optional[bool] = None,
                 retry_after_ms: Optional[int] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = code in _RETRYABLE if retryable is None else retryable
        self.retry_after_ms = retry_after_ms

    def __str__(self) -> str:
        return f"{self.code.name.lower().replace('_', '-')}: {self.message}"

    @classmethod
    def rate_limited(cls, message: str, retry_after_ms: Optional[int] = None) -> "ProviderError":
        return cls(ErrorCode.RATE_LIMIT_EXCEEDED, message, retry_after_ms=retry_after_ms)

    @classmethod
    def invalid_api_key(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.INVALID_API_KEY, message)

    @classmethod
    def model_not_found(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.MODEL_NOT_FOUND, message)

    @classmethod
    def context_too_long(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.CONTEXT_TOO_LONG, message)

    @classmethod
    def network(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.NETWORK_ERROR, message)

    @classmethod
    def timeout(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.TIMEOUT, message)

    @classmethod
    def invalid_request(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.INVALID_REQUEST, message)

    @classmethod
    def provider(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.PROVIDER_ERROR, message)

    @classmethod
    def quota_exceeded(cls, message: str) -> "ProviderError":
        return cls(ErrorCode.QUOTA_EXCEEDED, message)

    @classmethod
    def unavailable(cls, message: str, retry_after_ms: Optional[int] = None) -> "ProviderError":
        return cls(ErrorCode.SERVICE_UNAVAILABLE, message, retry_after_ms=retry_after_ms)

    @classmethod
    def from_http_status(cls, status: int, message: str, *, upstream_code: Optional[str] = None,
                         retry_after_ms: Optional[int] = None) -> "ProviderError":
        """The error for an unsuccessful upstream HTTP status (OpenAI-style APIs)."""
        msg = f"upstream answered {status}: {message}"
        code = upstream_code or ""
        if code == "insufficient_quota":
            return cls.quota_exceeded(msg)
        if code == "context_length_exceeded":
            return cls.context_too_long(msg)
        if code == "model_not_found":
            return cls.model_not_found(msg)
        if status in (400, 413, 422):
            return cls.invalid_request(msg)
        if status in (401, 403):
            return cls.invalid_api_key(msg)
        if status == 404:
            return cls.model_not_found(msg)
        if status in (408, 504):
            return cls(ErrorCode.TIMEOUT, msg, retry_after_ms=retry_after_ms)
        if status == 429:
            return cls.rate_limited(msg, retry_after_ms)
        if status == 402:
            return cls.quota_exceeded(msg)
        if status >= 500:
            return cls.unavailable(msg, retry_after_ms)
        return cls(ErrorCode.PROVIDER_ERROR, msg, retryable=False)

    def to_wit(self) -> WitProviderError:
        after = None if self.retry_after_ms is None else max(0, int(self.retry_after_ms))
        return WitProviderError(self.code, str(self.message), bool(self.retryable), after)


def _to_wit_error(e: BaseException) -> WitProviderError:
    if isinstance(e, ProviderError):
        return e.to_wit()
    if isinstance(e, Err) and isinstance(e.value, WitProviderError):
        return e.value
    return ProviderError(ErrorCode.PROVIDER_ERROR,
                         f"uncaught exception in provider: {type(e).__name__}: {e}",
                         retryable=False).to_wit()


# ---------------------------------------------------------------------------
# Logging

class _Log:
    """Structured logs, attributed by the host to this provider:
    ``log.info("message", key="value")``."""

    @staticmethod
    def _at(level: _host.LogLevel, message: str, fields: Mapping[str, Any]) -> None:
        _host.log(level, str(message), [(k, str(v)) for k, v in fields.items()])

    def trace(self, message: str, **fields: Any) -> None:
        self._at(_host.LogLevel.TRACE, message, fields)

    def debug(self, message: str, **fields: Any) -> None:
        self._at(_host.LogLevel.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._at(_host.LogLevel.INFO, message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        self._at(_host.LogLevel.WARN, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._at(_host.LogLevel.ERROR, message, fields)


log = _Log()


# ---------------------------------------------------------------------------
# Configuration

class Config:
    """The key/values given to ``initialize``."""

    def __init__(self, entries: Sequence[Tuple[str, str]]):
        self.entries = list(entries)
        self._map = dict(self.entries)

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self._map.get(key, default)

    def require(self, key: str) -> str:
        if key not in self._map:
            raise ProviderError.invalid_request(f"missing configuration key `{key}`")
        return self._map[key]

    def int(self, key: str, default: int) -> int:
        value = self._map.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ProviderError.invalid_request(
                f"configuration key `{key}` must be an integer, got `{value}`") from None

    def list(self, key: str) -> List[str]:
        return [s.strip() for s in self._map.get(key, "").split(",") if s.strip()]

    def __contains__(self, key: str) -> bool:
        return key in self._map


# ---------------------------------------------------------------------------
# Building WIT values

def count_words(text: str) -> int:
    """Tokens counted as whitespace-separated words."""
    return len(text.split())


def last_user_message(request: CompletionRequest) -> Optional[str]:
    for m in reversed(request.messages):
        if m.role == Role.USER:
            return m.content
    return None


def metadata(request: CompletionRequest, key: str) -> Optional[str]:
    for k, v in request.metadata:
        if k == key:
            return v
    return None


def usage(input_tokens: int, output_tokens: int, *, cache_read: Optional[int] = None,
          cache_write: Optional[int] = None) -> Usage:
    return Usage(input_tokens, output_tokens, input_tokens + output_tokens, cache_read, cache_write)


def model(id: str, *, name: Optional[str] = None, context_window: int = 8192,
          max_output_tokens: int = 4096, streaming: bool = True, images: bool = False,
          tools: bool = False) -> ModelInfo:
    return ModelInfo(id, name or id, context_window, max_output_tokens, streaming, images, tools)


def capabilities(models: List[ModelInfo], *, features: Iterable[str] = (),
                 streaming: Optional[bool] = None, images: Optional[bool] = None,
                 tools: Optional[bool] = None, max_context_tokens: Optional[int] = None,
                 max_output_tokens: Optional[int] = None) -> Capabilities:
    """Capabilities derived from the models (flags are the OR, sizes the max)."""
    return Capabilities(
        streaming if streaming is not None else (not models or any(m.supports_streaming for m in models)),
        images if images is not None else any(m.supports_images for m in models),
        tools if tools is not None else any(m.supports_tools for m in models),
        max_context_tokens if max_context_tokens is not None else max((m.context_window for m in models), default=0),
        max_output_tokens if max_output_tokens is not None else max((m.max_output_tokens for m in models), default=0),
        models,
        list(features),
    )


def response(id: str, model: str, content: str, *, finish_reason: FinishReason = FinishReason.STOP,
             usage: Optional[Usage] = None, tool_calls: Optional[List[ToolCall]] = None) -> CompletionResponse:
    return CompletionResponse(id, model, content, tool_calls or [], finish_reason,
                              usage or Usage(0, 0, 0, None, None))


def chunk(id: str, model: str, delta: str, *, finish_reason: Optional[FinishReason] = None,
          usage: Optional[Usage] = None, tool_call_deltas: Optional[List[ToolCallDelta]] = None) -> StreamChunk:
    return StreamChunk(id, model, delta, tool_call_deltas or [], finish_reason, usage)


def embedding_model(id: str, dimensions: int, *, name: Optional[str] = None,
                    max_input_tokens: int = 8192) -> EmbeddingModelInfo:
    return EmbeddingModelInfo(id, name or id, dimensions, max_input_tokens)


def embedding_response(model: str, vectors: List[List[float]],
                       input_tokens: int) -> EmbeddingResponse:
    return EmbeddingResponse(model, vectors, EmbeddingUsage(input_tokens, input_tokens))


def healthy(message: str = "ok") -> Health:
    return Health(HealthStatus.HEALTHY, message)


def degraded(message: str) -> Health:
    return Health(HealthStatus.DEGRADED, message)


def unhealthy(message: str) -> Health:
    return Health(HealthStatus.UNHEALTHY, message)


# ---------------------------------------------------------------------------
# The provider and its export

ChunkSource = Union[Iterable[StreamChunk], Iterator[StreamChunk]]


class Provider:
    """Base class with the optional methods' defaults. Subclasses implement
    ``initialize`` (a classmethod returning an instance), ``capabilities`` and
    ``complete``."""

    @classmethod
    def initialize(cls, config: Config) -> "Provider":
        raise NotImplementedError

    def capabilities(self) -> Capabilities:
        raise NotImplementedError

    def complete(self, request: CompletionRequest) -> CompletionResponse:
        raise NotImplementedError

    def list_models(self) -> List[ModelInfo]:
        return self.capabilities().models

    def stream(self, request: CompletionRequest) -> ChunkSource:
        """Default: the whole answer as one chunk."""
        r = self.complete(request)
        deltas = [ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(r.tool_calls)]
        return [chunk(r.id, r.model, r.content, finish_reason=r.finish_reason, usage=r.usage,
                      tool_call_deltas=deltas)]

    def embedding_models(self) -> List[EmbeddingModelInfo]:
        return []

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        raise ProviderError.invalid_request("embeddings are not supported by this provider")

    def health_check(self) -> Health:
        return healthy("ready")

    def dispose(self) -> None:
        pass


_END = object()


class _Stream(_provider_api.CompletionStream):
    def __init__(self, iterator: Iterator[StreamChunk], first: Any):
        self._iterator = iterator
        self._pending = first

    def next(self) -> Optional[StreamChunk]:
        if self._pending is not None:
            item, self._pending = self._pending, None
        else:
            try:
                item = next(self._iterator, _END)
            except BaseException as e:  # noqa: BLE001 - every failure becomes a provider error
                raise Err(_to_wit_error(e))
        if item is _END:
            self._pending = None
            self._iterator = iter(())
            return None
        return item


def export_provider(cls: type) -> type:
    """The ``ProviderApi`` class componentize-py instantiates for the export."""

    state: dict = {"provider": None}

    def current() -> Any:
        p = state["provider"]
        if p is None:
            raise ProviderError.provider("provider used before initialize")
        return p

    def guarded(f, *args):
        try:
            return f(*args)
        except BaseException as e:  # noqa: BLE001
            raise Err(_to_wit_error(e))

    class ProviderApi(_exports.ProviderApi):
        def initialize(self, config: List[Tuple[str, str]]) -> None:
            def init() -> None:
                state["provider"] = cls.initialize(Config(config))
            guarded(init)

        def capabilities(self) -> Capabilities:
            return current().capabilities()

        def list_models(self) -> List[ModelInfo]:
            return guarded(lambda: current().list_models())

        def complete(self, request: CompletionRequest) -> CompletionResponse:
            return guarded(lambda: current().complete(request))

        def stream(self, request: CompletionRequest) -> _provider_api.CompletionStream:
            def start() -> _Stream:
                it = iter(current().stream(request))
                return _Stream(it, next(it, _END))
            return guarded(start)

        def health_check(self) -> Health:
            p = state["provider"]
            if p is None:
                return unhealthy("not initialized")
            try:
                return p.health_check()
            except BaseException as e:  # noqa: BLE001
                return unhealthy(_to_wit_error(e).message)

        def dispose(self) -> None:
            p, state["provider"] = state["provider"], None
            if p is not None:
                try:
                    p.dispose()
                except BaseException:  # noqa: BLE001 - nothing to report to
                    pass

    class Embeddings(_exports.Embeddings):
        def models(self) -> List[EmbeddingModelInfo]:
            p = state["provider"]
            if p is None:
                return []
            try:
                return p.embedding_models()
            except BaseException:  # noqa: BLE001 - infallible in WIT: list none
                return []

        def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
            return guarded(lambda: current().embed(request))

    ProviderApi.__name__ = "ProviderApi"
    ProviderApi.Embeddings = Embeddings
    return ProviderApi
from . import http  # noqa: E402  (needs ProviderError above)
