"""`py-openai`: a provider for OpenAI-compatible chat-completions APIs, in Python.

Requests go over `wasi:http` (tamma_provider.http), hence through the host's egress
policy: only granted hosts are reachable, and the API key never enters the sandbox
— requests carry the placeholder `{{secret:NAME}}`, which the host replaces with
the provider's secret on the way out.

Configuration (all optional):
  base_url           API root, default https://api.openai.com/v1
  api_key_secret     name of the host secret sent as the bearer token, default api_key
  model              model used when a request names none
  models             comma-separated model ids advertised by `capabilities`
  context_window     context window reported for those models (default 128000)
  max_output_tokens  output limit reported for those models (default 4096)
  organization       sent as `OpenAI-Organization`
"""

import json
import re
from typing import Any, Dict, Iterator, List, Optional

from tamma_provider import (
    CompletionRequest, CompletionResponse, Config, FinishReason, Message, ModelInfo,
    Provider, ProviderError, StreamChunk, ToolCall, ToolCallDelta, Usage, capabilities,
    chunk, degraded, export_provider, healthy, http, log, metadata, model, response,
    unhealthy, usage,
)
from tamma_provider import ErrorCode

FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}

SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class OpenAI(Provider):
    @classmethod
    def initialize(cls, config: Config) -> "OpenAI":
        base_url = (config.get("base_url") or "https://api.openai.com/v1").rstrip("/")
        if not re.match(r"^https?://[^/]+", base_url):
            raise ProviderError.invalid_request(f"base_url must be an http(s) URL, got `{base_url}`")
        secret = config.get("api_key_secret", "api_key")
        if not SECRET_NAME.match(secret):
            raise ProviderError.invalid_request(f"api_key_secret `{secret}` is not a valid secret name")
        return cls(base_url, secret, config)

    def __init__(self, base_url: str, secret: str, config: Config):
        self.base_url = base_url
        self.secret = secret
        self.default_model = config.get("model", "")
        self.models = config.list("models")
        self.context_window = config.int("context_window", 128000)
        self.max_output_tokens = config.int("max_output_tokens", 4096)
        self.organization = config.get("organization")

    def model_info(self, id: str) -> ModelInfo:
        return model(id, context_window=self.context_window,
                     max_output_tokens=self.max_output_tokens, tools=True)

    def capabilities(self):
        return capabilities([self.model_info(m) for m in self.models], streaming=True, tools=True,
                            max_context_tokens=self.context_window,
                            max_output_tokens=self.max_output_tokens,
                            features=["openai-compatible"])

    def headers(self, **extra: str) -> Dict[str, str]:
        # The host substitutes the secret; the guest never sees the key.
        h = {"authorization": f"Bearer {{{{secret:{self.secret}}}}}", "accept": "application/json"}
        if self.organization:
            h["openai-organization"] = self.organization
        h.update(extra)
        return h

    def send(self, method: str, path: str, body: Any = None, **headers: str) -> http.Response:
        resp = http.request(method, self.base_url + path, headers=self.headers(**headers), json=body)
        return resp.raise_for_status()

    def body(self, request: CompletionRequest, stream: bool) -> Dict[str, Any]:
        model_id = request.model or self.default_model
        if not model_id:
            raise ProviderError.invalid_request("no model: set request.model or config `model`")
        if not request.messages:
            raise ProviderError.invalid_request("the conversation is empty")
        body: Dict[str, Any] = {"model": model_id,
                                "messages": [to_openai_message(m) for m in request.messages]}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": parse_json(t.parameters_schema, f"schema of tool {t.name}")}}
                for t in request.tools]
        user = metadata(request, "user")
        if user is not None:
            body["user"] = user
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def complete(self, request: CompletionRequest) -> CompletionResponse:
        data = self.send("POST", "/chat/completions", self.body(request, False)).json()
        choices = data.get("choices") or []
        if not choices:
            raise ProviderError.provider("upstream answered without choices")
        choice = choices[0]
        message = choice.get("message") or {}
        calls = [ToolCall(str(c.get("id", "")), str((c.get("function") or {}).get("name", "")),
                          str((c.get("function") or {}).get("arguments", "")))
                 for c in message.get("tool_calls") or []]
        return response(str(data.get("id", "")), str(data.get("model", request.model)),
                        message.get("content") or "",
                        finish_reason=FINISH.get(choice.get("finish_reason"), FinishReason.STOP),
                        usage=to_usage(data.get("usage")), tool_calls=calls)

    def stream(self, request: CompletionRequest) -> Iterator[StreamChunk]:
        """One chunk per event with content or tool-call fragments; the chunk with
        the finish reason is held back until the usage event so it carries both."""
        with self.send("POST", "/chat/completions", self.body(request, True),
                       accept="text/event-stream") as resp:
            yield from self.chunks(request, resp)

    def chunks(self, request: CompletionRequest, resp: http.Response) -> Iterator[StreamChunk]:
        id, model_id = "", request.model or self.default_model
        held: Optional[StreamChunk] = None
        done = False
        for _event, data in resp.sse():
            if data == "[DONE]":
                done = True
                break
            ev = parse_json(data, "stream event")
            err = ev.get("error")
            if err:
                status = err.get("status") if isinstance(err.get("status"), int) else 500
                raise ProviderError.from_http_status(status, str(err.get("message", "stream error")),
                                                     upstream_code=err.get("code") or err.get("type"))
            id = str(ev.get("id", id))
            model_id = str(ev.get("model", model_id))
            u = to_usage(ev["usage"]) if ev.get("usage") else None
            choices = ev.get("choices") or []
            if held is not None and u is not None:
                held.usage = u
                continue
            if not choices:
                continue
            choice = choices[0]
            delta = choice.get("delta") or {}
            deltas = [ToolCallDelta(int(t.get("index", 0)), t.get("id"),
                                    (t.get("function") or {}).get("name"),
                                    str((t.get("function") or {}).get("arguments") or ""))
                      for t in delta.get("tool_calls") or []]
            c = chunk(id, model_id, delta.get("content") or "", tool_call_deltas=deltas, usage=u)
            if choice.get("finish_reason"):
                c.finish_reason = FINISH.get(choice["finish_reason"], FinishReason.STOP)
                if held is not None:
                    yield held
                held = c
                continue
            if held is not None:
                yield held
                held = None
            if c.delta or c.tool_call_deltas or c.usage:
                yield c
        if held is not None:
            yield held
        elif not done:
            raise ProviderError.network("the upstream stream ended before it finished")

    def list_models(self) -> List[ModelInfo]:
        data = self.send("GET", "/models").json()
        if not isinstance(data.get("data"), list):
            raise ProviderError.provider("model list without `data`")
        return [self.model_info(str(m.get("id"))) for m in data["data"]]

    def health_check(self):
        # GET /models: proves reachability and credentials without spending tokens.
        try:
            resp = self.send("GET", "/models")
            resp.read()
            return healthy(f"{self.base_url} answered {resp.status}")
        except ProviderError as e:
            log.warn("health check failed", code=e.code.name.lower())
            if e.code in (ErrorCode.RATE_LIMIT_EXCEEDED, ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.TIMEOUT):
                return degraded(e.message)
            return unhealthy(e.message)


def to_openai_message(m: Message) -> Dict[str, Any]:
    out: Dict[str, Any] = {"role": m.role.name.lower(), "content": m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
        if m.content == "":
            out["content"] = None
    return out


def to_usage(u: Optional[Dict[str, Any]]) -> Usage:
    if not u:
        return usage(0, 0)
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
    return usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)),
                 cache_read=None if cached is None else int(cached))


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ProviderError.provider(f"upstream {what} is not JSON") from None


ProviderApi = export_provider(OpenAI)
Embeddings = ProviderApi.Embeddings
