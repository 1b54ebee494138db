//! The addresses of this machine's own interfaces. A page or webhook sent to one of them reaches
//! services that listen on every interface (`0.0.0.0`, `::`) of the worker's machine, which a
//! public address does not make any less internal: a worker on a host with a public IP would
//! otherwise render its own admin ports. Read from /proc (IPv4 from the kernel's local routing
//! table, IPv6 from the interface list) and read again at most every few seconds, since
//! interfaces come and go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REREAD_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Default, PartialEq)]
struct OwnAddresses {
    /// Local IPv4 networks: (address, prefix length); a /8 for 127.0.0.0 covers all of it.
    v4: Vec<(Ipv4Addr, u8)>,
    v6: Vec<Ipv6Addr>,
}

impl OwnAddresses {
    fn read() -> OwnAddresses {
        OwnAddresses {
            v4: std::fs::read_to_string("/proc/net/fib_trie").map(|t| local_ipv4(&t)).unwrap_or_default(),
            v6: std::fs::read_to_string("/proc/net/if_inet6").map(|t| interface_ipv6(&t)).unwrap_or_default(),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.iter().any(|(net, len)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                u32::from(v4) & mask == u32::from(*net) & mask
            }),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.contains(IpAddr::V4(v4)),
                None => self.v6.contains(&v6),
            },
        }
    }
}

/// Whether `ip` is an address of one of this machine's interfaces.
pub fn is_own_address(ip: IpAddr) -> bool {
    static CACHE: Mutex<Option<(Instant, OwnAddresses)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.as_ref().is_none_or(|(at, _)| at.elapsed() > REREAD_AFTER) {
        *cache = Some((Instant::now(), OwnAddresses::read()));
    }
    cache.as_ref().is_some_and(|(_, own)| own.contains(ip))
}

/// The `host LOCAL` entries of /proc/net/fib_trie: an address line (`|-- 192.0.2.2`) followed by
/// its kinds (`/32 host LOCAL`).
fn local_ipv4(fib_trie: &str) -> Vec<(Ipv4Addr, u8)> {
    let mut found = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if let Ok(ip) = line.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if let (Some(ip), Some(rest)) = (last, line.strip_prefix('/')) {
            let mut words = rest.split_whitespace();
            let len = words.next().and_then(|l| l.parse::<u8>().ok()).filter(|l| *l <= 32);
            if let (Some(len), true) = (len, rest.ends_with("host LOCAL")) {
                if !found.contains(&(ip, len)) {
                    found.push((ip, len));
                }
            }
        }
    }
    found
}

/// The addresses of /proc/net/if_inet6: 32 hex digits first on each line.
fn interface_ipv6(if_inet6: &str) -> Vec<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            (hex.len() == 32).then_some(())?;
            u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 203.0.113.0/24 2 0 2
           |-- 203.0.113.7
              /32 host LOCAL
        |-- 203.0.113.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 127.0.0.1
              /32 host LOCAL
";

    const IF_INET6: &str = "00000000000000000000000000000001 01 80 10 80       lo
2001067c12340000000000000000abcd 04 40 00 82     eth0
";

    #[test]
    fn local_addresses_are_read_from_the_kernel_tables() {
        let own = OwnAddresses { v4: local_ipv4(FIB_TRIE), v6: interface_ipv6(IF_INET6) };
        assert_eq!(
            own.v4,
            [
                ("127.0.0.0".parse().unwrap(), 8),
                ("127.0.0.1".parse().unwrap(), 32),
                ("203.0.113.7".parse().unwrap(), 32)
            ]
        );
        for ip in ["203.0.113.7", "127.1.2.3", "::1", "2001:67c:1234::abcd", "::ffff:203.0.113.7"] {
            assert!(own.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.8", "203.0.113.255", "0.0.0.1", "2001:67c:1234::abce", "8.8.8.8"] {
            assert!(!own.contains(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn this_machine_has_its_loopback() {
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        assert!(is_own_address("127.0.0.53".parse().unwrap()), "all of 127.0.0.0/8 is local");
    }
}
