//! The SSRF guard: a tenant's webhook URL must be `http`/`https` and its host must resolve only
//! to public addresses. Loopback, private (RFC 1918, fc00::/7), link-local (169.254/16,
//! fe80::/10), CGNAT (100.64/10) and unspecified addresses are refused, as are multicast,
//! broadcast and reserved ones; IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64,
//! 6to4) are judged as the IPv4 address they carry.
//!
//! Checked when an endpoint is created or changed, and again at every delivery (DNS can change):
//! the delivery client resolves through [`GuardedResolver`], so the address connected to is the
//! address that was checked. An operator may allow some classes with
//! `PGCOURIER_WEBHOOK_ALLOW=loopback,private,link_local,cgnat` (for example `loopback` for a
//! receiver on the same machine); unspecified, multicast and reserved addresses are never allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

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

/// Why a URL is refused (the message is safe to show the tenant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("is not a valid URL ({0})")]
    Invalid(String),
    #[error("must use http or https")]
    Scheme,
    #[error("must have a host")]
    NoHost,
    #[error("must not carry credentials (user:password@)")]
    Credentials,
    #[error("host {host} does not resolve ({problem})")]
    Unresolvable { host: String, problem: String },
    #[error("host {host} is a {} address, which webhooks may not call", .class.as_str())]
    Address { host: String, class: Class },
}

/// Parse `url` and check that it is `http`/`https` with a host that resolves only to addresses
/// `allow` permits (every resolved address must pass). Returns the parsed URL.
pub async fn check_url(url: &str, allow: &Allow) -> Result<reqwest::Url, Refused> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| Refused::Invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused::Credentials);
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or(Refused::NoHost)?;
    // the parser has normalised IP literals (IPv6 in brackets)
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    let addrs = match literal {
        Some(ip) => vec![ip],
        None => resolve(host, port).await.map_err(|problem| Refused::Unresolvable { host: host.to_owned(), problem })?,
    };
    let name = host.to_owned();
    for ip in addrs {
        check_ip(ip, allow).map_err(|class| Refused::Address { host: name.clone(), class })?;
    }
    Ok(parsed)
}

async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?.map(|a| a.ip()).collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// A DNS resolver for the delivery client that refuses names resolving to addresses the guard
/// refuses, so a name cannot pass the check and then be re-resolved somewhere private.
pub struct GuardedResolver {
    pub allow: Allow,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            for ip in &addrs {
                if let Err(class) = check_ip(*ip, &allow) {
                    tracing::debug!(%host, %ip, "webhook host resolves to a refused address");
                    let refused = Refused::Address { host: host.clone(), class };
                    return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

impl GuardedResolver {
    pub fn new(allow: Allow) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { allow })
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

    #[tokio::test]
    async fn urls() {
        let none = Allow::NONE;
        assert_eq!(check_url("ftp://example.com/", &none).await, Err(Refused::Scheme));
        assert_eq!(check_url("http://u:p@8.8.8.8/", &none).await, Err(Refused::Credentials));
        assert!(matches!(check_url("not a url", &none).await, Err(Refused::Invalid(_))));
        assert!(matches!(check_url("http://[::1]:8080/x", &none).await, Err(Refused::Address { class: Class::Loopback, .. })));
        // the WHATWG parser normalises other IPv4 spellings before the check
        assert!(matches!(check_url("http://2130706433/", &none).await, Err(Refused::Address { class: Class::Loopback, .. })));
        assert!(matches!(check_url("http://0x7f.1/", &none).await, Err(Refused::Address { class: Class::Loopback, .. })));
        assert!(check_url("https://8.8.8.8/hook", &none).await.is_ok());
    }
}
