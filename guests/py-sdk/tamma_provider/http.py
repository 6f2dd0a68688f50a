"""A small blocking HTTP client over ``wasi:http/outgoing-handler``.

Python's ``urllib``/``http.client`` need sockets, which a provider does not have;
every request goes through the host's egress policy instead (granted hosts only,
``{{secret:NAME}}`` placeholders in header values replaced by the host). The
guest is single-threaded and each wait blocks on a ``wasi:io`` pollable, which
the host turns into an async wait; the host's call deadline bounds everything,
so no timeouts are set here.

    from tamma_provider import http

    resp = http.request("POST", "https://api.example.com/v1/chat",
                        headers={"authorization": "Bearer {{secret:api_key}}"},
                        json={"prompt": "hi"})
    resp.raise_for_status()          # unsuccessful status -> ProviderError
    data = resp.json()               # or: for event in resp.sse(): ...
"""

from __future__ import annotations

import json as _json
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, streams
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingBody,
    IncomingResponse,
    Method_Delete,
    Method_Get,
    Method_Head,
    Method_Other,
    Method_Patch,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)

from . import ProviderError

#: ``blocking-write-and-flush`` accepts at most 4096 bytes per call (WASI 0.2).
WRITE_CHUNK = 4096
#: Bytes asked for per read of a response body.
READ_CHUNK = 64 * 1024
#: Largest body ``Response.read`` accepts (the host caps answers at a few MiB).
MAX_BODY_BYTES = 8 * 1024 * 1024

_METHODS = {
    "GET": Method_Get(), "POST": Method_Post(), "PUT": Method_Put(),
    "DELETE": Method_Delete(), "PATCH": Method_Patch(), "HEAD": Method_Head(),
}


def _transport_error(what: str, code: Any) -> ProviderError:
    name = type(code).__name__.replace("ErrorCode_", "")
    detail = f"{name}" if getattr(code, "value", None) is None else f"{name}({code.value})"
    if name in ("ConnectionTimeout", "ConnectionReadTimeout", "ConnectionWriteTimeout",
                "HttpResponseTimeout", "DnsTimeout"):
        return ProviderError.timeout(f"{what}: {detail}")
    return ProviderError.network(f"{what}: {detail}")


class Response:
    """A response whose body is read on demand (whole, by lines, or as SSE)."""

    def __init__(self, url: str, incoming: IncomingResponse):
        self._stream: Optional[streams.InputStream] = None
        self._body: Optional[IncomingBody] = None
        self._incoming: Optional[IncomingResponse] = None
        self.url = url
        self.status = incoming.status()
        with incoming.headers() as fields:
            self.headers: Dict[str, str] = {}
            for name, value in fields.entries():
                self.headers[name.lower()] = value.decode("latin-1")
        self._incoming = incoming
        self._body = incoming.consume()
        self._stream = self._body.stream()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives."""
        while self._stream is not None:
            try:
                data = self._stream.blocking_read(READ_CHUNK)
            except Err as e:
                self.close()
                if isinstance(e.value, streams.StreamError_Closed):
                    return
                raise ProviderError.network(f"reading the response from {self.url} failed")
            if data:
                yield data

    def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        out = bytearray()
        for data in self.chunks():
            out += data
            if len(out) > limit:
                self.close()
                raise ProviderError.provider(f"response from {self.url} exceeds {limit} bytes")
        return bytes(out)

    def text(self) -> str:
        return self.read().decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return _json.loads(self.read())
        except ValueError:
            raise ProviderError.provider(f"response from {self.url} is not JSON") from None

    def lines(self) -> Iterator[str]:
        """The body split into lines (``\\n``, ``\\r\\n`` or ``\\r``), without terminators."""
        buffer = b""
        for data in self.chunks():
            buffer += data
            *complete, buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            for line in complete:
                yield line.decode("utf-8", errors="replace")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")

    def sse(self) -> Iterator[Tuple[str, str]]:
        """Server-sent events as ``(event, data)``; comments and empty events skipped."""
        event, data = "", []  # type: str, List[str]
        for line in self.lines():
            if line == "":
                if data:
                    yield event or "message", "\n".join(data)
                event, data = "", []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    data.append(value)
                elif field == "event":
                    event = value
        if data:
            yield event or "message", "\n".join(data)

    def retry_after_ms(self) -> Optional[int]:
        """``retry-after-ms``, or ``retry-after`` in seconds."""
        for name, scale in (("retry-after-ms", 1), ("retry-after", 1000)):
            value = self.headers.get(name)
            if value is not None:
                try:
                    return int(float(value) * scale)
                except ValueError:
                    pass
        return None

    def raise_for_status(self) -> "Response":
        """Raise the provider error for an unsuccessful status (the body is read for
        the API's error message and code)."""
        if self.ok:
            return self
        text = self.read(64 * 1024).decode("utf-8", errors="replace")
        message, code = text[:500], None
        try:
            err = _json.loads(text).get("error")
            if isinstance(err, dict):
                message = str(err.get("message", message))
                code = err.get("code") or err.get("type")
        except (ValueError, AttributeError):
            pass
        raise ProviderError.from_http_status(self.status, message, upstream_code=code,
                                             retry_after_ms=self.retry_after_ms())

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Left to the garbage collector, the body and its stream could be dropped
        # parent first, which the host refuses ("resource has children": a trap).
        self.close()

    def close(self) -> None:
        """Release the body (child resources first, as WASI requires). Idempotent."""
        if self._stream is not None:
            self._stream.__exit__(None, None, None)
            self._stream = None
        if self._body is not None:
            self._body.__exit__(None, None, None)
            self._body = None
        if self._incoming is not None:
            self._incoming.__exit__(None, None, None)
            self._incoming = None


def request(method: str, url: str, *, headers: Optional[Mapping[str, str]] = None,
            body: Optional[bytes] = None, json: Any = None) -> Response:
    """Send a request and wait for the response headers. Transport failures
    (refused by the egress policy, DNS, connect, TLS) raise ``network-error`` or
    ``timeout``; any status is returned (see ``Response.raise_for_status``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProviderError.invalid_request(f"not an http(s) URL: {url}")
    entries: List[Tuple[str, bytes]] = [(k.lower(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if json is not None:
        body = _json.dumps(json).encode("utf-8")
        if not any(k == "content-type" for k, _ in entries):
            entries.append(("content-type", b"application/json"))
    try:
        fields = Fields.from_list(entries)
    except Err as e:
        raise ProviderError.invalid_request(f"invalid header: {type(e.value).__name__}") from None
    req = OutgoingRequest(fields)
    req.set_method(_METHODS.get(method.upper()) or Method_Other(method.upper()))
    req.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    req.set_authority(parts.netloc)
    req.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    out_body = req.body()
    what = f"{method.upper()} {parts.scheme}://{parts.netloc}{parts.path}"
    try:
        future = outgoing_handler.handle(req, None)
    except Err as e:
        out_body.__exit__(None, None, None)
        raise _transport_error(f"{what} refused", e.value) from None
    # Write the body after `handle` (the host reads it while sending), then finish it.
    write_failed = False
    if body:
        stream = out_body.write()
        try:
            for i in range(0, len(body), WRITE_CHUNK):
                stream.blocking_write_and_flush(body[i:i + WRITE_CHUNK])
        except Err:
            write_failed = True  # the request failed; the future says why
        finally:
            stream.__exit__(None, None, None)
    try:
        OutgoingBody.finish(out_body, None)
    except Err:
        write_failed = True
    with future:
        while True:
            result = future.get()
            if result is not None:
                break
            with future.subscribe() as pollable:
                pollable.block()
    if isinstance(result, Err) or isinstance(result.value, Err):
        code = result.value if isinstance(result, Err) else result.value.value
        raise _transport_error(f"{what} failed", code)
    if write_failed:
        raise ProviderError.network(f"{what}: sending the body failed")
    return Response(url, result.value.value)
