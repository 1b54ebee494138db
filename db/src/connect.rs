//! `DATABASE_URL`, read as libpq reads it, TLS included.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` only, and neither
//! `sslrootcert` nor client certificates, so those parameters are taken out of the string here
//! (URL or `key=value` form) and become the TLS connector, with libpq's meaning:
//!
//! | sslmode       | encrypted        | server certificate checked                  |
//! |---------------|------------------|---------------------------------------------|
//! | `disable`     | no               | -                                           |
//! | `prefer` (default) | if the server offers it | no                             |
//! | `require`     | yes              | no; with `sslrootcert`, the chain (as `verify-ca`) |
//! | `verify-ca`   | yes              | the chain, against `sslrootcert` or the system roots |
//! | `verify-full` | yes              | the chain and that it names the host        |
//!
//! `sslrootcert=system` means the system's roots (as in libpq 16); `sslcert` and `sslkey` (PEM,
//! the key in PKCS#8) present a client certificate.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use native_tls::{Certificate, Identity, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::{Client, Config, Connection, Socket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries without TLS first; pgshot never prefers plain text.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "DATABASE_URL: sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }
}

/// A parsed `DATABASE_URL`: the connection settings and the TLS connector they call for.
#[derive(Clone)]
pub struct Database {
    config: Config,
    tls: MakeTlsConnector,
    mode: SslMode,
}

/// The parameters taken out of the string before tokio-postgres sees it.
#[derive(Debug, Default, PartialEq)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl TlsParams {
    /// Takes `key` if it is one of ours; false leaves it to tokio-postgres.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

impl Database {
    pub fn parse(raw: &str) -> Result<Database, String> {
        let (rest, params) = split_tls_params(raw)?;
        let mut config = Config::from_str(&rest).map_err(|e| format!("DATABASE_URL: {e}"))?;
        let mode = params.sslmode.as_deref().map(SslMode::from_str).transpose()?.unwrap_or(SslMode::Prefer);
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = connector(mode, &params)?;
        Ok(Database { config, tls: MakeTlsConnector::new(tls), mode })
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// Names the program in `pg_stat_activity`.
    pub fn application_name(mut self, name: &str) -> Database {
        self.config.application_name(name);
        self
    }

    /// A setting every session starts with (`-c name=value` in the startup packet).
    pub fn session_setting(mut self, name: &str, value: &str) -> Database {
        // The startup options are split at spaces; a backslash keeps one in the value.
        let setting = format!("-c {name}={}", value.replace('\\', "\\\\").replace(' ', "\\ "));
        let options = match self.config.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {setting}"),
            _ => setting,
        };
        self.config.options(options);
        self
    }

    /// One connection; the caller drives the returned connection future (spawn it), or polls its
    /// messages for LISTEN.
    pub async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, postgres_native_tls::TlsStream<Socket>>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// A pool of up to `size` connections, each opened with the same settings and TLS; waiting
    /// for a connection, opening one and checking one are each limited to `timeout`.
    pub fn pool(&self, size: usize, timeout: Duration) -> Result<Pool, String> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// A connection error with its cause (tokio-postgres hides the TLS library's reason in its
/// source), so that "certificate verify failed: hostname mismatch" reaches the operator.
pub fn connect_error(e: &tokio_postgres::Error) -> String {
    let mut text = format!("cannot connect to DATABASE_URL: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn connector(mode: SslMode, params: &TlsParams) -> Result<TlsConnector, String> {
    let mut builder = TlsConnector::builder();
    let roots = params.sslrootcert.as_deref().filter(|r| *r != "system");
    if let Some(path) = roots {
        let pem = std::fs::read(path).map_err(|e| format!("DATABASE_URL: sslrootcert {path}: {e}"))?;
        let certs = pem_certificates(&pem);
        if certs.is_empty() {
            return Err(format!("DATABASE_URL: sslrootcert {path} holds no PEM certificate"));
        }
        // Only the named roots are trusted, as in libpq.
        builder.disable_built_in_roots(true);
        for cert in certs {
            let cert = Certificate::from_pem(&cert).map_err(|e| format!("DATABASE_URL: sslrootcert {path}: {e}"))?;
            builder.add_root_certificate(cert);
        }
    }
    match (&params.sslcert, &params.sslkey) {
        (Some(cert), Some(key)) => {
            let read = |p: &String, what: &str| std::fs::read(p).map_err(|e| format!("DATABASE_URL: {what} {p}: {e}"));
            let identity = Identity::from_pkcs8(&read(cert, "sslcert")?, &read(key, "sslkey")?)
                .map_err(|e| format!("DATABASE_URL: sslcert/sslkey: {e} (the key must be PEM PKCS#8)"))?;
            builder.identity(identity);
        }
        (None, None) => {}
        _ => return Err("DATABASE_URL: sslcert and sslkey go together".into()),
    }
    let check_chain = match mode {
        SslMode::Disable | SslMode::Prefer => false,
        SslMode::Require => roots.is_some(),
        SslMode::VerifyCa | SslMode::VerifyFull => true,
    };
    builder.danger_accept_invalid_certs(!check_chain);
    builder.danger_accept_invalid_hostnames(mode != SslMode::VerifyFull);
    builder.build().map_err(|e| format!("DATABASE_URL: cannot set up TLS: {e}"))
}

/// Every `-----BEGIN CERTIFICATE-----` block of a PEM file.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.match_indices("-----BEGIN CERTIFICATE-----")
        .filter_map(|(start, _)| {
            text[start..].find(END).map(|end| text[start..start + end + END.len()].as_bytes().to_vec())
        })
        .collect()
}

/// Splits the TLS parameters off either form of connection string and returns the rest, which
/// tokio-postgres parses.
fn split_tls_params(raw: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let Some((base, query)) = raw.split_once('?') else {
            return Ok((raw.to_string(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("DATABASE_URL: the value of {key} is not UTF-8"))?
                .into_owned();
            if !params.take(key, value) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, params));
    }
    let mut kept = Vec::new();
    for (key, value) in key_value_pairs(raw)? {
        if !params.take(&key, value.clone()) {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((kept.join(" "), params))
}

/// libpq's `key = value` form: values bare or single-quoted, with `\'` and `\\` escapes.
fn key_value_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("DATABASE_URL: {key:?} has no value (expected key=value)"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("DATABASE_URL: the value of {key} has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_out_of_a_url_and_the_rest_stays_as_written() {
        let (rest, params) = split_tls_params(
            "postgres://app:p%40ss@db.example.com:5432/pgshot?application_name=w1&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://app:p%40ss@db.example.com:5432/pgshot?application_name=w1");
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(params.sslrootcert.as_deref(), Some("/etc/ca dir/root.pem"));
        let (rest, params) = split_tls_params("postgresql://h1,h2/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://h1,h2/db");
        assert_eq!(params.sslmode.as_deref(), Some("require"));
        assert_eq!(split_tls_params("postgres://h/db").unwrap(), ("postgres://h/db".into(), TlsParams::default()));
    }

    #[test]
    fn tls_parameters_come_out_of_a_key_value_string_with_quotes_and_escapes() {
        let (rest, params) =
            split_tls_params("host=db port = 5433 user='a b' sslmode=verify-ca sslrootcert='/x/it\\'s.pem'").unwrap();
        assert_eq!(params.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(params.sslrootcert.as_deref(), Some("/x/it's.pem"));
        let config = Config::from_str(&rest).unwrap();
        assert_eq!(config.get_user(), Some("a b"));
        assert_eq!(config.get_ports(), [5433]);
        assert!(split_tls_params("host=db sslmode").is_err());
        assert!(split_tls_params("host='db").is_err());
    }

    #[test]
    fn every_sslmode_libpq_knows_is_read_and_others_are_refused_by_name() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(Database::parse(&format!("host=h sslmode={text}")).unwrap().ssl_mode(), mode);
        }
        assert_eq!(Database::parse("host=h").unwrap().ssl_mode(), SslMode::Prefer);
        let e = Database::parse("postgres://h/db?sslmode=verify_full").err().unwrap();
        assert!(e.contains("sslmode \"verify_full\""), "{e}");
        let e = Database::parse("host=h sslmode=verify-full sslrootcert=/nonexistent/root.pem").err().unwrap();
        assert!(e.contains("sslrootcert /nonexistent/root.pem"), "{e}");
        let e = Database::parse("host=h sslcert=/a.pem").err().unwrap();
        assert!(e.contains("sslcert and sslkey"), "{e}");
        let database =
            Database::parse("host=h options='-c a=b'").unwrap().session_setting("pgshot.public_url", "http://x/a b");
        assert_eq!(database.config.get_options(), Some("-c a=b -c pgshot.public_url=http://x/a\\ b"));
        let e = Database::parse("host=h nonsense=1").err().unwrap();
        assert!(e.starts_with("DATABASE_URL:"), "{e}");
    }

    #[test]
    fn a_root_file_with_several_certificates_yields_each() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let file = format!("# bundle\n{one}junk\n{one}");
        let certs = pem_certificates(file.as_bytes());
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0], one.trim_end().as_bytes());
        assert!(pem_certificates(b"nothing").is_empty());
    }
}
