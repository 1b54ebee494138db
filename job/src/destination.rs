//! Which destinations a page or a webhook may point at (DESIGN §7).
//!
//! Only literal addresses can be judged here, before any DNS lookup: the worker applies the same
//! [`is_public_ip`] to every resolved address it connects to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::InvalidOption;

/// Whether private, loopback and link-local destinations are allowed (local development, tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub allow_private_networks: bool,
}

/// The longest URL accepted for a page or a webhook.
const MAX_URL_LEN: usize = 8192;

/// What a URL's host is, before DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A DNS name that is not reserved for the local host: judged again after resolution.
    Name(String),
    /// A public literal address.
    PublicAddress(IpAddr),
    /// A literal address or reserved name that is not public, with the reason.
    NonPublic { host: String, reason: &'static str },
}

impl Destination {
    pub fn of(host: &Host<&str>) -> Destination {
        match host {
            Host::Ipv4(v4) => Destination::of_ip(IpAddr::V4(*v4)),
            Host::Ipv6(v6) => Destination::of_ip(IpAddr::V6(*v6)),
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    Destination::NonPublic { host: name, reason: "loopback" }
                } else {
                    Destination::Name(name)
                }
            }
        }
    }

    fn of_ip(ip: IpAddr) -> Destination {
        match non_public_reason(ip) {
            Some(reason) => Destination::NonPublic { host: ip.to_string(), reason },
            None => Destination::PublicAddress(ip),
        }
    }
}

/// True when `ip` is a globally routable unicast address: not loopback, private, link-local
/// (cloud metadata lives there), CGNAT, documentation, multicast or reserved, and not one of the
/// IPv6 forms that embed such an IPv4 address (mapped, compatible, 6to4, NAT64).
pub fn is_public_ip(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// Why `ip` is not a public destination, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    if [a, b, c, d] == [168, 63, 129, 16] {
        // Public by its prefix, but answered by the cloud host itself on every Azure VM: the
        // WireServer (instance configuration, the guest agent's channel).
        return Some("cloud host endpoint (Azure WireServer)");
    }
    let reason = match (a, b, c) {
        (0, _, _) => "unspecified (\"this network\")",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private (RFC 1918)",
        (100, 64..=127, _) => "shared address space (CGNAT)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (cloud metadata)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    let reason = match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible) reach the IPv4 address itself.
        // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765) likewise.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            return v4_reason(embedded(hi, lo))
        }
        // NAT64 well-known prefix: the gateway connects to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return v4_reason(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "local-use NAT64",
        // 6to4 carries an IPv4 address in bits 16..48.
        [0x2002, hi, lo, ..] => return v4_reason(embedded(hi, lo)),
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2001, 0..=0x1ff, ..] => "IETF protocol assignment (Teredo and others)",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique local (ULA)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    };
    Some(reason)
}

/// Parses a page or webhook URL given as `field`: http or https only, a host, and a literal
/// non-public destination only when `policy` allows private networks.
pub fn check_url(field: &str, raw: &str, policy: NetworkPolicy) -> Result<Url, InvalidOption> {
    let invalid = |message: String| InvalidOption::new(field, message).with_code("INVALID_URL");
    if raw.trim().is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(InvalidOption::out_of_range(field, 1, MAX_URL_LEN, format!("{} characters", raw.len()))
            .with_code("INVALID_URL")
            .with_hint("the limit is in characters of the URL"));
    }
    let url = Url::parse(raw.trim())
        .map_err(|e| invalid(format!("{field} is not a valid URL")).with_detail(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(
            invalid(format!("{field} must use http or https")).with_detail(format!("got scheme \"{}\"", url.scheme()))
        );
    }
    let host = url.host().ok_or_else(|| invalid(format!("{field} has no host")))?;
    if let Destination::NonPublic { host, reason } = Destination::of(&host) {
        if !policy.allow_private_networks {
            return Err(InvalidOption::new(field, format!("{field} points to a non-public address"))
                .with_code("BLOCKED_URL")
                .with_detail(format!("{host} is {reason}"))
                .with_hint("private networks are refused unless pgshot.allow_private_networks is on"));
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: NetworkPolicy = NetworkPolicy { allow_private_networks: false };
    const ALLOW: NetworkPolicy = NetworkPolicy { allow_private_networks: true };

    #[test]
    fn refuses_every_spelling_of_a_non_public_address() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://100.100.100.200/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:c0a8:101::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[2001:0::1]/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "https://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let err = check_url("url", url, DENY).expect_err(url);
            assert_eq!(err.code, "BLOCKED_URL", "{url}");
            assert_eq!(err.field, "url");
            check_url("url", url, ALLOW).unwrap_or_else(|e| panic!("{url} with private networks allowed: {e}"));
        }
    }

    #[test]
    fn accepts_public_destinations() {
        for url in [
            "https://example.com/",
            "http://93.184.216.34/",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/",
            "http://[64:ff9b::5db8:d822]/",
            "http://[2002:5db8:d822::1]/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://localhost.example.com/",
        ] {
            check_url("url", url, DENY).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn refuses_other_schemes_and_garbage() {
        for (url, code) in [
            ("file:///etc/passwd", "INVALID_URL"),
            ("javascript:alert(1)", "INVALID_URL"),
            ("view-source:http://example.com/", "INVALID_URL"),
            ("chrome://settings", "INVALID_URL"),
            ("data:text/html,<h1>x</h1>", "INVALID_URL"),
            ("ftp://example.com/", "INVALID_URL"),
            ("not a url", "INVALID_URL"),
            ("", "INVALID_URL"),
            ("http://", "INVALID_URL"),
        ] {
            let err = check_url("webhookUrl", url, ALLOW).expect_err(url);
            assert_eq!(err.code, code, "{url}");
            assert!(err.message.starts_with("webhookUrl "), "{}", err.message);
        }
    }

    #[test]
    fn is_public_ip_classifies_embedded_ipv4() {
        assert!(!is_public_ip("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_public_ip("::ffff:0:127.0.0.1".parse().unwrap()), "IPv4-translated");
        assert!(!is_public_ip("::ffff:0:169.254.169.254".parse().unwrap()));
        assert!(is_public_ip("::ffff:0:8.8.8.8".parse().unwrap()));
        assert!(!is_public_ip("168.63.129.16".parse().unwrap()), "Azure WireServer");
        assert!(is_public_ip("168.63.129.17".parse().unwrap()));
        assert!(is_public_ip("::ffff:8.8.8.8".parse().unwrap()));
        assert!(!is_public_ip("64:ff9b:1::1".parse().unwrap()));
        assert!(is_public_ip("8.8.8.8".parse().unwrap()));
    }
}
