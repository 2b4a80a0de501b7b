//! The SSRF guard of every URL a tenant can make the daemon call: status webhook endpoints,
//! `http_bridge` URLs, the providers' `api_base` and the LLM's `base_url`. The URL must be
//! `http`/`https` without credentials, and its host must resolve only to public addresses
//! ([`crate::domain::network`] classifies them). Loopback, private (RFC 1918, fc00::/7), link-local
//! (169.254/16, fe80::/10), CGNAT (100.64/10) and unspecified addresses are refused, as are
//! multicast, broadcast and reserved ones; IPv4 addresses embedded in IPv6 (mapped, compatible,
//! NAT64, 6to4) are judged as the IPv4 address they carry.
//!
//! Checked when the URL is configured through the API ([`check_url`]: 400 naming the field), and
//! again at call time (DNS can change; psql can write anything): the HTTP clients are built by
//! [`client_builder`], which resolves names through [`GuardedResolver`] (the address connected to
//! is the address that was checked), follows no redirects and uses no proxy; an IP-literal host,
//! which reqwest connects to without resolving, is checked by [`check_literal`] before the call.
//! The platform operator may allow some classes with
//! `PGCOURIER_NETWORK_ALLOW=loopback,private,link_local,cgnat` (for example `loopback` for a
//! bridge or a model server on the same machine); unspecified, multicast and reserved addresses
//! are never allowed.

use crate::domain::network::{check_ip, Allow, Class};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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
    #[error("host {host} is a {} address, which the daemon may not call", .class.as_str())]
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

/// Scheme, credentials and an IP-literal host, without resolving names (the resolver of a
/// [`client_builder`] client checks those when it connects).
pub fn check_literal(url: &str, allow: &Allow) -> Result<reqwest::Url, Refused> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| Refused::Invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused::Credentials);
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or(Refused::NoHost)?;
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        check_ip(ip, allow).map_err(|class| Refused::Address { host: host.to_owned(), class })?;
    }
    Ok(parsed)
}

/// A reqwest client builder for calls to tenant-configured URLs: names resolved through
/// [`GuardedResolver`], no redirects (a redirect must not lead past the guard), no proxy.
pub fn client_builder(allow: Allow) -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().dns_resolver(GuardedResolver::new(allow))
}

/// The guard's refusal among a reqwest error's causes, if that is why the call failed.
pub fn refusal_in(e: &reqwest::Error) -> Option<Refused> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &(dyn std::error::Error + 'static));
        if let Some(refused) = s.downcast_ref::<Refused>().or_else(|| inner.and_then(|e| e.downcast_ref::<Refused>())) {
            return Some(refused.clone());
        }
        source = s.source();
    }
    None
}

/// A DNS resolver for the guarded clients that refuses names resolving to addresses the guard
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
                    tracing::debug!(%host, %ip, "host resolves to an address the SSRF guard refuses");
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
