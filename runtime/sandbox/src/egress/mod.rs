//! Egress policy: the single chokepoint for a provider's outbound HTTP.
//!
//! Every `wasi:http` request a guest sends passes through `EgressHooks`. Nothing
//! leaves the process unless every step below says yes, and each refusal is logged
//! (provider, scheme, host, port, reason — never headers, paths or secret values)
//! and counted ([`EgressPolicy::counters`]):
//!
//! 1. **Allowlist.** The request's scheme, host and port must match an entry of the
//!    provider's allowed hosts (syntax below), else `HttpRequestDenied`. `CONNECT`
//!    and URIs carrying userinfo are refused outright.
//! 2. **Concurrency.** At most [`EgressLimits::max_concurrent_requests`] requests
//!    per provider are in flight (from send until the response body ends or is
//!    dropped). Past that the request fails fast with `ConnectionLimitReached`:
//!    waiting would burn the guest's own call deadline while it holds an instance,
//!    and the guest can retry or report overload itself.
//! 3. **Secrets.** `{{secret:NAME}}` placeholders in header values are replaced by
//!    the provider's secret `NAME`, so keys never enter guest memory. An unknown
//!    name or a malformed placeholder refuses the request (`HttpRequestDenied`)
//!    rather than send the placeholder upstream. Only header values are
//!    substituted (not the URI or the body), and a provider's secrets go to any
//!    of its allowed hosts.
//! 4. **Address check.** The host is resolved (through the policy's [`Resolver`])
//!    and each address is classified; loopback, private, CGNAT, link-local, cloud
//!    metadata, unspecified, multicast, broadcast and reserved addresses (and
//!    IPv6 forms embedding them) are dropped unless an IP/CIDR entry with the same
//!    scheme and port names them. If none is left: `DestinationIpProhibited`. So a
//!    granted *name* that resolves inward cannot reach the inside.
//! 5. **Pinned connect.** The connection goes to exactly the address that was
//!    checked — there is no second resolution, hence no DNS rebinding window.
//! 6. **Host header.** `Host` is set from the URI authority, overriding anything
//!    the guest sent (Spin CVE-2024-32980: a spoofed `Host` reached another host
//!    behind a shared front).
//!
//! Responses go through a process-wide connection pool (HTTP/1.1, and HTTP/2 when
//! ALPN picks it; TLS by rustls with the webpki roots). Pooled connections are
//! keyed by the *checked* socket address as well as scheme/host/port, so a
//! connection opened under one provider's IP grant can only be reused by a
//! request whose own check arrived at the same address.
//!
//! # Allowed-host syntax
//!
//! Each entry is `scheme://HOST[:PORT]`, `scheme` being `http` or `https`:
//!
//! | `HOST` | matches |
//! |---|---|
//! | `api.example.com` | that name exactly (case-insensitive, trailing dot ignored) |
//! | `*.example.com` | any name *below* `example.com` (`a.example.com`, `a.b.example.com`), not `example.com` itself |
//! | `127.0.0.1`, `[::1]` | requests to that IP literal; also grants that address after resolution |
//! | `10.0.0.0/8`, `[fd00::/8]` | the same for a CIDR range (host bits must be zero) |
//!
//! `PORT` is a number, or `*` for any port; left out, it is the scheme's default
//! (80 / 443). Examples: `https://api.openai.com`, `https://*.openai.azure.com`,
//! `http://127.0.0.1:8080`, `http://127.0.0.0/8:*`, `http://[::1]:*`.
//!
//! A name entry never grants an internal address: to let `llm.internal` reach
//! `10.1.2.3:8000`, grant both `http://llm.internal:8000` and `http://10.1.2.3:8000`
//! (or `http://10.0.0.0/8:8000`). Malformed entries are reported all at once by
//! [`parse_allowed_hosts`] / [`EgressPolicy::try_new`]; [`EgressPolicy::new`]
//! drops them (they grant nothing) with a warning.
//!
//! # Timeouts
//!
//! Per provider, from [`EgressLimits`]: connect (applied to DNS resolution, and
//! separately to TCP + TLS), first byte (from send to the response headers,
//! connecting included), total (from send to the end of the response body).
//! A guest's `request-options` may tighten the first-byte timeout and add a
//! between-bytes timeout; its connect timeout is ignored because connectors are
//! shared across providers (the policy's still applies).
//!
//! # Out of scope
//!
//! Response headers are passed to the guest unchanged: an upstream that echoes
//! the key back (in a header or the body) hands it to the guest. Only a trusted
//! upstream should get a secret, which is what the allowlist is for.
//!
//! # Module map
//!
//! One concern per file, after Spin's `outbound-networking-config` and
//! wasmCloud's `host/*` layout. Only this module is public; everything below is
//! re-exported here, so every type is named `egress::X`.
//!
//! | file | what it is |
//! |---|---|
//! | `allowlist` | allowed-host entries: [`AllowedHost`], [`HostPattern`], [`PortSpec`], [`EgressScheme`], [`parse_allowed_hosts`] |
//! | `config_error` | [`EgressConfigError`]: every problem with a provider's egress configuration |
//! | `target` | where a request is going, normalized for matching against the allowlist |
//! | `address` | [`AddressClass`] and [`classify_ip`]: which addresses need an explicit grant |
//! | `limits` | [`EgressLimits`]: per-provider timeouts, body cap, concurrency |
//! | `resolver` | [`Resolver`], [`SystemResolver`], [`StaticResolver`]: name → addresses |
//! | `dns` | [`CachingResolver`], the default: hickory's stub resolver, answers cached for their TTL |
//! | `secrets` | [`Secret`] and `{{secret:NAME}}` substitution in header values |
//! | `counters` | [`RefusalReason`], [`EgressCounters`] and the live atomic counters |
//! | `policy` | [`EgressPolicy`]: one provider's allowlist, secrets, limits and counters |
//! | `hook` | the `wasi:http` send hook: the checks above, in order, then the send |
//! | `request_body` | the guest's request body, drained if dropped unsent |
//! | `response_body` | the response body as the guest sees it: capped, timed, holding the permit |
//! | `client` | the process-wide pool of HTTP clients, and its errors as `wasi:http` codes |
//! | `connect` | TLS configuration and the connection pinned to the checked address |

mod address;
mod allowlist;
mod client;
mod config_error;
mod connect;
mod counters;
mod dns;
mod hook;
mod limits;
mod policy;
mod request_body;
mod resolver;
mod response_body;
mod secrets;
mod target;
mod trace_context;

#[cfg(test)]
mod test_server;

pub use address::{classify_ip, AddressClass};
pub use allowlist::{parse_allowed_hosts, AllowedHost, EgressScheme, HostPattern, PortSpec};
pub use config_error::EgressConfigError;
pub use counters::{EgressCounters, RefusalReason};
pub use dns::CachingResolver;
pub(crate) use hook::EgressHooks;
/// An IP network (`addr/prefix`), as held by [`HostPattern::Ip`]; a single
/// address has the full prefix. IPv4-mapped IPv6 entries are stored as IPv4.
pub use ipnet::IpNet;
pub use limits::{
    EgressLimits, BOUNDS as EGRESS_BOUNDS, MAX_CONCURRENT_REQUESTS, MAX_EGRESS_TIMEOUT_MS,
    MAX_RESPONSE_BODY_BYTES,
};
pub use policy::EgressPolicy;
pub use resolver::{ResolveFuture, Resolver, StaticResolver, SystemResolver};
pub use secrets::Secret;
