//! The client's address: the socket peer, or `X-Forwarded-For` when the peer is a trusted proxy.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// The address rate limits and anonymous idempotency scopes use for this request.
///
/// `X-Forwarded-For` is believed only when the socket peer is listed in `trusted_proxies`
/// (`KEEL_TRUSTED_PROXIES`); then the chain is read from the right and the first address that is
/// not itself a trusted proxy is the client. Anything else would let a client pick its own
/// rate-limit bucket.
pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    // Walk from the nearest hop outwards, through trusted proxies only. An unreadable hop ends
    // the walk: whatever stands left of it was written by someone we cannot vouch for.
    for hop in hops.into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !trusted_proxies.contains(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_forge_its_address() {
        let req = TestRequest::default()
            .peer_addr("203.0.113.9:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.2.3.4"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn a_trusted_proxy_passes_the_rightmost_untrusted_address() {
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2"))
            .to_http_request();
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(client_ip(&req, &trusted), Some(ip("198.51.100.7")));
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk() {
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "6.6.6.6, unknown"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_proxies() {
        let req = TestRequest::default()
            .peer_addr("[::ffff:10.0.0.1]:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "198.51.100.7"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("198.51.100.7")));
    }

    #[test]
    fn a_trusted_proxy_without_the_header_is_the_client() {
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("10.0.0.1")));
    }
}
