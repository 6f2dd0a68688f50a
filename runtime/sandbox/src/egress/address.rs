//! Address classes: which resolved addresses a provider may reach without an
//! explicit IP/CIDR grant (only public ones).
//!
//! Hand-written on purpose, not `std` or a crate: `std`'s `is_global`,
//! `is_shared`, `is_benchmarking`, `is_reserved` (and the IPv6 ones) are still
//! unstable (feature `ip`), and they judge an IPv6 address by its own IANA
//! range, not by the IPv4 address it embeds. On many hosts connecting to
//! `::ffff:127.0.0.1`, `::127.0.0.1`, NAT64 `64:ff9b::a00:1` or 6to4
//! `2002:7f00:1::` reaches that IPv4 address, so its class is the one we must
//! use. We also need the class itself (for the refusal log) and one for cloud
//! metadata, which no such predicate has. Every branch is exercised by the
//! `ip_classification` table test below.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// The class as words, for the refusal log.
    pub(super) fn as_str(self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
