//! Chromium's DevTools over a pipe instead of a TCP port.
//!
//! `--remote-debugging-port` opens a WebSocket on 127.0.0.1 that any local user may connect to
//! and drive the browser with (read its pages and cookies, navigate anywhere from the worker's
//! network). With `--remote-debugging-pipe` Chromium speaks DevTools on file descriptors 3 (it
//! reads) and 4 (it writes) instead, NUL-delimited JSON, and listens on nothing.
//!
//! chromiumoxide 0.9 connects over WebSocket only, so the worker bridges: a WebSocket server on
//! 127.0.0.1 that accepts exactly one connection, on a path holding 160 random bits, and then
//! stops listening; messages cross between that connection and the pipe unchanged. When Chromium
//! exits the pipe ends and so does the WebSocket, which is how the worker notices.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A Chromium started with its DevTools on a pipe, and the WebSocket address that reaches it.
pub struct PipedChromium {
    pub child: tokio::process::Child,
    pub ws_url: String,
    pub bridge: JoinHandle<()>,
}

/// What of the worker's environment Chromium is given: nothing that is a secret (the worker's
/// DATABASE_URL carries a password, storage credentials sit in AWS_*), only the locale and time
/// zone the pages see. PATH is set, not passed: the launcher's wrapper finds `setpriv` with it.
const PASSED_ENV: &[&str] = &["LANG", "LANGUAGE", "LC_ALL", "TZ"];
const CHROMIUM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Starts `executable` with `args` (plus `--remote-debugging-pipe`) and, as its whole
/// environment, `envs` beside [`PASSED_ENV`] and PATH; and the bridge.
pub async fn launch(executable: &Path, args: &[String], envs: &[(&str, String)]) -> Result<PipedChromium, String> {
    let (to_chrome_read, to_chrome_write) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let (from_chrome_read, from_chrome_write) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let (child_in, child_out): (OwnedFd, OwnedFd) = (to_chrome_read.into(), from_chrome_write.into());
    let (in_fd, out_fd) = (child_in.as_raw_fd(), child_out.as_raw_fd());
    let mut command = tokio::process::Command::new(executable);
    command
        .args(args)
        .arg("--remote-debugging-pipe")
        .env_clear()
        .env("PATH", CHROMIUM_PATH)
        .envs(PASSED_ENV.iter().filter_map(|k| Some((*k, std::env::var_os(k)?))))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2) on descriptors
    // this process owns. The pipe ends are first copied above 10, so that placing them on 3 and
    // 4 cannot overwrite one with the other; dup2 clears close-on-exec on the copies it makes.
    unsafe {
        command.pre_exec(move || {
            let high_in = libc::fcntl(in_fd, libc::F_DUPFD_CLOEXEC, 10);
            let high_out = libc::fcntl(out_fd, libc::F_DUPFD_CLOEXEC, 10);
            if high_in < 0 || high_out < 0 || libc::dup2(high_in, 3) < 0 || libc::dup2(high_out, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", executable.display()))?;
    // The child holds its ends now; ours would keep the pipe open after it exits.
    drop((child_in, child_out));
    let to_chrome = tokio::net::unix::pipe::Sender::from_owned_fd(to_chrome_write.into())
        .map_err(|e| format!("cannot use the DevTools pipe: {e}"))?;
    let from_chrome = tokio::net::unix::pipe::Receiver::from_owned_fd(from_chrome_read.into())
        .map_err(|e| format!("cannot use the DevTools pipe: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen for DevTools: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let path = format!("/devtools/browser/{}{}", pgshot_job::new_job_id(), pgshot_job::new_job_id());
    let ws_url = format!("ws://127.0.0.1:{port}{path}");
    let bridge = tokio::spawn(bridge(listener, path, to_chrome, from_chrome));
    Ok(PipedChromium { child, ws_url, bridge })
}

/// Accepts the one connection that knows `path`, stops listening, and carries messages both ways
/// until either side ends.
async fn bridge(
    listener: TcpListener,
    path: String,
    mut to_chrome: tokio::net::unix::pipe::Sender,
    mut from_chrome: tokio::net::unix::pipe::Receiver,
) {
    let ws = loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let expected = path.clone();
        // The signature is tungstenite's `Callback`: its refusal is an HTTP response.
        #[allow(clippy::result_large_err)]
        let check = move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            if request.uri().path() == expected {
                Ok(response)
            } else {
                let mut refusal = ErrorResponse::new(Some("unknown path".into()));
                *refusal.status_mut() = StatusCode::FORBIDDEN;
                Err(refusal)
            }
        };
        // No size limits, as chromiumoxide sets for its side: a full-page capture is one message
        // of many megabytes.
        let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
        let handshake = async_tungstenite::tokio::accept_hdr_async_with_config(stream, check, Some(config));
        if let Ok(Ok(ws)) = tokio::time::timeout(Duration::from_secs(10), handshake).await {
            break ws;
        }
    };
    drop(listener);
    let (mut ws_out, mut ws_in) = ws.split();
    let to_browser = async {
        while let Some(Ok(message)) = ws_in.next().await {
            let bytes = match message {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_chrome.write_all(&bytes).await.is_err() || to_chrome.write_all(&[0]).await.is_err() {
                break;
            }
        }
    };
    let to_client = async {
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_chrome.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == 0) {
                let message: Vec<u8> = pending.drain(..=end).take(end).collect();
                let Ok(text) = String::from_utf8(message) else { continue };
                if ws_out.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
        let _ = ws_out.close(None).await;
    };
    // Either side ending ends both: the browser exited, or the worker let go of it.
    tokio::select! {
        _ = to_browser => {}
        _ = to_client => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Chromium that speaks on the same descriptors: `cat <&3 >&4` sends every
    /// message back as it came.
    #[tokio::test]
    async fn the_bridge_carries_messages_both_ways_and_admits_only_its_own_path_once() {
        let piped =
            launch(Path::new("/bin/sh"), &["-c".into(), "exec cat <&3 >&4".into(), "sh".into()], &[]).await.unwrap();
        let (host_port, path) = piped.ws_url.strip_prefix("ws://").unwrap().split_once('/').unwrap();
        assert!(path.len() > "devtools/browser/".len() + 30, "{path}");
        // A guess at the path is refused, and does not use up the one connection.
        let wrong = format!("ws://{host_port}/devtools/browser/guess");
        assert!(async_tungstenite::tokio::connect_async(wrong).await.is_err());
        let (mut ws, _) = async_tungstenite::tokio::connect_async(piped.ws_url.clone()).await.unwrap();
        for text in
            ["{\"id\":1,\"method\":\"Browser.getVersion\"}", "{\"id\":2,\"method\":\"x\",\"params\":{\"a\":\"é\"}}"]
        {
            ws.send(Message::Text(text.into())).await.unwrap();
            let back = ws.next().await.unwrap().unwrap();
            assert_eq!(back.to_text().unwrap(), text);
        }
        // Connected once: nothing listens any more.
        assert!(tokio::net::TcpStream::connect(host_port).await.is_err());
        // The far end exiting ends the connection.
        let mut child = piped.child;
        child.kill().await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the WebSocket outlived the process behind it");
    }
}
