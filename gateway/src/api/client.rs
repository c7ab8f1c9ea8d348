//! Who the client is: the TCP peer, or, behind a reverse proxy the config trusts
//! (`server.trusted_proxies`), the address the proxy forwarded for and whether the
//! client's own connection was HTTPS.
//!
//! `X-Forwarded-For` from anyone else is ignored: a client that writes it itself must not
//! choose the address its failed logins are counted against or the audit trail shows.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, request::Parts};

/// The client of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Its address.
    pub ip: IpAddr,
    /// Whether it reached the gateway (or the proxy in front of it) over HTTPS.
    pub https: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Client>() {
            return Ok(*c);
        }
        // A router served without the gateway's listener (unit tests): the TCP peer.
        let ip =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Client { ip, https: false })
    }
}

/// An address or a network in CIDR notation (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a `server.trusted_proxies` entry is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR network (e.g. 10.0.0.0/8)")]
pub struct BadCidr(String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Trusts these networks.
    pub fn new(nets: Vec<Cidr>) -> Self {
        Self(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that came from `peer`, over TLS or not.
    ///
    /// From a trusted proxy the client is the right-most `X-Forwarded-For` address that
    /// is not itself a trusted proxy: every entry to its right was appended by a proxy we
    /// trust, anything to its left was written by the client and proves nothing.
    pub fn client(&self, peer: IpAddr, tls: bool, headers: &HeaderMap) -> Client {
        let forwarded: Vec<&[u8]> = headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect();
        let proto = headers.get("x-forwarded-proto").map(|v| v.as_bytes());
        self.client_from(peer, tls, &forwarded, proto)
    }

    /// [`Self::client`] on the raw header values: every `X-Forwarded-For` in order, and
    /// `X-Forwarded-Proto`.
    pub fn client_from(&self, peer: IpAddr, tls: bool, forwarded_for: &[&[u8]], proto: Option<&[u8]>) -> Client {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return Client { ip: peer, https: tls };
        }
        let mut ip = peer;
        let hops = forwarded_for
            .iter()
            .rev()
            .flat_map(|v| v.rsplit(|&b| b == b','))
            .map(|s| std::str::from_utf8(s).ok().and_then(parse_hop));
        for hop in hops {
            // A trusted proxy writes addresses; anything else ends what can be believed.
            let Some(hop) = hop else { break };
            ip = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        // The proxy nearest to us sets the scheme it was reached by.
        let https = match proto.and_then(|v| std::str::from_utf8(v).ok()) {
            Some(v) => v.rsplit(',').next().is_some_and(|s| s.trim().eq_ignore_ascii_case("https")),
            None => tls,
        };
        Client { ip, https }
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443` or `1.2.3.4:80`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().expect("cidr")).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.3.4")) && !n.contains(ip("11.0.0.1")));
        let n: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(n.contains(ip("192.168.1.200")) && !n.contains(ip("192.168.1.100")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(one.contains(ip("::ffff:127.0.0.1")), "mapped IPv4 counts as IPv4");
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "host", "10.0.0.0/x", "1.2.3.4/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_from_strangers_are_ignored() {
        let p = proxies(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        assert_eq!(p.client(ip("198.51.100.7"), false, &h), Client { ip: ip("198.51.100.7"), https: false });
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), true, &h).ip, ip("127.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let client = |xff: &str| p.client(ip("127.0.0.1"), false, &headers(&[("x-forwarded-for", xff)])).ip;
        assert_eq!(client("203.0.113.9"), ip("203.0.113.9"));
        // The client wrote 1.1.1.1 itself; the proxies appended the rest.
        assert_eq!(client("1.1.1.1, 203.0.113.9, 10.1.2.3"), ip("203.0.113.9"));
        assert_eq!(client("10.9.9.9, 10.1.2.3"), ip("10.9.9.9"), "only proxies: the farthest one");
        assert_eq!(client("garbage, 203.0.113.9"), ip("203.0.113.9"));
        assert_eq!(client("203.0.113.9, garbage"), ip("127.0.0.1"), "a proxy never writes garbage");
        assert_eq!(client("[2001:db8::7]:5555"), ip("2001:db8::7"));
        assert_eq!(client("198.51.100.1:80"), ip("198.51.100.1"));
        // Several headers read as one list, in order.
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(p.client(ip("127.0.0.1"), false, &h).ip, ip("203.0.113.9"));
        assert_eq!(p.client(ip("127.0.0.1"), false, &HeaderMap::new()).ip, ip("127.0.0.1"));
    }

    #[test]
    fn the_scheme_comes_from_the_nearest_trusted_proxy() {
        let p = proxies(&["127.0.0.1"]);
        let https = |proto: &str| p.client(ip("127.0.0.1"), false, &headers(&[("x-forwarded-proto", proto)])).https;
        assert!(https("https") && https("HTTPS") && https("http, https"));
        assert!(!https("http") && !https("https, http"));
        assert!(p.client(ip("127.0.0.1"), true, &HeaderMap::new()).https, "our own TLS");
    }

    proptest::proptest! {
        #[test]
        fn any_header_gives_an_address(xff in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
            let mut h = HeaderMap::new();
            if let Ok(v) = axum::http::HeaderValue::from_bytes(&xff) {
                h.insert("x-forwarded-for", v);
            }
            let c = p.client(ip("127.0.0.1"), false, &h);
            // Either the peer, or an address that appears in the header.
            proptest::prop_assert!(c.ip == ip("127.0.0.1") || !xff.is_empty());
        }
    }
}
