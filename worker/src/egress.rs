//! Every connection a job's page makes leaves through the job's own SOCKS5 listener on 127.0.0.1
//! (its browser context's proxy). The listener resolves names itself, refuses destinations that the
//! network policy or the ad block list forbids, and connects to exactly the address it checked, so
//! the page, its subresources, its redirects and its websockets are all judged after DNS, and a
//! DNS answer cannot change between the check and the connection.
//!
//! One listener per job also tells the job which of *its* connections were refused: a failed
//! navigation after a refusal is BLOCKED_URL, not URL_UNREACHABLE.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgshot_job::non_public_reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::blocklist::blocklists;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub allow_private_networks: bool,
    pub block_ads: bool,
    /// Non-public destinations allowed all the same (an internal host a deployment trusts).
    pub allowed: Arc<[Allowed]>,
}

/// An address, optionally with a port, that the policy lets through even if it is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl std::str::FromStr for Allowed {
    type Err = String;

    fn from_str(s: &str) -> Result<Allowed, String> {
        let s = s.trim();
        if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            return Ok(Allowed { ip, port: None });
        }
        s.parse::<SocketAddr>()
            .map(|a| Allowed { ip: a.ip(), port: Some(a.port()) })
            .map_err(|_| format!("\"{s}\" is not an IP address or IP:port"))
    }
}

impl Allowed {
    fn matches(&self, addr: &SocketAddr) -> bool {
        self.ip == addr.ip() && self.port.is_none_or(|p| p == addr.port())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A destination that is not a public address, with why.
    NonPublic { destination: String, reason: String },
    /// A host on the ad and tracker list.
    AdHost { host: String },
}

/// A connection the listener could not make for the job, by the destination it was asked for:
/// Chromium only learns that the proxy failed (net::ERR_SOCKS_CONNECTION_FAILED), so the job's
/// error says what happened from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreached {
    /// The host as the page asked for it (a name, or an address).
    pub host: String,
    pub port: u16,
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The name has no address.
    Unresolved,
    /// Every address refused the connection.
    Refused,
    /// No address answered within the connect timeout.
    TimedOut,
    /// Another error (unreachable network, reset).
    Failed(String),
}

impl Unreached {
    /// What happened, for the job's error: what a user can act on.
    pub fn describe(&self) -> String {
        let (host, port) = (&self.host, self.port);
        match &self.why {
            Why::Unresolved => format!("could not resolve {host}"),
            Why::Refused => format!("connection refused by {host}:{port}"),
            Why::TimedOut => format!("timed out connecting to {host}:{port}"),
            Why::Failed(e) => format!("could not connect to {host}:{port}: {e}"),
        }
    }
}

struct State {
    rules: Mutex<Rules>,
    refusals: Mutex<Vec<Refusal>>,
    unreached: Mutex<Vec<Unreached>>,
}

pub struct Egress {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for Egress {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every open connection.
        self.accept.abort();
    }
}

impl Egress {
    pub async fn start(rules: Rules) -> io::Result<Egress> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            rules: Mutex::new(rules),
            refusals: Mutex::new(Vec::new()),
            unreached: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Egress { addr, state, accept })
    }

    /// Rules for the job about to use this listener (spare tabs are opened before the job is known).
    pub fn set_rules(&self, rules: Rules) {
        *self.state.rules.lock().unwrap() = rules;
    }

    /// The `proxyServer` value for the job's browser context.
    pub fn proxy_server(&self) -> String {
        format!("socks5://{}", self.addr)
    }

    pub fn refusals(&self) -> Vec<Refusal> {
        self.state.refusals.lock().unwrap().clone()
    }

    /// The connections it could not make, oldest first (at most the first 32 kept).
    pub fn unreached(&self) -> Vec<Unreached> {
        self.state.unreached.lock().unwrap().clone()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, state.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// SOCKS5 reply codes (RFC 1928 §6).
mod reply {
    pub const SUCCEEDED: u8 = 0;
    pub const GENERAL_FAILURE: u8 = 1;
    pub const NOT_ALLOWED: u8 = 2;
    pub const HOST_UNREACHABLE: u8 = 4;
    pub const CONNECTION_REFUSED: u8 = 5;
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

pub enum Target {
    Ip(IpAddr),
    Name(String),
}

async fn serve(mut client: TcpStream, state: Arc<State>) {
    let target = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
        Ok(Ok(Some(target))) => target,
        _ => return,
    };
    let (target, port) = target;
    let rules = state.rules.lock().unwrap().clone();
    let host = match &target {
        Target::Name(name) => name.clone(),
        Target::Ip(ip) => ip.to_string(),
    };
    let unreached = |why: Why| {
        let mut all = state.unreached.lock().unwrap();
        if all.len() < 32 {
            all.push(Unreached { host: host.clone(), port, why });
        }
    };
    let upstream = match resolve(&target, port, &rules).await {
        Ok(addrs) => connect(&addrs).await.map_err(|(code, why)| {
            unreached(why);
            code
        }),
        Err(Denied::Refused(refusal)) => {
            tracing::info!(?refusal, "egress refused");
            state.refusals.lock().unwrap().push(refusal);
            Err(reply::NOT_ALLOWED)
        }
        Err(Denied::Unresolved) => {
            unreached(Why::Unresolved);
            Err(reply::HOST_UNREACHABLE)
        }
    };
    match upstream {
        Ok(mut upstream) => {
            if send_reply(&mut client, reply::SUCCEEDED).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        }
        Err(code) => {
            let _ = send_reply(&mut client, code).await;
        }
    }
}

/// Reads the greeting and the CONNECT request; answers what it must refuse by itself.
async fn handshake(client: &mut TcpStream) -> io::Result<Option<(Target, u16)>> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Ok(None);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(None);
    }
    client.write_all(&[5, 0]).await?;

    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    if request[1] != 1 {
        send_reply(client, reply::COMMAND_NOT_SUPPORTED).await?;
        return Ok(None);
    }
    let target = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await?;
            Target::Ip(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            Target::Name(String::from_utf8_lossy(&name).to_ascii_lowercase())
        }
        4 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await?;
            Target::Ip(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => {
            send_reply(client, reply::ADDRESS_TYPE_NOT_SUPPORTED).await?;
            return Ok(None);
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    Ok(Some((target, u16::from_be_bytes(port))))
}

async fn send_reply(client: &mut TcpStream, code: u8) -> io::Result<()> {
    client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

enum Denied {
    Refused(Refusal),
    Unresolved,
}

async fn resolve(target: &Target, port: u16, rules: &Rules) -> Result<Vec<SocketAddr>, Denied> {
    let addrs: Vec<SocketAddr> = match target {
        Target::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Target::Name(name) => {
            if rules.block_ads && blocklists().is_ad_host(name) {
                return Err(Denied::Refused(Refusal::AdHost { host: name.clone() }));
            }
            match crate::dns::lookup(name).await {
                Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
                None => return Err(Denied::Unresolved),
            }
        }
    };
    if addrs.is_empty() {
        return Err(Denied::Unresolved);
    }
    if let Some(refusal) = refused(target, port, &addrs, rules) {
        return Err(Denied::Refused(refusal));
    }
    Ok(addrs)
}

/// Why the policy refuses to connect to `target` at these resolved addresses, if it does. Any
/// non-public answer refuses the name: connecting to "the public one" would leave the choice to
/// whoever controls the DNS. Shared with webhook delivery, which applies the same policy.
pub fn refused(target: &Target, port: u16, addrs: &[SocketAddr], rules: &Rules) -> Option<Refusal> {
    if rules.allow_private_networks {
        return None;
    }
    let (bad, reason) = addrs.iter().find_map(|a| {
        let reason = non_public_reason(a.ip())
            .or_else(|| crate::own_addresses::is_own_address(a.ip()).then_some("an address of this machine"));
        reason.filter(|_| !rules.allowed.iter().any(|allowed| allowed.matches(a))).map(|r| (a, r))
    })?;
    // A name is refused without the address it resolved to: the job's error and the webhook's
    // are the tenant's to read, and which private address a name has (and what kind) maps the
    // network behind the worker for them. The operator finds it in the worker's log.
    match target {
        Target::Name(name) if name.parse::<IpAddr>().is_err() => {
            tracing::info!(name, address = %bad, reason, "refused a name that resolves to a non-public address");
            Some(Refusal::NonPublic {
                destination: format!("{name}:{port}"),
                reason: "a private address (the name resolves to one)".to_string(),
            })
        }
        _ => Some(Refusal::NonPublic { destination: bad.to_string(), reason: reason.to_string() }),
    }
}

/// The first address that accepts; otherwise the SOCKS reply for the last failure, and why.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, (u8, Why)> {
    let mut failure = (reply::HOST_UNREACHABLE, Why::Failed("no address".into()));
    for addr in addrs {
        failure = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => (reply::CONNECTION_REFUSED, Why::Refused),
            Ok(Err(e)) => (reply::GENERAL_FAILURE, Why::Failed(e.to_string())),
            Err(_) => (reply::HOST_UNREACHABLE, Why::TimedOut),
        };
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speaks SOCKS5 to the proxy like Chromium does and returns the reply code.
    async fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> (u8, Option<TcpStream>) {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).await.unwrap();
        assert_eq!(choice, [5, 0]);
        let mut req = vec![5, 1, 0, 3, host.len() as u8];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).await.unwrap();
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep).await.unwrap();
        (rep[1], (rep[1] == 0).then_some(s))
    }

    #[tokio::test]
    async fn refuses_loopback_by_name_and_number_unless_allowed() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = upstream.accept().await.unwrap();
                s.write_all(b"hello").await.unwrap();
            }
        });

        let egress = Egress::start(Rules::default()).await.unwrap();
        assert_eq!("127.0.0.1:8080".parse::<Allowed>(), Ok(Allowed { ip: [127, 0, 0, 1].into(), port: Some(8080) }));
        assert_eq!("[::1]".parse::<Allowed>(), Ok(Allowed { ip: "::1".parse().unwrap(), port: None }));
        assert!("localhost".parse::<Allowed>().is_err());
        for host in ["127.0.0.1", "localhost", "0x7f000001"] {
            let (code, _) = socks_connect(egress.addr, host, port).await;
            assert_eq!(code, reply::NOT_ALLOWED, "{host}");
        }
        assert!(matches!(&egress.refusals()[0], Refusal::NonPublic { reason, .. } if reason == "loopback"));

        let allowed: Arc<[Allowed]> = Arc::new(["127.0.0.1".parse().unwrap()]);
        egress.set_rules(Rules { allow_private_networks: false, block_ads: true, allowed });
        let (code, stream) = socks_connect(egress.addr, "localhost", port).await;
        assert_eq!(code, reply::SUCCEEDED);
        let mut greeting = [0u8; 5];
        stream.unwrap().read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"hello");

        let (code, _) = socks_connect(egress.addr, "stats.g.doubleclick.net", 443).await;
        assert_eq!(code, reply::NOT_ALLOWED);
        assert!(egress.refusals().contains(&Refusal::AdHost { host: "stats.g.doubleclick.net".into() }));
        let (code, _) = socks_connect(egress.addr, "10.0.0.1", 80).await;
        assert_eq!(code, reply::NOT_ALLOWED, "only the allowed address passes");
        let (code, _) = socks_connect(egress.addr, "no-such-host.invalid", 80).await;
        assert_eq!(code, reply::HOST_UNREACHABLE);
    }
}
