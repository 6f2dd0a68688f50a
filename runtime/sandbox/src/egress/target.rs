//! Where a request is going, normalized once so the allowlist, the address
//! check and the logs all see the same scheme, host and port.

use std::net::IpAddr;

use http::Uri;

use super::allowlist::EgressScheme;

/// Where a request is going, normalized for matching.
#[derive(Debug)]
pub(super) struct Target {
    /// The request's scheme (only `http` and `https` get this far).
    pub(super) scheme: EgressScheme,
    /// Lowercased, brackets and one trailing dot removed.
    pub(super) host: String,
    /// `Some` when the host is an IP literal (canonical: mapped IPv6 → IPv4).
    pub(super) ip: Option<IpAddr>,
    /// The explicit port, or the scheme's default; never 0.
    pub(super) port: u16,
}

impl Target {
    /// Normalize a request URI; the error is a short reason for the log.
    pub(super) fn of(uri: &Uri) -> Result<Self, &'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn of(uri: &str) -> Result<Target, &'static str> {
        Target::of(&uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn targets_are_normalized_and_malformed_ones_refused() {
        let t = of("HTTPS://API.Example.com.:8443/v1").unwrap();
        assert_eq!(t.scheme, EgressScheme::Https);
        assert_eq!(t.host, "api.example.com");
        assert_eq!(t.ip, None);
        assert_eq!(t.port, 8443);
        let t = of("http://[::ffff:127.0.0.1]/").unwrap();
        assert_eq!(t.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(t.port, 80);
        assert_eq!(of("ftp://example.com/").unwrap_err(), "unsupported scheme");
        assert_eq!(
            of("http://u@example.com/").unwrap_err(),
            "userinfo in the authority"
        );
        assert_eq!(of("http://example.com:0/").unwrap_err(), "port 0");
        assert_eq!(of("/relative").unwrap_err(), "unsupported scheme");
    }
}
