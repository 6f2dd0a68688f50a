//! Allowed-host entries: parsing `scheme://HOST[:PORT]` (syntax in the
//! [module docs](super)) and matching a request's [`Target`] against them.
//!
//! The entry grammar (brackets, wildcards, `:*`, CIDR after the host) is ours,
//! so it is split by hand; the network arithmetic is the `ipnet` crate's.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::config_error::EgressConfigError;
use super::target::Target;

/// `http` or `https`: the only schemes an entry (or a request) may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressScheme {
    /// Plain HTTP (default port 80).
    Http,
    /// HTTP over TLS (default port 443).
    Https,
}

impl EgressScheme {
    /// The scheme named `s` (case-insensitive), if it is one we allow.
    pub(super) fn parse(s: &str) -> Option<Self> {
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

    /// The scheme's name, for logs.
    pub(super) fn as_str(self) -> &'static str {
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

/// The host part of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// A DNS name, lowercased, without a trailing dot.
    Name(String),
    /// `*.suffix`: holds `suffix` (lowercased); matches names strictly below it.
    Wildcard(String),
    /// An IP address or CIDR range; IPv4-mapped IPv6 entries are held as IPv4.
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
            (HostPattern::Ip(parse_net(addr, prefix)?), port)
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
                HostPattern::Ip(parse_net(addr, Some(prefix))?)
            } else if host.parse::<Ipv4Addr>().is_ok() {
                HostPattern::Ip(parse_net(host, None)?)
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
    pub(super) fn matches(&self, target: &Target) -> bool {
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
            (HostPattern::Ip(net), Some(ip)) => net_contains(net, ip),
            _ => false,
        }
    }

    /// Whether this entry explicitly grants connecting to `ip` for `target`'s
    /// scheme and port (how internal addresses become reachable).
    pub(super) fn grants_address(&self, target: &Target, ip: IpAddr) -> bool {
        matches!(&self.host, HostPattern::Ip(net) if net_contains(net, ip))
            && self.scheme == target.scheme
            && self.port.matches(target.port)
    }
}

/// Whether `ip` is inside `net`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
/// count as their IPv4 address, matching how [`parse_net`] stores mapped
/// entries (`ipnet` itself never matches across address families).
fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip.to_canonical())
}

/// Parse `addr[/prefix]` into a network, refusing host bits.
///
/// Addresses and prefixes are parsed separately (rather than with `IpNet`'s
/// `FromStr`) so the errors say which part is wrong, and so that a mapped IPv6
/// range (`::ffff:10.0.0.0/104`) becomes the IPv4 range it means (`10.0.0.0/8`).
fn parse_net(addr: &str, prefix: Option<&str>) -> Result<IpNet, String> {
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
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
            p.checked_sub(offset)
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix /{p} is out of range"))?
        }
    };
    let net = IpNet::new(ip, prefix).map_err(|_| format!("prefix /{prefix} is out of range"))?;
    // Host bits set (`10.0.0.1/8`) usually means a typo; refuse rather than guess.
    if net.trunc() != net {
        return Err(format!(
            "`{addr}/{prefix}` has host bits set (did you mean {}/{prefix}?)",
            net.network()
        ));
    }
    Ok(net)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Uri;

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
    fn ip_entries_are_held_as_ipnet_networks() {
        let net = |entry: &str| match rule(entry).host {
            HostPattern::Ip(net) => net,
            other => panic!("{entry}: {other:?}"),
        };
        assert_eq!(net("http://10.0.0.0/8"), "10.0.0.0/8".parse().unwrap());
        assert_eq!(net("http://127.0.0.1"), "127.0.0.1/32".parse().unwrap());
        assert_eq!(net("http://[::1]"), "::1/128".parse().unwrap());
        // Mapped IPv6 entries become the IPv4 network they mean.
        assert_eq!(
            net("http://[::ffff:10.0.0.0/104]"),
            "10.0.0.0/8".parse().unwrap()
        );
        assert_eq!(
            net("http://[::ffff:127.0.0.1]"),
            "127.0.0.1/32".parse().unwrap()
        );
        // A mapped address is matched as the IPv4 address it maps.
        let v4 = net("http://10.0.0.0/8");
        assert!(net_contains(&v4, "::ffff:10.9.9.9".parse().unwrap()));
        assert!(!net_contains(&v4, "::10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn ip_entry_errors_keep_their_wording() {
        let err = |entry: &str| AllowedHost::parse(entry).unwrap_err();
        assert_eq!(
            err("https://10.0.0.1/8"),
            "`10.0.0.1/8` has host bits set (did you mean 10.0.0.0/8?)"
        );
        assert_eq!(err("https://10.0.0.0/33"), "prefix /33 is out of range");
        assert_eq!(err("https://[::/129]"), "prefix /129 is out of range");
        assert_eq!(
            err("https://[::ffff:10.0.0.0/80]"),
            "prefix /80 is out of range"
        );
        assert_eq!(err("https://10.0.0.0/x"), "`x` is not a prefix length");
        assert_eq!(err("https://[zz::1]"), "`zz::1` is not an IP address");
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
    }
}
