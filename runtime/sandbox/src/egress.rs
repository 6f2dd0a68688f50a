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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

// ---------------------------------------------------------------------------
// Allowed-host entries
// ---------------------------------------------------------------------------

/// `http` or `https`: the only schemes an entry (or a request) may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressScheme {
    /// Plain HTTP (default port 80).
    Http,
    /// HTTP over TLS (default port 443).
    Https,
}

impl EgressScheme {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(EgressScheme::Http),
            "https" => Some(EgressScheme::Https),
            _ => None,
        }
    }

    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            EgressScheme::Http => 80,
            EgressScheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            EgressScheme::Http => "http",
            EgressScheme::Https => "https",
        }
    }
}

/// The port part of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// `:*`
    Any,
    /// `:443`, or the scheme's default when left out.
    Exact(u16),
}

impl PortSpec {
    fn matches(self, port: u16) -> bool {
        match self {
            PortSpec::Any => true,
            PortSpec::Exact(p) => p == port,
        }
    }
}

/// An IP network (`addr/prefix`); a single address has the full prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    fn parse(addr: &str, prefix: Option<&str>) -> Result<Self, String> {
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        // Store mapped addresses as IPv4 so that `[::ffff:10.0.0.0/104]` and
        // `10.0.0.0/8` mean the same thing to `contains`.
        let (ip, offset) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), 96),
                None => (ip, 0),
            },
            v4 => (v4, 0),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let p: u8 = p
                    .parse()
                    .map_err(|_| format!("`{p}` is not a prefix length"))?;
                let p = p
                    .checked_sub(offset)
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("prefix /{p} is out of range"))?;
                p
            }
        };
        let net = IpNet { addr: ip, prefix };
        // Host bits set (`10.0.0.1/8`) usually means a typo; refuse rather than guess.
        if !IpNet::masked(ip, prefix).eq(&ip) {
            return Err(format!(
                "`{addr}/{prefix}` has host bits set (did you mean {}/{prefix}?)",
                IpNet::masked(ip, prefix)
            ));
        }
        Ok(net)
    }

    fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

/// The host part of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// A DNS name, lowercased, without a trailing dot.
    Name(String),
    /// `*.suffix`: holds `suffix` (lowercased); matches names strictly below it.
    Wildcard(String),
    /// An IP address or CIDR range.
    Ip(IpNet),
}

/// One parsed allowed-host entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    /// Scheme the request must use.
    pub scheme: EgressScheme,
    /// Host (or range) the request must address.
    pub host: HostPattern,
    /// Port the request must address.
    pub port: PortSpec,
}

impl AllowedHost {
    /// Parse one entry (syntax in the module docs).
    pub fn parse(entry: &str) -> Result<Self, String> {
        let s = entry.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("expected `scheme://host[:port]`")?;
        let scheme = EgressScheme::parse(scheme)
            .ok_or_else(|| format!("scheme `{scheme}` is not http or https"))?;
        if let Some(c) = rest.chars().find(|c| matches!(c, '?' | '#' | '@')) {
            return Err(format!(
                "`{c}` is not allowed (no userinfo, query or fragment)"
            ));
        }

        // Split host and port. IPv6 is always bracketed, so any other colon is the
        // port separator.
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (inner, after) = inner.split_once(']').ok_or("`[` without `]`")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
            };
            let (addr, prefix) = match inner.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (inner, None),
            };
            if addr.contains('%') {
                return Err("IPv6 zone ids are not allowed".into());
            }
            if !addr.contains(':') {
                return Err(format!("`[{inner}]`: brackets are for IPv6 addresses"));
            }
            (HostPattern::Ip(IpNet::parse(addr, prefix)?), port)
        } else {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                return Err("IPv6 addresses must be in brackets: `[::1]`".into());
            }
            let pattern = if let Some((addr, prefix)) = host.split_once('/') {
                if addr.parse::<Ipv4Addr>().is_err() {
                    return Err(format!(
                        "`{host}`: a path is not allowed; `/` is only for CIDR ranges"
                    ));
                }
                HostPattern::Ip(IpNet::parse(addr, Some(prefix))?)
            } else if host.parse::<Ipv4Addr>().is_ok() {
                HostPattern::Ip(IpNet::parse(host, None)?)
            } else if let Some(suffix) = host.strip_prefix("*.") {
                let suffix = normalize_name(suffix)?;
                // `*.com` would grant a whole TLD; nobody means that.
                if !suffix.contains('.') {
                    return Err(format!(
                        "`*.{suffix}` is too broad: a wildcard must cover a domain of at least two labels"
                    ));
                }
                HostPattern::Wildcard(suffix)
            } else if host == "*" {
                return Err("a bare `*` host is not allowed: name a domain".into());
            } else if host.contains('*') {
                return Err(format!(
                    "`{host}`: `*` is only allowed as the whole leftmost label (`*.example.com`)"
                ));
            } else {
                HostPattern::Name(normalize_name(host)?)
            };
            (pattern, port)
        };

        let port = match port {
            None => PortSpec::Exact(scheme.default_port()),
            Some("*") => PortSpec::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => PortSpec::Exact(n),
                _ => return Err(format!("port `{p}` is not 1-65535 or `*`")),
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    /// Whether a request to `target` matches this entry.
    fn matches(&self, target: &Target) -> bool {
        if self.scheme != target.scheme || !self.port.matches(target.port) {
            return false;
        }
        match (&self.host, target.ip) {
            (HostPattern::Name(name), None) => *name == target.host,
            (HostPattern::Wildcard(suffix), None) => {
                let host = target.host.as_str();
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            (HostPattern::Ip(net), Some(ip)) => net.contains(ip),
            _ => false,
        }
    }

    /// Whether this entry explicitly grants connecting to `ip` for `target`'s
    /// scheme and port (how internal addresses become reachable).
    fn grants_address(&self, target: &Target, ip: IpAddr) -> bool {
        matches!(&self.host, HostPattern::Ip(net) if net.contains(ip))
            && self.scheme == target.scheme
            && self.port.matches(target.port)
    }
}

/// Lowercase, drop one trailing dot, and check DNS-name syntax.
fn normalize_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{name}` is not a valid host name"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{name}` is not a valid host name"));
        }
    }
    // An all-numeric last label is not a name (no such TLD): it is an IP address
    // in a form we do not accept (`127.1`, `2130706433`).
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{name}` looks like an IP address; write it as a.b.c.d"
        ));
    }
    Ok(name)
}

/// Every problem with a provider's egress configuration, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressConfigError {
    /// `entry: reason` / `field: reason` lines. Never holds a secret value.
    pub problems: Vec<String>,
}

impl fmt::Display for EgressConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid egress policy: {}", self.problems.join("; "))
    }
}

impl std::error::Error for EgressConfigError {}

/// Parse every entry, reporting all malformed ones together.
pub fn parse_allowed_hosts(entries: &[String]) -> Result<Vec<AllowedHost>, EgressConfigError> {
    let mut rules = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for entry in entries {
        match AllowedHost::parse(entry) {
            Ok(rule) => rules.push(rule),
            Err(why) => problems.push(format!("allowed host `{entry}`: {why}")),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(EgressConfigError { problems })
    }
}

// ---------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------

/// What kind of address an IP is, as far as egress is concerned. Everything but
/// [`AddressClass::Public`] needs an explicit IP/CIDR grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable (as far as we can tell).
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7`, `fec0::/10`.
    Private,
    /// `100.64.0.0/10` (carrier-grade NAT; also where some clouds put metadata).
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `169.254.169.254`, `fd00:ec2::254`: cloud instance metadata (credentials).
    CloudMetadata,
    /// `0.0.0.0`, `::` (connects to the local host on most systems).
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `0/8`, `192.0.0.0/24`, `198.18.0.0/15`, `240.0.0.0/4`, `100::/64`.
    Reserved,
}

impl AddressClass {
    fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedAddressSpace => "shared address space (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Classify an address. IPv6 addresses that embed an IPv4 one (mapped
/// `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) take the class of the embedded address when it is not public,
/// since on many hosts connecting to them reaches that IPv4 address.
pub fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    let in_net = |net: [u8; 4], prefix: u32| {
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if o == [169, 254, 169, 254] {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if in_net([100, 64, 0, 0], 10) {
        AddressClass::SharedAddressSpace
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if o[0] == 0 || o[0] >= 240 || in_net([192, 0, 0, 0], 24) || in_net([198, 18, 0, 0], 15)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return AddressClass::CloudMetadata;
    }
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_ipv4(ip) {
        let class = classify_v4(v4);
        if class != AddressClass::Public {
            return class;
        }
    }
    match s[0] {
        x if x & 0xfe00 == 0xfc00 => AddressClass::Private, // fc00::/7 unique local
        x if x & 0xffc0 == 0xfe80 => AddressClass::LinkLocal, // fe80::/10
        x if x & 0xffc0 == 0xfec0 => AddressClass::Private, // fec0::/10 site-local (deprecated)
        x if x & 0xff00 == 0xff00 => AddressClass::Multicast, // ff00::/8
        0x0100 if s[1..4] == [0, 0, 0] => AddressClass::Reserved, // 100::/64 discard
        _ => AddressClass::Public,
    }
}

fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // `::a.b.c.d` (IPv4-compatible, deprecated) or NAT64 `64:ff9b::a.b.c.d`.
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        )) // 6to4
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// Per-provider limits on outbound HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct EgressLimits {
    /// TCP connect plus TLS handshake, milliseconds. Default 10 000.
    pub connect_timeout_ms: u64,
    /// From sending the request to receiving the response headers (connecting
    /// included), milliseconds. Default 60 000.
    pub first_byte_timeout_ms: u64,
    /// From sending the request to the end of the response body, milliseconds.
    /// Default 300 000.
    pub total_timeout_ms: u64,
    /// Largest response body, bytes; past it the body stream fails with
    /// `HttpResponseBodySize`. Default 32 MiB.
    pub max_response_body_bytes: u64,
    /// Requests of this provider in flight at once (until each response body ends
    /// or is dropped); past it a request fails with `ConnectionLimitReached`.
    /// Default 16.
    pub max_concurrent_requests: u32,
}

/// Largest accepted `max_concurrent_requests`.
pub const MAX_CONCURRENT_REQUESTS: u32 = 4096;
/// Largest accepted `max_response_body_bytes` (4 GiB).
pub const MAX_RESPONSE_BODY_BYTES: u64 = 4 << 30;

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 60_000,
            total_timeout_ms: 300_000,
            max_response_body_bytes: 32 * 1024 * 1024,
            max_concurrent_requests: 16,
        }
    }
}

impl EgressLimits {
    /// Every problem with these limits, as `field: reason` lines (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, field: &str, why: String| {
            if !ok {
                problems.push(format!("{field}: {why}"));
            }
        };
        check(
            self.connect_timeout_ms > 0,
            "connect_timeout_ms",
            "must be at least 1".into(),
        );
        check(
            self.first_byte_timeout_ms > 0,
            "first_byte_timeout_ms",
            "must be at least 1".into(),
        );
        check(
            self.total_timeout_ms > 0,
            "total_timeout_ms",
            "must be at least 1".into(),
        );
        // The first-byte timeout includes connecting, and the total includes both:
        // a larger inner timeout could never fire.
        check(
            self.connect_timeout_ms <= self.first_byte_timeout_ms,
            "connect_timeout_ms",
            format!(
                "must not exceed first_byte_timeout_ms ({}), got {}",
                self.first_byte_timeout_ms, self.connect_timeout_ms
            ),
        );
        check(
            self.first_byte_timeout_ms <= self.total_timeout_ms,
            "first_byte_timeout_ms",
            format!(
                "must not exceed total_timeout_ms ({}), got {}",
                self.total_timeout_ms, self.first_byte_timeout_ms
            ),
        );
        check(
            (1..=MAX_RESPONSE_BODY_BYTES).contains(&self.max_response_body_bytes),
            "max_response_body_bytes",
            format!(
                "must be between 1 and {MAX_RESPONSE_BODY_BYTES}, got {}",
                self.max_response_body_bytes
            ),
        );
        check(
            (1..=MAX_CONCURRENT_REQUESTS).contains(&self.max_concurrent_requests),
            "max_concurrent_requests",
            format!(
                "must be between 1 and {MAX_CONCURRENT_REQUESTS}, got {}",
                self.max_concurrent_requests
            ),
        );
        problems
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }
    fn total_timeout(&self) -> Duration {
        Duration::from_millis(self.total_timeout_ms)
    }
}

// ---------------------------------------------------------------------------
// Name resolution
// ---------------------------------------------------------------------------

/// What [`Resolver::resolve`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a host name into addresses. Injectable so tests (and embedders with
/// their own DNS) can decide what a name means; every address it returns is
/// still checked by the policy.
pub trait Resolver: Send + Sync + 'static {
    /// Addresses of `host` (a DNS name, never an IP literal), for `port`.
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture;
}

/// The system resolver (`getaddrinfo`, via `tokio::net::lookup_host`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed name → addresses table; unknown names fail to resolve.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    entries: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `host` (case-insensitive) to `ips`.
    pub fn with(mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.entries
            .insert(host.to_ascii_lowercase(), ips.into_iter().collect());
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, host: &str, _port: u16) -> ResolveFuture {
        let result = self
            .entries
            .get(&host.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not in table"));
        Box::pin(async move { result })
    }
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// A secret value (an API key). Its `Debug` is `[redacted]`, and it has no
/// `Display`, so it cannot end up in a log or an error by accident.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

const PLACEHOLDER_OPEN: &[u8] = b"{{secret:";
const PLACEHOLDER_CLOSE: &[u8] = b"}}";

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Why a header's placeholders could not be substituted. Holds names only.
#[derive(Debug, PartialEq, Eq)]
enum SecretError {
    Unknown(String),
    Malformed,
    NotHeaderSafe(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unknown(name) => write!(f, "unknown secret {name:?}"),
            SecretError::Malformed => f.write_str("malformed {{secret:NAME}} placeholder"),
            SecretError::NotHeaderSafe(name) => {
                write!(f, "secret {name:?} is not a valid header value")
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replace every `{{secret:NAME}}` in `value`. `Ok(None)` when there is none.
fn substitute_secrets(
    value: &HeaderValue,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Option<HeaderValue>, SecretError> {
    let bytes = value.as_bytes();
    if find(bytes, PLACEHOLDER_OPEN).is_none() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut rest = bytes;
    let mut last_name = String::new();
    while let Some(start) = find(rest, PLACEHOLDER_OPEN) {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + PLACEHOLDER_OPEN.len()..];
        let end = find(after, PLACEHOLDER_CLOSE).ok_or(SecretError::Malformed)?;
        let name = std::str::from_utf8(&after[..end])
            .ok()
            .filter(|n| valid_secret_name(n))
            .ok_or(SecretError::Malformed)?;
        let secret = secrets
            .get(name)
            .ok_or_else(|| SecretError::Unknown(name.to_owned()))?;
        out.extend_from_slice(secret.expose().as_bytes());
        last_name = name.to_owned();
        rest = &after[end + PLACEHOLDER_CLOSE.len()..];
    }
    out.extend_from_slice(rest);
    let mut value =
        HeaderValue::from_bytes(&out).map_err(|_| SecretError::NotHeaderSafe(last_name))?;
    // Keeps it out of HPACK tables and makes `HeaderValue`'s Debug say "Sensitive".
    value.set_sensitive(true);
    Ok(Some(value))
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// No allowed-host entry matches (or the request is malformed / `CONNECT`).
    NotAllowed,
    /// Every address the host resolved to is internal and not explicitly granted.
    AddressProhibited,
    /// A header names a secret the provider does not have (or is malformed).
    UnknownSecret,
    /// The provider already has `max_concurrent_requests` in flight.
    Concurrency,
}

impl RefusalReason {
    fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NotAllowed => "host not allowed",
            RefusalReason::AddressProhibited => "address prohibited",
            RefusalReason::UnknownSecret => "unknown secret",
            RefusalReason::Concurrency => "concurrency limit",
        }
    }
}

/// A snapshot of a provider's egress counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EgressCounters {
    /// Requests that passed every check and were handed to the connection pool.
    pub sent: u64,
    /// Requests that passed the allowlist but failed before a response: name
    /// resolution, connect, TLS, timeout, protocol error.
    pub failed: u64,
    /// Refused: no allowed-host entry matched.
    pub refused_not_allowed: u64,
    /// Refused: resolved only to prohibited addresses.
    pub refused_address_prohibited: u64,
    /// Refused: unknown or malformed secret placeholder.
    pub refused_unknown_secret: u64,
    /// Refused: concurrency limit reached.
    pub refused_concurrency: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    not_allowed: AtomicU64,
    address_prohibited: AtomicU64,
    unknown_secret: AtomicU64,
    concurrency: AtomicU64,
}

impl Counters {
    fn refused(&self, reason: RefusalReason) -> &AtomicU64 {
        match reason {
            RefusalReason::NotAllowed => &self.not_allowed,
            RefusalReason::AddressProhibited => &self.address_prohibited,
            RefusalReason::UnknownSecret => &self.unknown_secret,
            RefusalReason::Concurrency => &self.concurrency,
        }
    }
}

// ---------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------

/// A provider's egress policy: allowed hosts, the secrets the host substitutes
/// into its requests, limits, and counters. Cheap to clone; clones share the
/// counters and the concurrency budget (one policy per provider, shared by all
/// its instances).
#[derive(Clone)]
pub struct EgressPolicy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    allowed_hosts: Vec<String>,
    rules: Vec<AllowedHost>,
    secrets: BTreeMap<String, Secret>,
    limits: EgressLimits,
    resolver: Arc<dyn Resolver>,
    in_flight: Arc<Semaphore>,
    counters: Counters,
}

impl Default for EgressPolicy {
    /// Deny everything.
    fn default() -> Self {
        EgressPolicy::new(Vec::new(), BTreeMap::new())
    }
}

impl EgressPolicy {
    /// A policy allowing `allowed_hosts` (syntax in the module docs), with named
    /// secrets and default [`EgressLimits`]. Lenient: a malformed entry grants
    /// nothing and is logged; use [`EgressPolicy::try_new`] to reject it instead.
    pub fn new(allowed_hosts: Vec<String>, secrets: BTreeMap<String, String>) -> Self {
        let rules = allowed_hosts
            .iter()
            .filter_map(|entry| match AllowedHost::parse(entry) {
                Ok(rule) => Some(rule),
                Err(why) => {
                    tracing::warn!(target: "tamma::egress", entry = %entry, %why, "ignoring malformed allowed host");
                    None
                }
            })
            .collect();
        Self::build(
            allowed_hosts,
            rules,
            secrets,
            EgressLimits::default(),
            Arc::new(SystemResolver),
        )
    }

    /// A policy with explicit limits; fails listing every malformed entry,
    /// invalid secret name or value (by name), and invalid limit.
    pub fn try_new(
        allowed_hosts: Vec<String>,
        secrets: BTreeMap<String, String>,
        limits: EgressLimits,
    ) -> Result<Self, EgressConfigError> {
        let mut problems = Vec::new();
        let rules = match parse_allowed_hosts(&allowed_hosts) {
            Ok(rules) => rules,
            Err(e) => {
                problems.extend(e.problems);
                Vec::new()
            }
        };
        for (name, value) in &secrets {
            if !valid_secret_name(name) {
                problems.push(format!(
                    "secret {name:?}: names are 1-128 of A-Z a-z 0-9 _ - ."
                ));
            }
            // Never echo the value: say what is wrong with it, not what it is.
            if HeaderValue::from_str(value).is_err() {
                problems.push(format!(
                    "secret {name:?}: value has characters not allowed in an HTTP header"
                ));
            }
        }
        problems.extend(limits.validate().into_iter().map(|p| format!("limits.{p}")));
        if !problems.is_empty() {
            return Err(EgressConfigError { problems });
        }
        Ok(Self::build(
            allowed_hosts,
            rules,
            secrets,
            limits,
            Arc::new(SystemResolver),
        ))
    }

    /// The same policy resolving names with `resolver`. Counters and the
    /// concurrency budget start afresh: call this while building the policy.
    pub fn with_resolver(self, resolver: Arc<dyn Resolver>) -> Self {
        let inner = &self.inner;
        EgressPolicy {
            inner: Arc::new(PolicyInner {
                allowed_hosts: inner.allowed_hosts.clone(),
                rules: inner.rules.clone(),
                secrets: inner.secrets.clone(),
                limits: inner.limits.clone(),
                resolver,
                in_flight: Arc::new(Semaphore::new(
                    inner.limits.max_concurrent_requests as usize,
                )),
                counters: Counters::default(),
            }),
        }
    }

    fn build(
        allowed_hosts: Vec<String>,
        rules: Vec<AllowedHost>,
        secrets: BTreeMap<String, String>,
        limits: EgressLimits,
        resolver: Arc<dyn Resolver>,
    ) -> Self {
        // `new` cannot fail; clamp so a zero never wedges every request.
        let permits = limits
            .max_concurrent_requests
            .clamp(1, MAX_CONCURRENT_REQUESTS) as usize;
        EgressPolicy {
            inner: Arc::new(PolicyInner {
                allowed_hosts,
                rules,
                secrets: secrets
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect(),
                limits,
                resolver,
                in_flight: Arc::new(Semaphore::new(permits)),
                counters: Counters::default(),
            }),
        }
    }

    /// The allowed hosts, as given.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.allowed_hosts
    }

    /// Names of the secrets (never their values).
    pub fn secret_names(&self) -> Vec<&str> {
        self.inner.secrets.keys().map(String::as_str).collect()
    }

    /// The limits.
    pub fn limits(&self) -> &EgressLimits {
        &self.inner.limits
    }

    /// Requests refused so far, all reasons together.
    pub fn refused(&self) -> u64 {
        let c = self.counters();
        c.refused_not_allowed
            + c.refused_address_prohibited
            + c.refused_unknown_secret
            + c.refused_concurrency
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> EgressCounters {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EgressCounters {
            sent: get(&c.sent),
            failed: get(&c.failed),
            refused_not_allowed: get(&c.not_allowed),
            refused_address_prohibited: get(&c.address_prohibited),
            refused_unknown_secret: get(&c.unknown_secret),
            refused_concurrency: get(&c.concurrency),
        }
    }
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("allowed_hosts", &self.inner.allowed_hosts)
            .field("secrets", &self.secret_names())
            .field("limits", &self.inner.limits)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// The send hook
// ---------------------------------------------------------------------------

/// The `wasi:http` hooks of one instance.
pub(crate) struct EgressHooks {
    provider: Arc<str>,
    policy: EgressPolicy,
}

impl EgressHooks {
    pub(crate) fn new(provider: Arc<str>, policy: EgressPolicy) -> Self {
        EgressHooks { provider, policy }
    }
}

type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = wasmtime_wasi_http::Result<(Response<WasiBody>, IoFuture)>> + Send>
    {
        let policy = self.policy.clone();
        let provider = self.provider.clone();
        // If the request is refused or fails before its body is sent, the guest may
        // still be writing that body; dropping the receiving end under it makes some
        // guest runtimes (componentize-js) abort instead of seeing the HTTP error.
        let request = request.map(|body| DrainOnDrop(Some(body)).boxed_unsync());
        Box::new(async move {
            let response = send(&policy, &provider, request, options).await?;
            // The pooled client drives connections on tasks of its own, so there is
            // no per-request I/O future to hand back.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// A request body that, if dropped before it ended, keeps reading (and discarding)
/// what the guest still writes, up to a bound, so the guest's writes complete.
struct DrainOnDrop(Option<WasiBody>);

/// How much of an unsent body is read and discarded, and for how long.
const DRAIN_BYTES: usize = 4 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

impl Body for DrainOnDrop {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let drain = async {
                    let mut seen = 0usize;
                    while let Some(Ok(frame)) = body.frame().await {
                        seen += frame.data_ref().map_or(0, |d| d.len());
                        if seen > DRAIN_BYTES {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            });
        }
    }
}

/// Where a request is going, normalized for matching.
#[derive(Debug)]
struct Target {
    scheme: EgressScheme,
    /// Lowercased, brackets and one trailing dot removed.
    host: String,
    /// `Some` when the host is an IP literal (canonical: mapped IPv6 → IPv4).
    ip: Option<IpAddr>,
    port: u16,
}

impl Target {
    fn of(uri: &Uri) -> Result<Self, &'static str> {
        let scheme = uri
            .scheme_str()
            .and_then(EgressScheme::parse)
            .ok_or("unsupported scheme")?;
        let authority = uri.authority().ok_or("no authority")?;
        if authority.as_str().contains('@') {
            return Err("userinfo in the authority");
        }
        let raw = authority.host();
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        let host = unbracketed
            .strip_suffix('.')
            .unwrap_or(unbracketed)
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("empty host");
        }
        let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        if port == 0 {
            return Err("port 0");
        }
        Ok(Target {
            scheme,
            host,
            ip,
            port,
        })
    }
}

/// Log and count a refusal; returns the error for the guest.
fn refuse(
    policy: &EgressPolicy,
    provider: &str,
    target: Option<&Target>,
    reason: RefusalReason,
    detail: &str,
    error: HttpError,
) -> HttpError {
    policy
        .inner
        .counters
        .refused(reason)
        .fetch_add(1, Ordering::Relaxed);
    let (scheme, host, port) = match target {
        Some(t) => (t.scheme.as_str(), t.host.as_str(), t.port),
        None => ("", "", 0),
    };
    tracing::warn!(
        target: "tamma::egress",
        provider,
        scheme,
        host,
        port,
        reason = reason.as_str(),
        detail,
        "outbound request refused"
    );
    error
}

async fn send(
    policy: &EgressPolicy,
    provider: &str,
    mut req: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Response<WasiBody>, HttpError> {
    let inner = &policy.inner;
    let limits = &inner.limits;
    let started = Instant::now();
    let total_deadline = started + limits.total_timeout();

    // 1. Allowlist.
    let target = match Target::of(req.uri()) {
        Ok(t) => t,
        Err(why) => {
            return Err(refuse(
                policy,
                provider,
                None,
                RefusalReason::NotAllowed,
                why,
                HttpError::HttpRequestDenied,
            ))
        }
    };
    if req.method() == Method::CONNECT {
        // A tunnel through an allowed host would bypass every other check.
        return Err(refuse(
            policy,
            provider,
            Some(&target),
            RefusalReason::NotAllowed,
            "CONNECT method",
            HttpError::HttpRequestDenied,
        ));
    }
    if !inner.rules.iter().any(|r| r.matches(&target)) {
        return Err(refuse(
            policy,
            provider,
            Some(&target),
            RefusalReason::NotAllowed,
            "no allowed-host entry matches",
            HttpError::HttpRequestDenied,
        ));
    }

    // 2. Concurrency: the permit travels with the response body.
    let permit = match inner.in_flight.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            return Err(refuse(
                policy,
                provider,
                Some(&target),
                RefusalReason::Concurrency,
                "max_concurrent_requests in flight",
                HttpError::ConnectionLimitReached,
            ))
        }
    };

    // 3. Headers: secrets in, Host from the authority (never the guest's).
    for value in req.headers_mut().values_mut() {
        match substitute_secrets(value, &inner.secrets) {
            Ok(Some(substituted)) => *value = substituted,
            Ok(None) => {}
            Err(e) => {
                return Err(refuse(
                    policy,
                    provider,
                    Some(&target),
                    RefusalReason::UnknownSecret,
                    &e.to_string(),
                    HttpError::HttpRequestDenied,
                ))
            }
        }
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .unwrap_or_default();
    let host_header =
        HeaderValue::from_str(authority).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    req.headers_mut().insert(HOST, host_header);

    // 4. Resolve and check every address; keep the allowed ones.
    let candidates = match target.ip {
        Some(ip) => vec![ip],
        None => {
            let lookup = inner.resolver.resolve(&target.host, target.port);
            match tokio::time::timeout(limits.connect_timeout(), lookup).await {
                Err(_) => {
                    inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(HttpError::DnsTimeout);
                }
                Ok(Err(e)) => {
                    inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "tamma::egress", provider, host = %target.host, error = %e, "name resolution failed");
                    return Err(HttpError::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
                Ok(Ok(ips)) => ips,
            }
        }
    };
    if candidates.is_empty() {
        inner.counters.failed.fetch_add(1, Ordering::Relaxed);
        return Err(HttpError::DestinationNotFound);
    }
    let allowed = |ip: IpAddr| {
        classify_ip(ip) == AddressClass::Public
            || inner.rules.iter().any(|r| r.grants_address(&target, ip))
    };
    let Some(ip) = candidates
        .iter()
        .map(IpAddr::to_canonical)
        .find(|ip| allowed(*ip))
    else {
        let first = candidates[0].to_canonical();
        let detail = format!("{first} is {}", classify_ip(first).as_str());
        return Err(refuse(
            policy,
            provider,
            Some(&target),
            RefusalReason::AddressProhibited,
            &detail,
            HttpError::DestinationIpProhibited,
        ));
    };

    // 5. Send through the pool, pinned to the checked address.
    let addr = SocketAddr::new(ip, target.port);
    let client = client_for(addr, limits.connect_timeout());
    let guest = options.unwrap_or_default();
    let first_byte = guest
        .first_byte_timeout
        .map_or(limits.first_byte_timeout(), |t| {
            t.min(limits.first_byte_timeout())
        });
    let first_byte_deadline = (started + first_byte).min(total_deadline);
    inner.counters.sent.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(target: "tamma::egress", provider, scheme = target.scheme.as_str(), host = %target.host, port = target.port, %ip, "outbound request");

    let response = match tokio::time::timeout_at(first_byte_deadline, client.request(req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            inner.counters.failed.fetch_add(1, Ordering::Relaxed);
            let mapped = map_client_error(&e);
            tracing::warn!(target: "tamma::egress", provider, host = %target.host, port = target.port, error = %error_chain(&e), "outbound request failed");
            return Err(mapped);
        }
        Err(_) => {
            inner.counters.failed.fetch_add(1, Ordering::Relaxed);
            let total_fired = first_byte_deadline >= total_deadline;
            tracing::warn!(target: "tamma::egress", provider, host = %target.host, port = target.port, "outbound request timed out before the response headers");
            return Err(if total_fired {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::ConnectionReadTimeout
            });
        }
    };

    let between_bytes = guest.between_bytes_timeout.map(|d| {
        // tokio panics on nothing here, but a zero would fail every frame; 1 ns
        // is what wasmtime's own client uses for "effectively zero".
        d.max(Duration::from_nanos(1))
    });
    Ok(response.map(|incoming| {
        LimitedBody {
            inner: Some(incoming),
            remaining: limits.max_response_body_bytes,
            limit: limits.max_response_body_bytes,
            total: Box::pin(tokio::time::sleep_until(total_deadline)),
            between_bytes: between_bytes.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            permit: Some(permit),
        }
        .boxed_unsync()
    }))
}

/// The response body as the guest sees it: size-capped, under the total and
/// between-bytes timeouts, holding the concurrency permit until it ends.
struct LimitedBody {
    /// `None` once finished or failed: later polls end the stream.
    inner: Option<hyper::body::Incoming>,
    remaining: u64,
    limit: u64,
    total: Pin<Box<Sleep>>,
    between_bytes: Option<(Duration, Pin<Box<Sleep>>)>,
    permit: Option<OwnedSemaphorePermit>,
}

impl LimitedBody {
    /// Stop: drop the connection's body (hyper then closes rather than reuses a
    /// half-read connection) and give back the permit.
    fn finish(&mut self) {
        self.inner = None;
        self.permit = None;
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // A declared length over the cap fails before reading any of it.
        if inner.size_hint().lower() > this.remaining {
            let limit = this.limit;
            this.finish();
            return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(limit)))));
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        let limit = this.limit;
                        this.finish();
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            limit,
                        )))));
                    }
                    this.remaining -= len;
                }
                if let Some((d, sleep)) = this.between_bytes.as_mut() {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(if e.is_incomplete_message() {
                    HttpError::HttpResponseIncomplete
                } else {
                    HttpError::Hyper(e)
                })))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.total.as_mut().poll(cx).is_ready() {
                    this.finish();
                    return Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)));
                }
                if let Some((_, sleep)) = this.between_bytes.as_mut() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.finish();
                        return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Turn a pooled-client error into the closest `wasi:http` error code.
fn map_client_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(c) = cause.downcast_ref::<ConnectError>() {
            return c.to_http_error();
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            return if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                HttpError::ConnectionTerminated
            } else if h.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::HttpProtocolError
            };
        }
        source = cause.source();
    }
    if e.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
    }
}

// ---------------------------------------------------------------------------
// The shared connection pool
// ---------------------------------------------------------------------------

type PooledClient = Client<PinnedConnector, WasiBody>;

/// One pooled client per (checked address, connect timeout). Inside a client,
/// hyper-util pools by (scheme, authority), so the effective pool key is
/// (ip, port, connect timeout, scheme, host). Connect timeouts come from the
/// policy (not the guest), so in practice there is one client per address.
static CLIENTS: LazyLock<Mutex<HashMap<(SocketAddr, Duration), PooledClient>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Bound on distinct pooled clients: past it the map is emptied (in-flight
/// requests keep their clones; only idle connections are dropped). DNS rotation
/// across many addresses would otherwise grow the map forever.
const MAX_CLIENTS: usize = 1024;

fn client_for(addr: SocketAddr, connect_timeout: Duration) -> PooledClient {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    let key = (addr, connect_timeout);
    if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
        clients.clear();
    }
    clients
        .entry(key)
        .or_insert_with(|| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(32)
                .build(PinnedConnector {
                    addr,
                    connect_timeout,
                })
        })
        .clone()
}

static TLS_CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    // An explicit provider: `ClientConfig::builder()` panics if another crate in
    // the build turns on a second rustls backend.
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
});

/// Connects to one fixed, already-checked address whatever the URI's host
/// resolves to; the URI's host is used only for TLS (SNI and certificate name).
#[derive(Clone)]
struct PinnedConnector {
    addr: SocketAddr,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for PinnedConnector {
    type Response = PinnedConnection;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<PinnedConnection, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let addr = self.addr;
        let timeout = self.connect_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connect(addr, uri)).await {
                Ok(result) => result,
                Err(_) => Err(ConnectError::Timeout),
            }
        })
    }
}

async fn connect(addr: SocketAddr, uri: Uri) -> Result<PinnedConnection, ConnectError> {
    let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
    // Requests are small and latency-bound; Nagle only adds delay.
    let _ = tcp.set_nodelay(true);
    if uri.scheme_str() != Some("https") {
        return Ok(PinnedConnection {
            io: TokioIo::new(Stream::Plain(tcp)),
            h2: false,
        });
    }
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| ConnectError::BadServerName)?,
    };
    let tls = tokio_rustls::TlsConnector::from(TLS_CONFIG.clone())
        .connect(name, tcp)
        .await
        .map_err(ConnectError::Tls)?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok(PinnedConnection {
        io: TokioIo::new(Stream::Tls(Box::new(tls))),
        h2,
    })
}

/// Why connecting failed (kept as a type so the error chain can be mapped to a
/// `wasi:http` code after hyper-util wraps it).
#[derive(Debug)]
enum ConnectError {
    Timeout,
    Tcp(io::Error),
    Tls(io::Error),
    BadServerName,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Tcp(e) => write!(f, "TCP connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::BadServerName => f.write_str("host is not a valid TLS server name"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    fn to_http_error(&self) -> HttpError {
        match self {
            ConnectError::Timeout => HttpError::ConnectionTimeout,
            ConnectError::Tcp(e) => match e.kind() {
                io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
                io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
                    HttpError::DestinationUnavailable
                }
                _ => HttpError::ConnectionRefused,
            },
            ConnectError::Tls(e) => {
                match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
                    Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
                        alert_id: Some(u8::from(*alert)),
                        alert_message: Some(format!("{alert:?}")),
                    },
                    _ => HttpError::TlsProtocolError,
                }
            }
            ConnectError::BadServerName => HttpError::TlsProtocolError,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection as hyper-util wants it: hyper I/O traits plus ALPN metadata.
struct PinnedConnection {
    io: TokioIo<Stream>,
    h2: bool,
}

impl Connection for PinnedConnection {
    fn connected(&self) -> Connected {
        if self.h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for PinnedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PinnedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    use http_body_util::combinators::UnsyncBoxBody;
    use http_body_util::{Empty, Full};

    // ----- parsing and matching -----

    fn rule(entry: &str) -> AllowedHost {
        AllowedHost::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"))
    }

    fn target(uri: &str) -> Target {
        Target::of(&uri.parse::<Uri>().unwrap()).unwrap()
    }

    fn matches(entry: &str, uri: &str) -> bool {
        rule(entry).matches(&target(uri))
    }

    #[test]
    fn exact_entries_default_the_port_and_normalize() {
        let r = rule("HTTPS://API.Example.com.");
        assert_eq!(r.scheme, EgressScheme::Https);
        assert_eq!(r.host, HostPattern::Name("api.example.com".into()));
        assert_eq!(r.port, PortSpec::Exact(443));
        assert_eq!(rule("http://api.example.com").port, PortSpec::Exact(80));

        assert!(matches(
            "https://api.example.com",
            "https://api.example.com/v1"
        ));
        assert!(matches(
            "https://api.example.com",
            "https://API.example.com.:443/"
        ));
        assert!(!matches(
            "https://api.example.com",
            "http://api.example.com/"
        ));
        assert!(!matches(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(!matches(
            "https://api.example.com",
            "https://api.example.org/"
        ));
        assert!(!matches(
            "https://api.example.com",
            "https://x.api.example.com/"
        ));
        assert!(matches("http://localhost:8080", "http://localhost:8080/"));
    }

    #[test]
    fn wildcards_cover_subdomains_but_not_the_apex() {
        let w = "https://*.example.com";
        assert!(matches(w, "https://a.example.com/"));
        assert!(matches(w, "https://a.b.example.com/"));
        assert!(!matches(w, "https://example.com/"));
        assert!(!matches(w, "https://badexample.com/"));
        assert!(!matches(w, "https://example.com.evil.test/"));
        assert!(!matches(w, "https://a.example.com:444/"));
        assert!(matches(
            "https://*.example.com:*",
            "https://a.example.com:444/"
        ));
    }

    #[test]
    fn ip_and_cidr_entries_and_any_port() {
        assert!(matches("http://127.0.0.1:8080", "http://127.0.0.1:8080/"));
        assert!(!matches("http://127.0.0.1:8080", "http://127.0.0.2:8080/"));
        assert!(!matches("http://127.0.0.1:8080", "http://127.0.0.1:8081/"));
        assert!(matches("http://127.0.0.1:*", "http://127.0.0.1:9/"));
        assert!(matches("http://10.0.0.0/8:*", "http://10.200.3.4:1234/"));
        assert!(!matches("http://10.0.0.0/8:*", "http://11.0.0.1:1234/"));
        assert!(matches("http://[::1]:*", "http://[::1]:5000/"));
        assert!(matches("https://[fd00::/8]", "https://[fd12::7]/"));
        assert!(!matches("https://[fd00::/8]", "https://[fe80::1]/"));
        // A mapped IPv6 literal is the IPv4 address it maps.
        assert!(matches("http://127.0.0.1:80", "http://[::ffff:127.0.0.1]/"));
        assert!(matches(
            "http://[::ffff:10.0.0.0/104]:*",
            "http://10.1.1.1:1/"
        ));
        // An IP entry does not match a name and a name entry does not match an IP.
        assert!(!matches("http://127.0.0.1", "http://localhost/"));
        assert!(!matches("http://localhost", "http://127.0.0.1/"));
        // `/0` covers everything of that family.
        assert!(matches("http://0.0.0.0/0:*", "http://8.8.8.8:53/"));
    }

    #[test]
    fn malformed_entries_are_all_reported() {
        let bad = [
            "api.example.com",              // no scheme
            "ftp://api.example.com",        // scheme
            "https://api.example.com/v1",   // path
            "https://user@api.example.com", // userinfo
            "https://api.example.com:0",    // port 0
            "https://api.example.com:99999",
            "https://api.example.com:abc",
            "https://*",
            "https://*.com",
            "https://a.*.example.com",
            "https://foo*.example.com",
            "https://::1",         // unbracketed IPv6
            "https://[::1",        // unclosed
            "https://[127.0.0.1]", // brackets around IPv4
            "https://10.0.0.1/8",  // host bits set
            "https://10.0.0.0/33", // prefix
            "https://[fe80::1%eth0]",
            "https://-bad-.example.com",
            "https://127.1", // IP in a form we do not take
            "https://",
        ];
        let entries: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        let err = parse_allowed_hosts(&entries).unwrap_err();
        assert_eq!(err.problems.len(), bad.len(), "{:#?}", err.problems);
        for (entry, problem) in bad.iter().zip(&err.problems) {
            assert!(problem.contains(entry), "{problem} should name {entry}");
        }
        // Good ones mixed in are not reported.
        let mixed = vec!["https://ok.example.com".to_string(), "nope".to_string()];
        assert_eq!(parse_allowed_hosts(&mixed).unwrap_err().problems.len(), 1);
        // The lenient constructor drops them: nothing is granted by a bad entry.
        let p = EgressPolicy::new(mixed, BTreeMap::new());
        assert_eq!(p.inner.rules.len(), 1);
    }

    #[test]
    fn ip_classification() {
        use AddressClass::*;
        let cases: &[(&str, AddressClass)] = &[
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.100.100.200", SharedAddressSpace),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("224.0.0.1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("198.18.0.1", Reserved),
            ("2606:4700::1111", Public),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fe80::1", LinkLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("ff02::1", Multicast),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("64:ff9b::a00:1", Private),
            ("2002:7f00:1::", Loopback),
        ];
        for (ip, class) in cases {
            assert_eq!(classify_ip(ip.parse().unwrap()), *class, "{ip}");
        }
    }

    #[test]
    fn limits_defaults_and_validation() {
        let d = EgressLimits::default();
        assert_eq!(d.connect_timeout_ms, 10_000);
        assert_eq!(d.first_byte_timeout_ms, 60_000);
        assert_eq!(d.total_timeout_ms, 300_000);
        assert_eq!(d.max_response_body_bytes, 32 << 20);
        assert_eq!(d.max_concurrent_requests, 16);
        assert!(d.validate().is_empty());
        let bad = EgressLimits {
            connect_timeout_ms: 0,
            first_byte_timeout_ms: 400_000,
            total_timeout_ms: 300_000,
            max_response_body_bytes: 0,
            max_concurrent_requests: 0,
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let parsed: EgressLimits = serde_json::from_str(r#"{"total_timeout_ms": 5}"#).unwrap();
        assert_eq!(parsed.total_timeout_ms, 5);
        assert_eq!(parsed.connect_timeout_ms, 10_000);
        assert!(serde_json::from_str::<EgressLimits>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn secret_substitution_and_redaction() {
        let secrets: BTreeMap<String, Secret> = [
            ("api_key".to_string(), Secret::new("sk-123")),
            ("org".to_string(), Secret::new("org-9")),
        ]
        .into();
        let sub = |v: &str| substitute_secrets(&HeaderValue::from_str(v).unwrap(), &secrets);
        assert_eq!(sub("plain").unwrap(), None);
        let v = sub("Bearer {{secret:api_key}}").unwrap().unwrap();
        assert_eq!(v.as_bytes(), b"Bearer sk-123");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("sk-123"));
        assert_eq!(
            sub("{{secret:api_key}}/{{secret:org}}")
                .unwrap()
                .unwrap()
                .as_bytes(),
            b"sk-123/org-9"
        );
        assert_eq!(
            sub("{{secret:nope}}"),
            Err(SecretError::Unknown("nope".into()))
        );
        assert_eq!(sub("{{secret:api_key"), Err(SecretError::Malformed));
        assert_eq!(sub("{{secret:a b}}"), Err(SecretError::Malformed));

        assert_eq!(format!("{:?}", Secret::new("sk-123")), "[redacted]");
        let policy = EgressPolicy::new(vec![], [("api_key".into(), "sk-123".into())].into());
        let debug = format!("{policy:?}");
        assert!(
            debug.contains("api_key") && !debug.contains("sk-123"),
            "{debug}"
        );
        assert_eq!(policy.secret_names(), ["api_key"]);

        // Config errors name the secret, never the value.
        let err = EgressPolicy::try_new(
            vec![],
            [("bad name".into(), "sk-\n123".into())].into(),
            EgressLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(!err.to_string().contains("sk-"), "{err}");
    }

    // ----- the send hook against a real server -----

    type TestBody = UnsyncBoxBody<Bytes, Infallible>;

    struct TestServer {
        port: u16,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<http::HeaderMap>>>,
    }

    impl TestServer {
        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
        fn requests(&self) -> Vec<http::HeaderMap> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// An HTTP/1.1 server on 127.0.0.1:0 that counts connections, records request
    /// headers and answers by path.
    async fn start_server() -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let reqs = reqs.clone();
                        async move { Ok::<_, Infallible>(answer(req, reqs).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer {
            port,
            connections,
            requests,
        }
    }

    async fn answer(
        req: Request<hyper::body::Incoming>,
        requests: Arc<Mutex<Vec<http::HeaderMap>>>,
    ) -> Response<TestBody> {
        requests.lock().unwrap().push(req.headers().clone());
        let full = |b: &'static [u8]| Full::new(Bytes::from_static(b)).boxed_unsync();
        let body = match req.uri().path() {
            "/big" => Full::new(Bytes::from(vec![b'x'; 64 * 1024])).boxed_unsync(),
            "/stream" | "/hold" => {
                // No Content-Length: chunked, so the cap has to count.
                let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(1);
                let hold = req.uri().path() == "/hold";
                tokio::spawn(async move {
                    for _ in 0..if hold { 1 } else { 8 } {
                        if tx.send_data(Bytes::from(vec![b'y'; 1024])).await.is_err() {
                            return;
                        }
                    }
                    if hold {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                });
                body.boxed_unsync()
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                full(b"late")
            }
            _ => full(b"hello"),
        };
        Response::new(body)
    }

    const NAME: &str = "api.example.test";

    fn resolver() -> Arc<dyn Resolver> {
        Arc::new(
            StaticResolver::new()
                .with(NAME, [IpAddr::V4(Ipv4Addr::LOCALHOST)])
                .with("other.example.test", [IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        )
    }

    /// A policy granting `api.example.test:port` *and* 127.0.0.1:port (the IP
    /// grant is what lets the name reach loopback).
    fn policy_for(port: u16, limits: EgressLimits) -> EgressPolicy {
        EgressPolicy::try_new(
            vec![
                format!("http://{NAME}:{port}"),
                format!("http://127.0.0.1:{port}"),
            ],
            [("api_key".to_string(), "sk-test-123".to_string())].into(),
            limits,
        )
        .unwrap()
        .with_resolver(resolver())
    }

    fn empty() -> WasiBody {
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    fn get(uri: &str) -> http::request::Builder {
        Request::builder().method(Method::GET).uri(uri)
    }

    async fn send_via(
        policy: &EgressPolicy,
        req: Request<WasiBody>,
    ) -> Result<Response<WasiBody>, HttpError> {
        let mut hooks = EgressHooks::new(Arc::from("test-provider"), policy.clone());
        let fut = hooks.send_request(req, None, Box::new(async { Ok(()) }));
        Pin::from(fut).await.map(|(response, _io)| response)
    }

    async fn body_of(response: Response<WasiBody>) -> Result<Bytes, HttpError> {
        Ok(response.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn allowed_request_reaches_server_with_secrets_substituted() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .header("authorization", "Bearer {{secret:api_key}}")
            .header("x-api-key", "{{secret:api_key}}")
            .header("x-plain", "kept")
            .body(empty())
            .unwrap();
        let response = send_via(&policy, req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response).await.unwrap(), "hello");
        let seen = &server.requests()[0];
        assert_eq!(seen["authorization"], "Bearer sk-test-123");
        assert_eq!(seen["x-api-key"], "sk-test-123");
        assert_eq!(seen["x-plain"], "kept");
        assert_eq!(policy.counters().sent, 1);
        assert_eq!(policy.refused(), 0);
    }

    #[tokio::test]
    async fn host_not_granted_is_refused_before_connecting() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        // Resolves to the same server: the allowlist, not DNS, refuses it.
        for uri in [
            format!("http://other.example.test:{}/ok", server.port),
            format!("https://{NAME}:{}/ok", server.port), // wrong scheme
            format!("http://{NAME}:{}/ok", server.port + 1), // wrong port
            format!("http://127.0.0.2:{}/ok", server.port), // IP not granted
        ] {
            let err = send_via(&policy, get(&uri).body(empty()).unwrap())
                .await
                .unwrap_err();
            assert!(matches!(err, HttpError::HttpRequestDenied), "{uri}: {err}");
        }
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://{NAME}:{}/", server.port))
            .body(empty())
            .unwrap();
        assert!(matches!(
            send_via(&policy, connect).await,
            Err(HttpError::HttpRequestDenied)
        ));
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_not_allowed, 5);
        assert_eq!(policy.refused(), 5);
        assert_eq!(policy.counters().sent, 0);
    }

    #[tokio::test]
    async fn granted_name_resolving_to_loopback_is_prohibited() {
        let server = start_server().await;
        // The name is granted, the address it resolves to is not.
        let policy = EgressPolicy::new(
            vec![format!("http://{NAME}:{}", server.port)],
            BTreeMap::new(),
        )
        .with_resolver(resolver());
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .body(empty())
            .unwrap();
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err}");
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_address_prohibited, 1);

        // Rebinding-style answer with an internal and a granted address: only the
        // granted one is used.
        let policy = EgressPolicy::new(
            vec![
                format!("http://{NAME}:{}", server.port),
                format!("http://127.0.0.1:{}", server.port),
            ],
            BTreeMap::new(),
        )
        .with_resolver(Arc::new(StaticResolver::new().with(
            NAME,
            [
                "169.254.169.254".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ],
        )));
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .body(empty())
            .unwrap();
        assert_eq!(
            body_of(send_via(&policy, req).await.unwrap())
                .await
                .unwrap(),
            "hello"
        );
    }

    #[tokio::test]
    async fn host_header_comes_from_the_uri() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .header("host", "metadata.internal")
            .body(empty())
            .unwrap();
        body_of(send_via(&policy, req).await.unwrap())
            .await
            .unwrap();
        let seen = &server.requests()[0];
        let hosts: Vec<_> = seen.get_all("host").iter().collect();
        assert_eq!(hosts, [format!("{NAME}:{}", server.port).as_str()]);
    }

    #[tokio::test]
    async fn unknown_secret_is_refused_and_never_sent() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        for value in ["Bearer {{secret:other}}", "{{secret:api_key"] {
            let req = get(&format!("http://{NAME}:{}/ok", server.port))
                .header("authorization", value)
                .body(empty())
                .unwrap();
            let err = send_via(&policy, req).await.unwrap_err();
            assert!(matches!(err, HttpError::HttpRequestDenied), "{err}");
        }
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_unknown_secret, 2);
    }

    #[tokio::test]
    async fn response_body_is_capped() {
        let server = start_server().await;
        let limits = EgressLimits {
            max_response_body_bytes: 4096,
            ..EgressLimits::default()
        };
        let policy = policy_for(server.port, limits);
        // Declared length over the cap, and a chunked body that grows past it.
        for path in ["/big", "/stream"] {
            let req = get(&format!("http://{NAME}:{}{path}", server.port))
                .body(empty())
                .unwrap();
            let response = send_via(&policy, req).await.unwrap();
            let err = body_of(response).await.unwrap_err();
            assert!(
                matches!(err, HttpError::HttpResponseBodySize(Some(4096))),
                "{path}: {err}"
            );
        }
        // Under the cap is fine, and a failed body gave its permit back.
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .body(empty())
            .unwrap();
        assert_eq!(
            body_of(send_via(&policy, req).await.unwrap())
                .await
                .unwrap(),
            "hello"
        );
        assert_eq!(policy.inner.in_flight.available_permits(), 16);
    }

    #[tokio::test]
    async fn first_byte_timeout_fires() {
        let server = start_server().await;
        let limits = EgressLimits {
            connect_timeout_ms: 100,
            first_byte_timeout_ms: 100,
            ..EgressLimits::default()
        };
        let policy = policy_for(server.port, limits);
        let started = std::time::Instant::now();
        let req = get(&format!("http://{NAME}:{}/slow", server.port))
            .body(empty())
            .unwrap();
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::ConnectionReadTimeout), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(280),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(policy.counters().failed, 1);
    }

    #[tokio::test]
    async fn concurrency_cap_fails_fast_and_frees_on_body_end() {
        let server = start_server().await;
        let limits = EgressLimits {
            max_concurrent_requests: 1,
            ..EgressLimits::default()
        };
        let policy = policy_for(server.port, limits);
        let url = |path: &str| format!("http://{NAME}:{}{path}", server.port);
        let held = send_via(&policy, get(&url("/hold")).body(empty()).unwrap())
            .await
            .unwrap();
        let err = send_via(&policy, get(&url("/ok")).body(empty()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::ConnectionLimitReached), "{err}");
        assert_eq!(policy.counters().refused_concurrency, 1);
        // Dropping the unfinished body releases the slot.
        drop(held);
        let ok = send_via(&policy, get(&url("/ok")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(body_of(ok).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn connections_are_reused_but_not_across_a_refusing_policy() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let url = format!("http://{NAME}:{}/ok", server.port);
        for _ in 0..2 {
            let response = send_via(&policy, get(&url).body(empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(body_of(response).await.unwrap(), "hello");
            // Let the pool take the connection back (a spawned task does it).
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(server.connections(), 1);
        assert_eq!(server.requests().len(), 2);

        // Another provider granted the name but not the loopback address: the
        // idle pooled connection to 127.0.0.1 must not serve it.
        let other = EgressPolicy::new(
            vec![format!("http://{NAME}:{}", server.port)],
            BTreeMap::new(),
        )
        .with_resolver(resolver());
        let err = send_via(&other, get(&url).body(empty()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err}");
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn logs_never_hold_secrets_or_headers() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let url = format!("http://{NAME}:{}/ok", server.port);
        let ok = get(&url)
            .header("authorization", "Bearer {{secret:api_key}}")
            .body(empty())
            .unwrap();
        body_of(send_via(&policy, ok).await.unwrap()).await.unwrap();
        let bad = get(&url)
            .header("authorization", "Bearer {{secret:api_key}}")
            .header("x-other", "{{secret:missing}}")
            .body(empty())
            .unwrap();
        send_via(&policy, bad).await.unwrap_err();

        let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("outbound request refused"), "{logs}");
        assert!(logs.contains("unknown secret"), "{logs}");
        assert!(logs.contains("test-provider"), "{logs}");
        assert!(!logs.contains("sk-test-123"), "{logs}");
        assert!(!logs.contains("Bearer"), "{logs}");
    }

    /// A throwaway self-signed certificate for `api.example.test` (made with
    /// `openssl req -x509 -newkey ec ...`); not a secret, trusted by nothing.
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBqjCCAVCgAwIBAgIUFb1e43CU83EMkTwD9tIgrxPZHBUwCgYIKoZIzj0EAwIw\n\
GzEZMBcGA1UEAwwQYXBpLmV4YW1wbGUudGVzdDAgFw0yNjExMjYxOTU5MDFaGA8y\n\
MTI2MTEwMjE5NTkwMVowGzEZMBcGA1UEAwwQYXBpLmV4YW1wbGUudGVzdDBZMBMG\n\
ByqGSM49AgEGCCqGSM49AwEHA0IABJWVTnGv4Me3LGSIAZ7pvbdmOpbQBTorDj7x\n\
W+r/uAMzd21KDArvOJGnIxT19bFlZd0iB4g8eqLHuZRqZkoNuO+jcDBuMB0GA1Ud\n\
DgQWBBSmQQbpqrGhIpi5eSd6suuneJF21jAfBgNVHSMEGDAWgBSmQQbpqrGhIpi5\n\
eSd6suuneJF21jAPBgNVHRMBAf8EBTADAQH/MBsGA1UdEQQUMBKCEGFwaS5leGFt\n\
cGxlLnRlc3QwCgYIKoZIzj0EAwIDSAAwRQIhANWW4GP0JF97XTS/juOXK5M9I1DP\n\
qaiWy1kxwR+ObucIAiAsYF9iEzqzxrSI7X3c8TiF/rOFuVAMwQ0uu6Ay70RyAA==\n\
-----END CERTIFICATE-----";
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsdy5HKSI20gQgdRc\n\
YBdhfHotBXoLkxY7kFC5wFjHg+ahRANCAASVlU5xr+DHtyxkiAGe6b23ZjqW0AU6\n\
Kw4+8Vvq/7gDM3dtSgwK7ziRpyMU9fWxZWXdIgeIPHqix7mUamZKDbjv\n\
-----END PRIVATE KEY-----";

    #[tokio::test]
    async fn https_sends_sni_and_alpn_and_rejects_untrusted_certificates() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let cert = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hello_tx, hello_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
            let start = acceptor.await.unwrap();
            let hello = start.client_hello();
            let sni = hello.server_name().map(str::to_owned);
            let alpn: Vec<Vec<u8>> = hello
                .alpn()
                .map(|a| a.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            let _ = hello_tx.send((sni, alpn));
            // The client aborts: our certificate is not in the webpki roots.
            let _ = start.into_stream(config).await;
        });

        let policy = EgressPolicy::try_new(
            vec![
                format!("https://{NAME}:{port}"),
                format!("https://127.0.0.1:{port}"),
            ],
            BTreeMap::new(),
            EgressLimits::default(),
        )
        .unwrap()
        .with_resolver(resolver());
        let req = get(&format!("https://{NAME}:{port}/v1"))
            .body(empty())
            .unwrap();
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::TlsCertificateError), "{err}");
        let (sni, alpn) = hello_rx.await.unwrap();
        // SNI is the granted name, not the pinned address.
        assert_eq!(sni.as_deref(), Some(NAME));
        assert_eq!(alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(policy.counters().failed, 1);
    }
}
