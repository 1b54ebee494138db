//! Certificates made with the `openssl` command for the test cluster's TLS: a CA of the test's own
//! and a server certificate it signed for `localhost` only, so that connecting to `127.0.0.1` with
//! `sslmode=verify-full` is connecting to a host the certificate does not name.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

pub struct Authority {
    pub cert: PathBuf,
    key: PathBuf,
}

/// A new self-signed CA in `dir` (`{name}.pem`, `{name}.key`).
pub fn authority(dir: &Path, name: &str) -> Authority {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3"])
        .args(["-subj", &format!("/CN=pgshot test {name}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    Authority { cert, key }
}

/// A certificate for DNS name `host`, signed by `ca`: (`{name}.crt`, `{name}.key`) in `dir`.
pub fn server_certificate(dir: &Path, ca: &Authority, name: &str, host: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, format!("subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n")).unwrap();
    run(Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", &format!("/CN={host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "3", "-set_serial", "2"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.cert)
        .arg("-CAkey")
        .arg(&ca.key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}
