//! Who is calling: the client address of a request, which throttles, rate limits, sessions and
//! the audit trail record.
//!
//! - By default it is the connection's peer.
//! - When the peer is a configured trusted proxy (`http.trusted_proxies`), the proxy chain in
//!   `X-Forwarded-For` (or `Forwarded`, as `http.forwarded_header` says) is walked from the
//!   right, over trusted hops, to the first untrusted entry: entries further left were written
//!   by whoever the untrusted hop is, the client included, and prove nothing.
//! - The router tells subgraphs the address it found in [`CLIENT_ADDRESS_HEADER`], with a proof
//!   made with a key derived from the internal token and a timestamp. A subgraph believes the
//!   header only with a valid, fresh proof; from anyone else it is ignored.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::config::{ForwardedHeader, HttpConfig};

/// The header the router states the client's address in: `<ip>; t=<unix seconds>; proof=<..>`.
pub const CLIENT_ADDRESS_HEADER: &str = "keygraph-client-address";

/// How old a router's statement may be, in seconds (either way, for clock differences).
const PROOF_MAX_AGE_SECS: u64 = 60;

/// Addresses and ranges whose forwarding headers are believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`) and ranges (`10.0.0.0/8`, `fd00::/8`), saying which entry
    /// is neither.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("`{entry}` is neither an IP address nor a CIDR range (10.0.0.0/8)")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`) as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// Signs and checks the router's statements of client addresses.
#[derive(Clone)]
pub struct AddressProof {
    key: [u8; 32],
}

impl std::fmt::Debug for AddressProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressProof(..)")
    }
}

impl AddressProof {
    /// A key of its own, derived from the internal token (the token itself never travels).
    pub fn new(internal_token: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"keygraph client address proof v1\0");
        hash.update(internal_token.as_bytes());
        Self {
            key: hash.finalize().into(),
        }
    }

    fn mac(&self, address: &str, issued: u64) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
        mac.update(address.as_bytes());
        mac.update(b"\0");
        mac.update(issued.to_string().as_bytes());
        mac
    }

    /// The header value stating `address`, now.
    pub fn state(&self, address: IpAddr) -> String {
        let address = canonical(address).to_string();
        let issued = unix_now();
        let proof = URL_SAFE_NO_PAD.encode(self.mac(&address, issued).finalize().into_bytes());
        format!("{address}; t={issued}; proof={proof}")
    }

    /// The address a header value states, if its proof is valid and fresh.
    pub fn check(&self, value: &str) -> Option<IpAddr> {
        let mut parts = value.split(';').map(str::trim);
        let address = parts.next()?;
        let issued: u64 = parts.next()?.strip_prefix("t=")?.parse().ok()?;
        let proof = URL_SAFE_NO_PAD
            .decode(parts.next()?.strip_prefix("proof=")?)
            .ok()?;
        if parts.next().is_some() || unix_now().abs_diff(issued) > PROOF_MAX_AGE_SECS {
            return None;
        }
        self.mac(address, issued).verify_slice(&proof).ok()?;
        address.parse().ok()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How a service finds the client address of each request.
#[derive(Debug, Clone)]
pub struct ClientAddresses {
    proxies: TrustedProxies,
    header: ForwardedHeader,
    /// Set on subgraphs: statements of the router with this proof are believed.
    router: Option<AddressProof>,
}

impl ClientAddresses {
    /// From `http.trusted_proxies` and `http.forwarded_header`; `router` believes the router's
    /// statements (subgraphs), `None` ignores them (the router itself, at the edge).
    pub fn new(http: &HttpConfig, router: Option<AddressProof>) -> Result<Self, String> {
        Ok(Self {
            proxies: TrustedProxies::parse(&http.trusted_proxies)
                .map_err(|e| format!("http.trusted_proxies: {e}"))?,
            header: http.forwarded_header,
            router,
        })
    }

    /// For a subgraph: proxies as configured, and the router's statements believed.
    pub fn for_subgraph(http: &HttpConfig, internal_token: &str) -> Result<Self, String> {
        Self::new(http, Some(AddressProof::new(internal_token)))
    }

    /// For the edge (the router): proxies as configured, statements ignored.
    pub fn for_edge(http: &HttpConfig) -> Result<Self, String> {
        Self::new(http, None)
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        if let Some(proof) = &self.router
            && let Some(stated) = headers
                .get(CLIENT_ADDRESS_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| proof.check(v))
        {
            return Some(stated);
        }
        let peer = canonical(peer?);
        if !self.proxies.contains(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in self.chain(headers).into_iter().rev() {
            match entry {
                Some(hop) => {
                    client = canonical(hop);
                    if !self.proxies.contains(client) {
                        break;
                    }
                }
                // An entry that is no address (`unknown`, garbage): the hop that wrote it is
                // the last one known.
                None => break,
            }
        }
        Some(client)
    }

    /// The forwarding chain, left to right (every header line, in order).
    fn chain(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let (name, parse): (&str, fn(&str) -> Option<IpAddr>) = match self.header {
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", parse_plain),
            ForwardedHeader::Forwarded => ("forwarded", parse_forwarded_element),
        };
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| {
                let text = value.to_str().unwrap_or("\u{0}");
                text.split(',').map(parse).collect::<Vec<_>>()
            })
            .collect()
    }
}

/// An `X-Forwarded-For` entry: an address, IPv6 possibly bracketed, possibly with a port.
fn parse_plain(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` of one `Forwarded` element (RFC 7239), e.g. `for="[2001:db8::1]:4711";proto=https`.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_plain(value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn http(proxies: &[&str], header: ForwardedHeader) -> HttpConfig {
        HttpConfig {
            body_limit_bytes: 1,
            request_timeout_secs: 1,
            shutdown_grace_secs: 1,
            trusted_proxies: proxies.iter().map(|p| (*p).to_owned()).collect(),
            forwarded_header: header,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let addresses =
            ClientAddresses::new(&http(&[], ForwardedHeader::XForwardedFor), None).expect("ok");
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            addresses.resolve(Some(ip("127.0.0.2")), &spoofed),
            Some(ip("127.0.0.2"))
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let addresses = ClientAddresses::new(
            &http(
                &["10.0.0.0/8", "192.168.1.1"],
                ForwardedHeader::XForwardedFor,
            ),
            None,
        )
        .expect("ok");
        // The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(
            addresses.resolve(Some(ip("192.168.1.1")), &chain),
            Some(ip("203.0.113.9"))
        );
        // Two header lines read as one list.
        let lines = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9:5123, 10.1.2.3"),
        ]);
        assert_eq!(
            addresses.resolve(Some(ip("10.9.9.9")), &lines),
            Some(ip("203.0.113.9"))
        );
        // Garbage stops the walk at the last hop known.
        let garbage = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip, 10.1.2.3")]);
        assert_eq!(
            addresses.resolve(Some(ip("10.9.9.9")), &garbage),
            Some(ip("10.1.2.3"))
        );
        // Only trusted hops: the left-most is as far as can be seen.
        let all_trusted = headers(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]);
        assert_eq!(
            addresses.resolve(Some(ip("10.9.9.9")), &all_trusted),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn forwarded_header_elements_are_read_when_configured() {
        let addresses =
            ClientAddresses::new(&http(&["10.0.0.0/8"], ForwardedHeader::Forwarded), None)
                .expect("ok");
        let chain = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.3;by=10.0.0.4",
            ),
        ]);
        assert_eq!(
            addresses.resolve(Some(ip("10.0.0.4")), &chain),
            Some(ip("2001:db8::17"))
        );
    }

    #[test]
    fn bad_proxy_entries_are_named() {
        let err = ClientAddresses::new(
            &http(&["10.0.0.0/33"], ForwardedHeader::XForwardedFor),
            None,
        )
        .expect_err("refused");
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }

    #[test]
    fn the_routers_statement_needs_a_valid_fresh_proof() {
        let proof = AddressProof::new("internal-token");
        let subgraph = ClientAddresses::new(
            &http(&[], ForwardedHeader::XForwardedFor),
            Some(proof.clone()),
        )
        .expect("ok");
        let stated = proof.state(ip("127.0.0.3"));
        let from_router = headers(&[(CLIENT_ADDRESS_HEADER, stated.as_str())]);
        assert_eq!(
            subgraph.resolve(Some(ip("127.0.0.1")), &from_router),
            Some(ip("127.0.0.3"))
        );
        // Someone without the internal token, or changing the address, proves nothing.
        let forged = AddressProof::new("guessed").state(ip("127.0.0.3"));
        let altered = stated.replacen("127.0.0.3", "127.0.0.4", 1);
        let stale = {
            let issued = unix_now() - PROOF_MAX_AGE_SECS - 5;
            let mac = proof.mac("127.0.0.3", issued).finalize().into_bytes();
            format!(
                "127.0.0.3; t={issued}; proof={}",
                URL_SAFE_NO_PAD.encode(mac)
            )
        };
        for value in [forged, altered, stale, "127.0.0.3".to_owned()] {
            let request = headers(&[(CLIENT_ADDRESS_HEADER, value.as_str())]);
            assert_eq!(
                subgraph.resolve(Some(ip("127.0.0.1")), &request),
                Some(ip("127.0.0.1")),
                "{value}"
            );
        }
        // The edge ignores statements altogether.
        let edge =
            ClientAddresses::new(&http(&[], ForwardedHeader::XForwardedFor), None).expect("ok");
        assert_eq!(
            edge.resolve(Some(ip("127.0.0.9")), &from_router),
            Some(ip("127.0.0.9"))
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_ranges() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).expect("ok");
        assert!(proxies.contains(ip("::ffff:10.1.1.1")));
        assert!(!proxies.contains(ip("::ffff:11.1.1.1")));
    }
}
