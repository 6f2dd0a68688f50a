//! A small blocking HTTP client over `wasi:http/outgoing-handler`, for providers.
//!
//! ```ignore
//! use tamma_guest_sdk::http::{Request, status_error};
//!
//! let resp = Request::post("https://api.example.com/v1/chat")
//!     // Secrets never enter the guest: the host replaces the placeholder when the
//!     // request leaves the sandbox (see the egress policy).
//!     .header("authorization", "Bearer {{secret:api_key}}")
//!     .json_body(br#"{"prompt":"hi"}"#.to_vec())
//!     .send()?;                       // transport failures -> network-error / timeout
//! if !resp.is_success() {
//!     let retry = resp.retry_after_ms();
//!     let status = resp.status();
//!     let text = resp.text()?;
//!     return Err(status_error(status, text, retry));
//! }
//! let body = resp.read_body()?;        // whole body, capped at DEFAULT_MAX_BODY_BYTES
//! // or, for a stream: let mut events = resp.into_sse(); events.next_event()?
//! ```
//!
//! Everything blocks the (single-threaded) guest: the host turns each wait into an
//! async wait on its side, and bounds the whole call with its own deadline, so the
//! client sets no timeouts of its own ("timeouts are the host's business").
//!
//! The parts that do not touch WASI — [`Url`], [`Headers`], [`parse_retry_after`],
//! [`status_error`], [`transport_error`] and [`SseReader`] over any [`ByteSource`] —
//! are plain Rust and tested with `cargo test -p tamma-guest-sdk` on the host.

use std::collections::VecDeque;

use crate::sse::{SseEvent, SseParser};
use crate::wasi::http::types as wt;
use crate::{ErrorCode, Health, ProviderError};

/// Largest body [`Response::read_body`] accepts, bytes. The host caps a whole answer
/// at a few MiB anyway; reading more would only push the guest towards its memory
/// limit (a trap) instead of a clear error.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Bytes asked for per read of a response body.
const READ_CHUNK: u64 = 64 * 1024;

/// `blocking-write-and-flush` accepts at most 4096 bytes per call (WASI 0.2).
const WRITE_CHUNK: usize = 4096;

/// An HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
    /// HEAD
    Head,
}

/// URL scheme accepted by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

/// An absolute `http(s)://authority/path?query` URL, split the way `wasi:http`
/// wants it. Parsing is deliberately strict: a provider's `base_url` comes from
/// configuration, and a clear `invalid-request` at `initialize` beats a confusing
/// transport error later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// `host[:port]` (IPv6 hosts in brackets).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute http or https URL.
    pub fn parse(url: &str) -> Result<Url, ProviderError> {
        let bad = |why: &str| ProviderError::invalid_request(format!("invalid URL `{url}`: {why}"));
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some(_) => return Err(bad("only http and https are supported")),
            None => return Err(bad("expected http://host/path or https://host/path")),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            // Credentials belong in secrets, never in a URL the guest can see.
            return Err(bad("user info in URLs is not supported"));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("whitespace in host"));
        }
        // The fragment is never sent.
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        if path_and_query
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("whitespace in path"));
        }
        Ok(Url {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

/// `base` and `path` joined with exactly one `/` between them:
/// `join_url("http://h/v1/", "/models") == "http://h/v1/models"`.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Response (or request) headers: names lowercased, values as text (bytes that are
/// not UTF-8 are replaced).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Headers from name/value pairs (names are lowercased).
    pub fn new<K: AsRef<str>, V: Into<String>>(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        Headers(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
                .collect(),
        )
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every name/value pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How long the server asks the client to wait, in ms: see [`parse_retry_after`].
    /// An HTTP-date is compared with the guest's wall clock.
    pub fn retry_after_ms(&self) -> Option<u64> {
        parse_retry_after(
            self.get("retry-after-ms"),
            self.get("retry-after"),
            now_unix_secs(),
        )
    }
}

fn now_unix_secs() -> u64 {
    // Only meaningful inside a component; on the host (unit tests) the import does
    // not exist, and HTTP-dates are then treated as "now".
    #[cfg(target_arch = "wasm32")]
    {
        crate::wasi::clocks::wall_clock::now().seconds
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// The wait, in ms, that a server asks for with `retry-after-ms` (milliseconds, as
/// OpenAI sends it; decimals allowed) or else `retry-after` (whole or decimal
/// seconds, or an HTTP-date, compared with `now_unix_secs`). `None` when neither is
/// present or parseable. Capped at one day: a larger value is a server bug, and the
/// host should not park a provider for longer on its say-so.
pub fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now_unix_secs: u64,
) -> Option<u64> {
    const CAP_MS: u64 = 24 * 3600 * 1000;
    let number = |s: &str| -> Option<f64> {
        let v: f64 = s.trim().parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    if let Some(ms) = retry_after_ms.and_then(number) {
        return Some((ms.ceil() as u64).min(CAP_MS));
    }
    let value = retry_after?.trim();
    if let Some(secs) = number(value) {
        return Some(((secs * 1000.0).ceil() as u64).min(CAP_MS));
    }
    let at = parse_http_date(value)?;
    Some(
        at.saturating_sub(now_unix_secs)
            .saturating_mul(1000)
            .min(CAP_MS),
    )
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only HTTP-date form
/// servers may send, into Unix seconds.
fn parse_http_date(s: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || h > 23
        || m > 59
        || sec > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), valid for year >= 1970.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146097 + doe).checked_sub(719468)?;
    Some(days * 86400 + h * 3600 + m * 60 + sec)
}

/// The usual meaning of an HTTP error status, as a [`ProviderError`] carrying
/// `message` (the upstream's own explanation, ideally):
///
/// | status | code | retryable |
/// |---|---|---|
/// | 401, 403 | `invalid-api-key` | no |
/// | 404 | `model-not-found` | no |
/// | 408 | `timeout` | yes |
/// | 413 | `invalid-request` (body too large) | no |
/// | 429 | `rate-limit-exceeded` (+ `retry_after_ms`) | yes |
/// | other 4xx | `invalid-request` | no |
/// | 5xx, 529 | `service-unavailable` (+ `retry_after_ms`) | yes |
/// | anything else | `provider-error` | no |
///
/// Providers refine it where their API says more (a 400 about the context length is
/// `context-too-long`, a 429 about quota is `quota-exceeded`, a 404 that is not about
/// a model is a configuration problem).
pub fn status_error(
    status: u16,
    message: impl Into<String>,
    retry_after_ms: Option<u64>,
) -> ProviderError {
    let message = message.into();
    let message = if message.trim().is_empty() {
        format!("upstream answered HTTP {status}")
    } else {
        format!("upstream answered HTTP {status}: {message}")
    };
    let code = match status {
        401 | 403 => ErrorCode::InvalidApiKey,
        404 => ErrorCode::ModelNotFound,
        408 => ErrorCode::Timeout,
        429 => ErrorCode::RateLimitExceeded,
        400..=499 => ErrorCode::InvalidRequest,
        500..=599 => ErrorCode::ServiceUnavailable,
        _ => ErrorCode::ProviderError,
    };
    let err = ProviderError::from_code(code, message);
    if code.default_retryable() {
        err.with_retry_after_ms(retry_after_ms)
    } else {
        err
    }
}

/// The health of an upstream from its answer to `probe`, a request that costs no
/// tokens (such as `GET /models`), given as what [`Request::send`] returned:
///
/// | answer | health |
/// |---|---|
/// | not sent | unhealthy (unreachable) |
/// | 2xx | healthy |
/// | 401, 403 | unhealthy (credentials refused, with `refusal`'s account of the answer) |
/// | 429 | degraded (rate limited) |
/// | 5xx | unhealthy |
/// | anything else | degraded (reachable) |
///
/// Providers check statuses their API gives another meaning first.
pub fn probe_health(
    probe: &str,
    sent: Result<Response, ProviderError>,
    refusal: impl FnOnce(Response) -> String,
) -> Health {
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Health::unhealthy(format!("upstream unreachable: {}", e.message)),
    };
    let status = resp.status();
    match status {
        200..=299 => Health::healthy(format!("{probe} answered {status}")),
        401 | 403 => Health::unhealthy(format!(
            "credentials refused (HTTP {status}): {}",
            refusal(resp)
        )),
        429 => Health::degraded("rate limited (HTTP 429)"),
        500..=599 => Health::unhealthy(format!("upstream failing (HTTP {status})")),
        _ => Health::degraded(format!("reachable, but {probe} answered HTTP {status}")),
    }
}

/// Maps a `wasi:http` transport failure to a provider error: timeouts are `timeout`,
/// everything else that happened on the way is `network-error`; both retryable,
/// except a request the host refused by policy (`HTTP-request-denied`: retrying will
/// not change the policy) and requests the guest built wrongly.
pub fn transport_error(code: &wt::ErrorCode) -> ProviderError {
    use wt::ErrorCode as E;
    let timeout = |what: &str| ProviderError::timeout(format!("upstream {what} timed out"));
    let network = |what: String| ProviderError::network(what);
    match code {
        E::DnsTimeout => timeout("DNS lookup"),
        E::ConnectionTimeout => timeout("connection"),
        E::ConnectionReadTimeout | E::HttpResponseTimeout => timeout("response"),
        E::ConnectionWriteTimeout => timeout("request write"),
        E::HttpRequestDenied => ProviderError::network(
            "outbound request refused by the host's egress policy: the destination is not \
             granted to this provider, or a {{secret:NAME}} placeholder names a secret it \
             does not have",
        )
        .with_retryable(false),
        E::DnsError(p) => network(format!(
            "DNS lookup failed{}",
            p.rcode
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
        E::DestinationNotFound => network("upstream host not found".into()),
        E::DestinationUnavailable => network("upstream unavailable".into()),
        E::DestinationIpProhibited | E::DestinationIpUnroutable => {
            network("upstream address is prohibited or unroutable".into()).with_retryable(false)
        }
        E::ConnectionRefused => network("connection refused by upstream".into()),
        E::ConnectionTerminated => network("connection to upstream closed unexpectedly".into()),
        E::ConnectionLimitReached => network("connection limit reached".into()),
        E::TlsProtocolError | E::TlsCertificateError | E::TlsAlertReceived(_) => {
            network(format!("TLS failure talking to upstream ({code:?})")).with_retryable(false)
        }
        E::HttpResponseIncomplete => network("upstream response ended early".into()),
        E::HttpRequestMethodInvalid
        | E::HttpRequestUriInvalid
        | E::HttpRequestUriTooLong
        | E::HttpRequestLengthRequired
        | E::HttpRequestBodySize(_)
        | E::HttpRequestHeaderSectionSize(_)
        | E::HttpRequestHeaderSize(_)
        | E::HttpRequestTrailerSectionSize(_)
        | E::HttpRequestTrailerSize(_) => {
            ProviderError::invalid_request(format!("request could not be sent: {code:?}"))
        }
        E::InternalError(Some(msg)) => network(format!("HTTP failure: {msg}")),
        other => network(format!("HTTP failure: {other:?}")),
    }
}

/// The placeholder `{{secret:NAME}}`, which the host replaces with the provider's
/// secret `NAME` when a request leaves the sandbox (in header values only). The key
/// itself never enters the guest. `NAME` is 1 to 128 of `A-Z a-z 0-9 _ - .`, the
/// host's rule; anything else is an `invalid-request` here rather than a refused
/// request later.
pub fn secret_placeholder(name: &str) -> Result<String, ProviderError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(ProviderError::invalid_request(format!(
            "`{name}` is not a secret name (1-128 of letters, digits, `_`, `-`, `.`)"
        )));
    }
    Ok(format!("{{{{secret:{name}}}}}"))
}

/// An HTTP request under construction. Build it, then [`send`](Request::send).
#[derive(Clone, Debug)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    /// Adds a header. A value may hold `{{secret:NAME}}` placeholders, which the host
    /// replaces with the named secret on the way out. `host`, `connection`,
    /// `transfer-encoding` and similar hop-by-hop headers are refused by `wasi:http`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json_body(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/json").body(body)
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request and waits for the response status and headers. The body is
    /// read afterwards from the [`Response`].
    ///
    /// Errors: an unparseable URL or a header `wasi:http` refuses is
    /// `invalid-request`; transport failures are mapped by [`transport_error`].
    pub fn send(self) -> Result<Response, ProviderError> {
        let url = Url::parse(&self.url)?;
        let mut entries: Vec<(String, Vec<u8>)> = self
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        if !self.body.is_empty()
            || matches!(self.method, Method::Post | Method::Put | Method::Patch)
        {
            // A known length lets the host send the body in one piece instead of
            // chunked, which some servers (and proxies) handle badly.
            entries.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let headers = wt::Fields::from_list(&entries).map_err(|e| {
            ProviderError::invalid_request(format!("request headers refused: {e:?}"))
        })?;
        let request = wt::OutgoingRequest::new(headers);
        let method = match self.method {
            Method::Get => wt::Method::Get,
            Method::Post => wt::Method::Post,
            Method::Put => wt::Method::Put,
            Method::Delete => wt::Method::Delete,
            Method::Patch => wt::Method::Patch,
            Method::Head => wt::Method::Head,
        };
        let scheme = match url.scheme {
            Scheme::Http => wt::Scheme::Http,
            Scheme::Https => wt::Scheme::Https,
        };
        let bad = |what: &str| {
            ProviderError::invalid_request(format!("invalid request {what} for {}", url))
        };
        request.set_method(&method).map_err(|()| bad("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| bad("scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| bad("authority"))?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|()| bad("path"))?;
        // The body must be taken before `handle` consumes the request; it is written
        // after `handle`, because the host only drains it once the request is in
        // flight (writing a large body first could wait forever).
        let out_body = request
            .body()
            .map_err(|()| ProviderError::provider("request body already taken"))?;
        let future = crate::wasi::http::outgoing_handler::handle(request, None)
            .map_err(|e| transport_error(&e))?;
        let written = write_body(out_body, &self.body);
        let response = wait_response(&future);
        drop(future);
        let response = match (response, written) {
            (Ok(r), Ok(())) => r,
            // A refusal or connection failure is the real story; a write error is
            // usually just its echo (the host dropped the body's reader).
            (Err(e), _) => return Err(e),
            (Ok(_), Err(e)) => return Err(e),
        };
        let status = response.status();
        let headers = {
            let fields = response.headers();
            let entries = fields.entries();
            drop(fields);
            Headers(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k.to_ascii_lowercase(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect(),
            )
        };
        let body = response
            .consume()
            .map_err(|()| ProviderError::provider("response body already consumed"))?;
        let stream = body
            .stream()
            .map_err(|()| ProviderError::provider("response body stream already taken"))?;
        Ok(Response {
            status,
            headers,
            body: BodyReader {
                stream: Some(stream),
                body: Some(body),
                _response: Some(response),
                read: 0,
            },
        })
    }
}

fn write_body(body: wt::OutgoingBody, bytes: &[u8]) -> Result<(), ProviderError> {
    let lost = |e: String| ProviderError::network(format!("sending the request body failed: {e}"));
    {
        // The stream is a child of the body: it must be dropped before `finish`.
        let stream = body
            .write()
            .map_err(|()| ProviderError::provider("request body stream already taken"))?;
        for piece in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(piece)
                .map_err(|e| lost(stream_error_text(e)))?;
        }
    }
    wt::OutgoingBody::finish(body, None).map_err(|e| transport_error(&e))
}

fn wait_response(
    future: &wt::FutureIncomingResponse,
) -> Result<wt::IncomingResponse, ProviderError> {
    loop {
        match future.get() {
            Some(Ok(Ok(resp))) => return Ok(resp),
            Some(Ok(Err(code))) => return Err(transport_error(&code)),
            Some(Err(())) => return Err(ProviderError::provider("response already taken")),
            None => future.subscribe().block(),
        }
    }
}

fn stream_error_text(e: crate::wasi::io::streams::StreamError) -> String {
    match e {
        crate::wasi::io::streams::StreamError::Closed => "stream closed".into(),
        crate::wasi::io::streams::StreamError::LastOperationFailed(err) => {
            match wt::http_error_code(&err) {
                Some(code) => format!("{code:?}"),
                None => err.to_debug_string(),
            }
        }
    }
}

/// A response whose status and headers have arrived; the body is read on demand.
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: BodyReader,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// See [`Headers::retry_after_ms`].
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.headers.retry_after_ms()
    }

    /// Reads the whole body, up to [`DEFAULT_MAX_BODY_BYTES`].
    pub fn read_body(self) -> Result<Vec<u8>, ProviderError> {
        self.read_body_limited(DEFAULT_MAX_BODY_BYTES)
    }

    /// Reads the whole body; a body larger than `max_bytes` is a `provider-error`
    /// (stopping the read as soon as the limit is passed).
    pub fn read_body_limited(self, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        read_all(&mut self.into_body(), max_bytes)
    }

    /// Turn a failed answer into a provider error: `map` gets the status, the
    /// `retry-after` hint and up to 64 KiB of the body (an unreadable body is
    /// described instead), and classifies them the way its upstream API needs.
    pub fn into_error(
        self,
        map: impl FnOnce(u16, Option<u64>, &[u8]) -> ProviderError,
    ) -> ProviderError {
        const ERROR_BODY_MAX: usize = 64 * 1024;
        let status = self.status();
        let retry = self.retry_after_ms();
        let body = self
            .read_body_limited(ERROR_BODY_MAX)
            .unwrap_or_else(|e| format!("(error body unreadable: {})", e.message).into_bytes());
        map(status, retry, &body)
    }

    /// The whole body as text (invalid UTF-8 replaced), up to [`DEFAULT_MAX_BODY_BYTES`].
    pub fn text(self) -> Result<String, ProviderError> {
        let bytes = self.read_body()?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// The body, to read piece by piece.
    pub fn into_body(self) -> BodyReader {
        self.body
    }

    /// The body as a stream of server-sent events.
    pub fn into_sse(self) -> SseReader<BodyReader> {
        SseReader::new(self.body)
    }

    /// The answer to a streaming request as a chunk stream: `events` turns the SSE
    /// body into chunks; a server that ignored `stream: true` and sent a whole JSON
    /// answer instead is parsed with `whole` and handed out as one chunk, rather
    /// than failing.
    pub fn into_chunk_stream<S: crate::ChunkStream + 'static>(
        self,
        whole: impl FnOnce(&[u8]) -> Result<crate::CompletionResponse, ProviderError>,
        events: impl FnOnce(SseReader<BodyReader>) -> S,
    ) -> Result<Box<dyn crate::ChunkStream>, ProviderError> {
        let is_json = self
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().contains("application/json"));
        if is_json {
            let answer = whole(&self.read_body()?)?;
            return Ok(crate::VecStream::boxed(vec![
                crate::StreamChunk::from_response(answer),
            ]));
        }
        Ok(Box::new(events(self.into_sse())))
    }
}

/// Something that yields a body piece by piece: `Ok(None)` at the end.
/// [`BodyReader`] is the real one; tests implement it over memory.
pub trait ByteSource {
    /// The next non-empty piece, `Ok(None)` at the end of the body.
    fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, ProviderError>;
}

impl ByteSource for VecDeque<Vec<u8>> {
    fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, ProviderError> {
        Ok(self.pop_front())
    }
}

/// Reads everything from `source`, failing once more than `max_bytes` arrived.
pub fn read_all(source: &mut impl ByteSource, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    while let Some(piece) = source.read_chunk()? {
        if out.len() + piece.len() > max_bytes {
            return Err(ProviderError::provider(format!(
                "upstream response body is larger than {max_bytes} bytes"
            )));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// A response body being read from the host, with blocking reads.
pub struct BodyReader {
    // Field order is drop order, and it matters: the input stream is a child of the
    // incoming body, and the host traps if a parent goes first.
    stream: Option<crate::wasi::io::streams::InputStream>,
    body: Option<wt::IncomingBody>,
    _response: Option<wt::IncomingResponse>,
    read: u64,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("open", &self.stream.is_some())
            .field("read", &self.read)
            .finish()
    }
}

impl BodyReader {
    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn close(&mut self) {
        self.stream = None;
        self.body = None;
        self._response = None;
    }
}

impl ByteSource for BodyReader {
    /// Blocks until bytes arrive. A connection lost part way is a retryable
    /// `network-error` (or `timeout`), never a silent end of the body.
    fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, ProviderError> {
        use crate::wasi::io::streams::StreamError;
        loop {
            let Some(stream) = self.stream.as_ref() else {
                return Ok(None);
            };
            match stream.blocking_read(READ_CHUNK) {
                // An empty read is allowed by WASI before data is ready; try again.
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => {
                    self.read += bytes.len() as u64;
                    return Ok(Some(bytes));
                }
                Err(StreamError::Closed) => {
                    self.close();
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(err)) => {
                    let e = match wt::http_error_code(&err) {
                        Some(code) => {
                            let mut e = transport_error(&code);
                            e.message = format!("reading the response body: {}", e.message);
                            e
                        }
                        None => ProviderError::network(format!(
                            "reading the response body failed: {}",
                            err.to_debug_string()
                        )),
                    };
                    drop(err);
                    self.close();
                    return Err(e);
                }
            }
        }
    }
}

/// Server-sent events read incrementally from a [`ByteSource`] (normally a
/// [`BodyReader`]): each [`next_event`](SseReader::next_event) blocks until a whole
/// event has arrived.
pub struct SseReader<S: ByteSource> {
    source: S,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    ended: bool,
}

impl<S: ByteSource> SseReader<S> {
    /// Events from `source`, with the default event size limit.
    pub fn new(source: S) -> Self {
        SseReader::with_parser(source, SseParser::new())
    }

    /// Events from `source`, parsed by `parser` (for example one with another limit).
    pub fn with_parser(source: S, parser: SseParser) -> Self {
        SseReader {
            source,
            parser,
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// The next event; `Ok(None)` when the body ended (a last event without its
    /// blank line is still delivered first). Whether the stream ended *properly* is
    /// for the provider to judge from its protocol's terminator.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, ProviderError> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            if self.ended {
                return Ok(None);
            }
            match self.source.read_chunk()? {
                Some(bytes) => self.ready.extend(self.parser.try_push(&bytes)?),
                None => {
                    self.ended = true;
                    self.ready.extend(self.parser.finish());
                }
            }
        }
    }

    /// The underlying source.
    pub fn source(&self) -> &S {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_for_wasi_http() {
        let u = Url::parse("http://127.0.0.1:8080/v1/chat/completions?x=1#frag").unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/v1/chat/completions?x=1");
        let u = Url::parse("HTTPS://api.openai.com").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.path_and_query, "/");
        assert_eq!(Url::parse("https://h?q").unwrap().path_and_query, "/?q");
        assert_eq!(Url::parse("http://[::1]:9/x").unwrap().authority, "[::1]:9");
        for bad in [
            "ftp://h/x",
            "h/x",
            "http:///x",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
        }
        assert_eq!(
            Url::parse("https://h:1/a?b").unwrap().to_string(),
            "https://h:1/a?b"
        );
    }

    #[test]
    fn secret_placeholders() {
        assert_eq!(secret_placeholder("api_key").unwrap(), "{{secret:api_key}}");
        assert_eq!(secret_placeholder("a.b-C_1").unwrap(), "{{secret:a.b-C_1}}");
        for bad in ["", "a b", "x}}{{secret:y", &"k".repeat(129)] {
            assert_eq!(
                secret_placeholder(bad).unwrap_err().code,
                ErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn join_url_puts_one_slash() {
        assert_eq!(join_url("http://h/v1/", "/models"), "http://h/v1/models");
        assert_eq!(join_url("http://h/v1", "models"), "http://h/v1/models");
    }

    #[test]
    fn headers_are_case_insensitive() {
        let h = Headers::new([("Retry-After", "2"), ("X-A", "b")]);
        assert_eq!(h.get("retry-after"), Some("2"));
        assert_eq!(h.get("x-a"), Some("b"));
        assert_eq!(h.retry_after_ms(), Some(2000));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(Some("1500"), Some("9"), 0),
            Some(1500),
            "ms wins"
        );
        assert_eq!(parse_retry_after(Some("12.2"), None, 0), Some(13));
        assert_eq!(parse_retry_after(None, Some("2"), 0), Some(2000));
        assert_eq!(parse_retry_after(None, Some(" 0.5 "), 0), Some(500));
        assert_eq!(parse_retry_after(Some("junk"), Some("3"), 0), Some(3000));
        assert_eq!(parse_retry_after(None, Some("-1"), 0), None);
        assert_eq!(parse_retry_after(None, None, 0), None);
        assert_eq!(
            parse_retry_after(None, Some("99999999"), 0),
            Some(86_400_000)
        );
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_http_date(date), Some(784_111_777));
        assert_eq!(parse_retry_after(None, Some(date), 784_111_770), Some(7000));
        assert_eq!(
            parse_retry_after(None, Some(date), 784_111_999),
            Some(0),
            "past dates: now"
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn status_errors_follow_http_semantics() {
        let cases = [
            (401, ErrorCode::InvalidApiKey, false),
            (403, ErrorCode::InvalidApiKey, false),
            (404, ErrorCode::ModelNotFound, false),
            (408, ErrorCode::Timeout, true),
            (400, ErrorCode::InvalidRequest, false),
            (422, ErrorCode::InvalidRequest, false),
            (429, ErrorCode::RateLimitExceeded, true),
            (500, ErrorCode::ServiceUnavailable, true),
            (503, ErrorCode::ServiceUnavailable, true),
            (529, ErrorCode::ServiceUnavailable, true),
            (302, ErrorCode::ProviderError, false),
        ];
        for (status, code, retryable) in cases {
            let e = status_error(status, "why", Some(5));
            assert_eq!((e.code, e.retryable), (code, retryable), "{status}");
            assert!(e.message.contains(&status.to_string()) && e.message.contains("why"));
            assert_eq!(
                e.retry_after_ms.is_some(),
                retryable,
                "{status}: only retryable errors carry a wait"
            );
        }
        assert!(status_error(500, "  ", None).message.ends_with("HTTP 500"));
    }

    #[test]
    fn transport_errors_are_network_or_timeout() {
        use wt::ErrorCode as E;
        let e = transport_error(&E::ConnectionRefused);
        assert_eq!((e.code, e.retryable), (ErrorCode::NetworkError, true));
        let e = transport_error(&E::HttpResponseTimeout);
        assert_eq!((e.code, e.retryable), (ErrorCode::Timeout, true));
        let e = transport_error(&E::DnsTimeout);
        assert_eq!(e.code, ErrorCode::Timeout);
        let e = transport_error(&E::HttpRequestDenied);
        assert_eq!((e.code, e.retryable), (ErrorCode::NetworkError, false));
        assert!(e.message.contains("egress policy"));
        let e = transport_error(&E::DnsError(wt::DnsErrorPayload {
            rcode: Some("NXDOMAIN".into()),
            info_code: None,
        }));
        assert!(e.message.contains("NXDOMAIN") && e.retryable);
        let e = transport_error(&E::HttpRequestUriInvalid);
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = transport_error(&E::InternalError(Some("boom".into())));
        assert!(e.message.contains("boom"));
    }

    #[test]
    fn sse_reader_pulls_events_across_chunks() {
        let chunks: VecDeque<Vec<u8>> = [
            &b"data: {\"a\""[..],
            b":1}\n",
            b"\nevent: x\ndata: y\n\ndata: [DONE]",
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        let mut r = SseReader::new(chunks);
        assert_eq!(r.next_event().unwrap().unwrap().data, "{\"a\":1}");
        let ev = r.next_event().unwrap().unwrap();
        assert_eq!((ev.event.as_str(), ev.data.as_str()), ("x", "y"));
        assert!(r.next_event().unwrap().unwrap().data_is("[DONE]"));
        assert!(r.next_event().unwrap().is_none());
        assert!(r.next_event().unwrap().is_none());
    }

    #[test]
    fn sse_reader_passes_source_errors_and_limits() {
        struct Failing(u8);
        impl ByteSource for Failing {
            fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, ProviderError> {
                self.0 += 1;
                if self.0 == 1 {
                    Ok(Some(b"data: a\n\n".to_vec()))
                } else {
                    Err(ProviderError::network("reset"))
                }
            }
        }
        let mut r = SseReader::new(Failing(0));
        assert_eq!(r.next_event().unwrap().unwrap().data, "a");
        assert_eq!(r.next_event().unwrap_err().code, ErrorCode::NetworkError);

        let big: VecDeque<Vec<u8>> = [vec![b'x'; 64]].into_iter().collect();
        let mut r = SseReader::with_parser(big, SseParser::with_max_event_bytes(32));
        assert_eq!(r.next_event().unwrap_err().code, ErrorCode::ProviderError);
    }

    #[test]
    fn read_all_caps_the_body() {
        let mut src: VecDeque<Vec<u8>> = [vec![1; 10], vec![2; 10]].into_iter().collect();
        assert_eq!(read_all(&mut src.clone(), 20).unwrap().len(), 20);
        let e = read_all(&mut src, 15).unwrap_err();
        assert!(e.message.contains("larger than 15"));
    }
}
