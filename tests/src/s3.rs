//! An S3-compatible server for the object-storage tests: moto's server mode (PyPI), installed by
//! scripts/setup.sh into .pgshot/moto, run on 127.0.0.1. It keeps objects in memory, so a
//! restart comes back empty (the tests recreate the bucket).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    port: u16,
    child: Option<Child>,
}

/// The credentials the tests use; moto accepts any.
pub const ACCESS_KEY: &str = "pgshot-tests";
pub const SECRET_KEY: &str = "pgshot-tests-secret";
pub const REGION: &str = "us-east-1";

impl S3Server {
    pub fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server = S3Server { port, child: None };
        server.resume();
        server
    }

    /// Starts the server (again) on its port.
    pub fn resume(&mut self) {
        let moto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.pgshot/moto/bin/moto_server");
        assert!(moto.exists(), "{} is missing: scripts/setup.sh installs it (make test runs it)", moto.display());
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on {} within 30 s", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: connections to its port are refused until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a worker or API needs to use `bucket/prefix` on this server.
    pub fn env(&self, bucket: &str, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PGSHOT_STORAGE", format!("s3://{bucket}/{prefix}")),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ]
    }
}

/// A slow network in front of a server on 127.0.0.1: every chunk a client sends waits `delay`
/// before it is passed on (replies pass at once). For uploads that take longer than a lease.
pub struct SlowProxy {
    port: u16,
}

impl SlowProxy {
    pub fn start(upstream: u16, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n @ 1..) = std::io::Read::read(&mut client_in, &mut buf) {
                        std::thread::sleep(delay);
                        if std::io::Write::write_all(&mut server_out, &buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_in, mut client_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_in, &mut client_out);
                    let _ = client_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        SlowProxy { port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl S3Server {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
