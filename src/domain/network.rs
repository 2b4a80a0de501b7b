//! Which network addresses are public: the classes of non-public addresses, and the classes an
//! operator may allow (`PGCOURIER_NETWORK_ALLOW`). Used by the SSRF guard ([`crate::egress`]) of
//! every URL a tenant makes the daemon call; pure, no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Loopback,
    Private,
    LinkLocal,
    Cgnat,
    Unspecified,
    /// Multicast, broadcast, documentation, benchmarking and other reserved ranges.
    Reserved,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Loopback => "loopback",
            Class::Private => "private",
            Class::LinkLocal => "link-local",
            Class::Cgnat => "CGNAT (shared)",
            Class::Unspecified => "unspecified",
            Class::Reserved => "reserved",
        }
    }
}

/// The classes an operator allowed; the default allows none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    pub loopback: bool,
    pub private: bool,
    pub link_local: bool,
    pub cgnat: bool,
}

impl Allow {
    /// Nothing but public addresses.
    pub const NONE: Allow = Allow { loopback: false, private: false, link_local: false, cgnat: false };

    /// Parse a comma-separated list (`loopback`, `private`, `link_local`, `cgnat`; empty = none).
    pub fn parse(list: &str) -> Result<Allow, String> {
        let mut allow = Allow::NONE;
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().replace('-', "_").as_str() {
                "loopback" => allow.loopback = true,
                "private" => allow.private = true,
                "link_local" => allow.link_local = true,
                "cgnat" => allow.cgnat = true,
                _ => return Err(format!("{item:?}: expected loopback, private, link_local or cgnat")),
            }
        }
        Ok(allow)
    }

    fn allows(&self, class: Class) -> bool {
        match class {
            Class::Loopback => self.loopback,
            Class::Private => self.private,
            Class::LinkLocal => self.link_local,
            Class::Cgnat => self.cgnat,
            Class::Unspecified | Class::Reserved => false,
        }
    }
}

/// The class of a non-public address; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = ip.octets();
    match (a, b) {
        (0, _) => Some(Class::Unspecified),
        (127, _) => Some(Class::Loopback),
        (10, _) | (172, 16..=31) | (192, 168) => Some(Class::Private),
        (169, 254) => Some(Class::LinkLocal),
        (100, 64..=127) => Some(Class::Cgnat),
        // IETF protocol assignments, documentation, benchmarking, multicast, 240/4 and broadcast
        (192, 0) if c == 0 || c == 2 => Some(Class::Reserved),
        (198, 18..=19) => Some(Class::Reserved),
        (198, 51) if c == 100 => Some(Class::Reserved),
        (203, 0) if c == 113 => Some(Class::Reserved),
        (224..=255, _) => Some(Class::Reserved),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    if ip.is_unspecified() {
        return Some(Class::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Class::Loopback);
    }
    let seg = ip.segments();
    // IPv4-mapped ::ffff:a.b.c.d and the deprecated IPv4-compatible ::a.b.c.d
    if seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0) {
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    // NAT64 64:ff9b::a.b.c.d
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    // 6to4 2002:AABB:CCDD::/48 carries a.b.c.d
    if seg[0] == 0x2002 {
        let [a, b] = seg[1].to_be_bytes();
        let [c, d] = seg[2].to_be_bytes();
        if let Some(class) = classify_v4(Ipv4Addr::new(a, b, c, d)) {
            return Some(class);
        }
    }
    match seg[0] {
        s if s & 0xfe00 == 0xfc00 => Some(Class::Private),   // fc00::/7 unique local
        s if s & 0xffc0 == 0xfe80 => Some(Class::LinkLocal), // fe80::/10
        s if s & 0xffc0 == 0xfec0 => Some(Class::Private),   // fec0::/10 site-local (deprecated)
        s if s & 0xff00 == 0xff00 => Some(Class::Reserved),  // multicast
        0x2001 if seg[1] == 0x0db8 => Some(Class::Reserved), // documentation
        _ => None,
    }
}

/// Whether `ip` may be connected to under `allow`; `Err` names the class that refuses it.
pub fn check_ip(ip: IpAddr, allow: &Allow) -> Result<(), Class> {
    match classify(ip) {
        Some(class) if !allow.allows(class) => Err(class),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<Class> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classes() {
        assert_eq!(class("127.0.0.1"), Some(Class::Loopback));
        assert_eq!(class("::1"), Some(Class::Loopback));
        assert_eq!(class("10.0.0.1"), Some(Class::Private));
        assert_eq!(class("172.31.255.1"), Some(Class::Private));
        assert_eq!(class("172.32.0.1"), None);
        assert_eq!(class("192.168.1.1"), Some(Class::Private));
        assert_eq!(class("fd00::1"), Some(Class::Private));
        assert_eq!(class("169.254.169.254"), Some(Class::LinkLocal));
        assert_eq!(class("fe80::1"), Some(Class::LinkLocal));
        assert_eq!(class("100.64.0.1"), Some(Class::Cgnat));
        assert_eq!(class("100.128.0.1"), None);
        assert_eq!(class("0.0.0.0"), Some(Class::Unspecified));
        assert_eq!(class("::"), Some(Class::Unspecified));
        assert_eq!(class("255.255.255.255"), Some(Class::Reserved));
        assert_eq!(class("224.0.0.1"), Some(Class::Reserved));
        assert_eq!(class("8.8.8.8"), None);
        assert_eq!(class("2606:4700:4700::1111"), None);
    }

    #[test]
    fn embedded_ipv4_is_judged_as_ipv4() {
        assert_eq!(class("::ffff:127.0.0.1"), Some(Class::Loopback));
        assert_eq!(class("::ffff:10.1.2.3"), Some(Class::Private));
        assert_eq!(class("::ffff:169.254.169.254"), Some(Class::LinkLocal));
        assert_eq!(class("64:ff9b::10.0.0.1"), Some(Class::Private));
        assert_eq!(class("2002:a00:1::"), Some(Class::Private));
        assert_eq!(class("::ffff:8.8.8.8"), None);
    }

    #[test]
    fn allowances() {
        let loopback = Allow::parse("loopback").unwrap();
        assert!(check_ip("127.0.0.1".parse().unwrap(), &loopback).is_ok());
        assert_eq!(check_ip("10.0.0.1".parse().unwrap(), &loopback), Err(Class::Private));
        assert_eq!(
            check_ip("0.0.0.0".parse().unwrap(), &Allow::parse("loopback,private,link-local,cgnat").unwrap()),
            Err(Class::Unspecified)
        );
        assert_eq!(Allow::parse(" ").unwrap(), Allow::NONE);
        assert!(Allow::parse("everything").is_err());
    }
}
