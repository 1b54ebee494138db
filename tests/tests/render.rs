//! pgshot-worker against real Postgres and real Chromium, rendering pages that the test serves on
//! 127.0.0.1.

use std::time::{Duration, Instant};

use pgshot_tests::site::{closed_port, stripe_rgb, Site};
use pgshot_tests::worker_process::{descendants, WorkerProcess};
use pgshot_tests::{cluster, Client};
use serde_json::{json, Value};

struct Db {
    client: Client,
    url: String,
}

/// A fresh database whose jobs may point at 127.0.0.1 and whose retries come back at once.
fn db() -> Db {
    let (client, url) = cluster().fresh_local_db(&["pgshot.retry_backoff = 0"]);
    Db { client, url }
}

fn private() -> Vec<(&'static str, String)> {
    vec![("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]
}

fn enqueue(c: &mut Client, url: &str, options: Value) -> String {
    c.query_one("SELECT screenshot_enqueue($1, $2)", &[&url, &options]).unwrap().get(0)
}

/// Polls until the job is COMPLETED, FAILED or CANCELLED; a job still running after `limit` fails
/// the test with the worker's log.
fn finished(c: &mut Client, id: &str, limit: Duration, worker: &WorkerProcess) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let job: Value = c.query_one("SELECT screenshot_job($1)", &[&id]).unwrap().get(0);
        if matches!(job["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED")) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still {} after {limit:?}\n{}", job["status"], worker.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn completed(c: &mut Client, id: &str, worker: &WorkerProcess) -> Value {
    let job = finished(c, id, Duration::from_secs(60), worker);
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", worker.log());
    job
}

fn bytes(c: &mut Client, id: &str, output: Option<&str>) -> Vec<u8> {
    c.query_one("SELECT bytes FROM screenshot_result($1, $2)", &[&id, &output]).unwrap().get(0)
}

struct Image {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

impl Image {
    fn decode(png_bytes: &[u8]) -> Image {
        let mut decoder = png::Decoder::new(png_bytes);
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("PNG pixels");
        let channels = info.color_type.samples();
        let rgba = buf[..info.buffer_size()]
            .chunks(channels)
            .flat_map(|p| match channels {
                4 => [p[0], p[1], p[2], p[3]],
                3 => [p[0], p[1], p[2], 255],
                _ => [p[0], p[0], p[0], 255],
            })
            .collect();
        Image { width: info.width, height: info.height, rgba }
    }

    fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }
}

fn is_close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24)
}

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];

#[test]
fn screenshots_follow_viewport_full_page_selector_wait_dark_mode_and_banner_options() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let viewport =
        enqueue(c, &site.url("/plain"), json!({"viewport": {"width": 800, "height": 600, "deviceScaleFactor": 2}}));
    let tall = enqueue(c, &site.url("/tall"), json!({"viewport": {"width": 640, "height": 480}, "fullPage": true}));
    let capped = enqueue(
        c,
        &site.url("/tall"),
        json!({"viewport": {"width": 640, "height": 480}, "fullPage": true, "maxHeight": 1000}),
    );
    let lazy = enqueue(c, &site.url("/lazy"), json!({"viewport": {"width": 640, "height": 480}, "fullPage": true}));
    let element = enqueue(c, &site.url("/box"), json!({"selector": "#box", "viewport": {"deviceScaleFactor": 2}}));
    let late = enqueue(c, &site.url("/late"), json!({"waitFor": "#late", "viewport": {"width": 400, "height": 300}}));
    let light = enqueue(c, &site.url("/dark"), json!({"viewport": {"width": 400, "height": 300}}));
    let dark = enqueue(c, &site.url("/dark"), json!({"darkMode": true, "viewport": {"width": 400, "height": 300}}));
    let banner = enqueue(c, &site.url("/banner"), json!({"viewport": {"width": 400, "height": 300}}));
    let no_banner = enqueue(
        c,
        &site.url("/banner"),
        json!({"blockCookieBanners": true, "viewport": {"width": 400, "height": 300}}),
    );
    let phone = enqueue(c, &site.url("/plain"), json!({"device": "iPhone 14"}));

    let worker = WorkerProcess::start(&db.url, "shots", &private());

    let job = completed(c, &viewport, &worker);
    let img = Image::decode(&bytes(c, &viewport, None));
    assert_eq!((img.width, img.height), (1600, 1200), "viewport × deviceScaleFactor");
    assert_eq!(job["metadata"]["width"], 1600);
    assert_eq!(job["metadata"]["format"], "PNG");
    assert_eq!(job["metadata"]["title"], "Plain page");
    assert_eq!(job["metadata"]["httpStatus"], 200);

    completed(c, &tall, &worker);
    let img = Image::decode(&bytes(c, &tall, None));
    assert_eq!((img.width, img.height), (640, 3000), "a full-page shot is as tall as the page");
    completed(c, &capped, &worker);
    assert_eq!(Image::decode(&bytes(c, &capped, None)).height, 1000, "maxHeight caps it");

    completed(c, &lazy, &worker);
    let img = Image::decode(&bytes(c, &lazy, None));
    assert!(is_close(img.rgb(100, 2700), RED), "the lazy image below the fold loaded: {:?}", img.rgb(100, 2700));

    completed(c, &element, &worker);
    let img = Image::decode(&bytes(c, &element, None));
    assert_eq!((img.width, img.height), (642, 246), "the element's size × deviceScaleFactor");
    assert!(is_close(img.rgb(321, 123), GREEN));

    completed(c, &late, &worker);
    assert!(is_close(Image::decode(&bytes(c, &late, None)).rgb(50, 50), GREEN), "waitFor waited for the element");

    completed(c, &light, &worker);
    completed(c, &dark, &worker);
    assert!(is_close(Image::decode(&bytes(c, &light, None)).rgb(10, 10), WHITE));
    assert!(is_close(Image::decode(&bytes(c, &dark, None)).rgb(10, 10), BLACK), "darkMode sets prefers-color-scheme");

    completed(c, &banner, &worker);
    completed(c, &no_banner, &worker);
    assert!(is_close(Image::decode(&bytes(c, &banner, None)).rgb(200, 150), RED), "the banner covers the page");
    assert!(is_close(Image::decode(&bytes(c, &no_banner, None)).rgb(200, 150), WHITE), "blockCookieBanners hides it");

    completed(c, &phone, &worker);
    let img = Image::decode(&bytes(c, &phone, None));
    assert_eq!((img.width, img.height), (1170, 2532), "iPhone 14: 390 × 844 at 3×");
}

#[test]
fn formats_have_their_magic_numbers_and_multi_output_comes_from_one_load() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let jpeg = enqueue(c, &site.url("/plain"), json!({"format": "jpg", "quality": 60}));
    let webp = enqueue(c, &site.url("/plain"), json!({"format": "webp"}));
    let pdf = enqueue(c, &site.url("/plain"), json!({"format": "pdf"}));
    let multi = enqueue(
        c,
        &site.url("/plain"),
        json!({"outputs": [
            {"type": "screenshot", "format": "png"},
            {"type": "markdown"},
            {"type": "html"},
            {"type": "text"},
            {"type": "json", "selectors": {"heading": "h1"}},
            {"type": "pdf", "id": "print", "landscape": true}
        ]}),
    );
    let worker = WorkerProcess::start(&db.url, "formats", &private());

    completed(c, &jpeg, &worker);
    assert_eq!(&bytes(c, &jpeg, None)[..3], [0xff, 0xd8, 0xff], "JPEG");
    let job = completed(c, &webp, &worker);
    let b = bytes(c, &webp, None);
    assert_eq!((&b[..4], &b[8..12]), (&b"RIFF"[..], &b"WEBP"[..]), "WebP");
    assert_eq!(job["metadata"]["format"], "WEBP");
    completed(c, &pdf, &worker);
    assert_eq!(&bytes(c, &pdf, None)[..5], b"%PDF-");

    let job = completed(c, &multi, &worker);
    assert_eq!(job["metadata"]["format"], "MULTI");
    let outputs = job["outputs"].as_object().unwrap();
    let mut ids: Vec<&str> = outputs.keys().map(String::as_str).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["html", "json", "markdown", "print", "screenshot", "text"]);
    assert_eq!(outputs["markdown"]["contentType"], "text/markdown; charset=utf-8");
    assert_eq!(&bytes(c, &multi, Some("screenshot"))[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes(c, &multi, Some("print"))[..5], b"%PDF-");
    let markdown = String::from_utf8(bytes(c, &multi, Some("markdown"))).unwrap();
    assert!(markdown.contains("# Hello pgshot"), "{markdown}");
    assert!(markdown.contains("[the docs](https://example.com/docs)"), "{markdown}");
    let html = String::from_utf8(bytes(c, &multi, Some("html"))).unwrap();
    assert!(html.starts_with("<html") && html.contains("<h1>Hello pgshot</h1>"), "{html}");
    let text = String::from_utf8(bytes(c, &multi, Some("text"))).unwrap();
    assert!(text.contains("Hello pgshot") && !text.contains('<'), "{text}");
    let extracted: Value = serde_json::from_slice(&bytes(c, &multi, Some("json"))).unwrap();
    assert_eq!(extracted["data"]["heading"], json!(["Hello pgshot"]));
    assert_eq!(extracted["title"], "Plain page");
}

/// An HTTPS server on 127.0.0.1 with a certificate made for the test (openssl, self-signed), and
/// its port; it stops when the returned guard is dropped.
fn self_signed_https_server() -> (ChildGuard, u16) {
    let dir = std::env::temp_dir().join(format!("pgshot-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    pgshot_tests::run(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let server = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'<h1>over TLS</h1>'
        self.send_response(200)
        self.send_header('Content-Type', 'text/html')
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", server])
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the HTTPS server did not start: {line:?}"));
    (ChildGuard(child), port)
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real user id of a process (`self` for this one).
fn uid_of(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("Uid:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The inodes of every TCP socket in the LISTEN state (IPv4 and IPv6).
fn listening_socket_inodes() -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f).unwrap_or_default().lines().skip(1).map(str::to_string).collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"0A")).then(|| fields.get(9).map(|i| i.to_string())).flatten()
        })
        .collect()
}

/// The inodes of the sockets a process holds open.
fn socket_inodes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')).map(str::to_string)
        })
        .collect()
}

/// Chromium never runs as root: a root worker renders as pgshot-render (scripts/setup.sh makes
/// it), another worker as itself; the sandbox is on (renderers live in user namespaces of their
/// own); DevTools is a pipe, not a port; the profile is private to the render user.
#[test]
fn chromium_renders_as_an_unprivileged_user_inside_its_sandbox() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let id = enqueue(c, &site.url("/plain"), json!({}));
    let worker = WorkerProcess::start(&db.url, "sandboxed", &private());
    completed(c, &id, &worker);
    let expected = match uid_of("self") {
        0 => {
            let out = std::process::Command::new("id").args(["-u", "pgshot-render"]).output().unwrap();
            assert!(out.status.success(), "no user pgshot-render: scripts/setup.sh makes it");
            String::from_utf8(out.stdout).unwrap().trim().parse::<u32>().unwrap()
        }
        me => me,
    };
    assert_ne!(expected, 0);
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let chromium: Vec<(u32, String)> = descendants(worker.pid())
        .into_iter()
        .map(|pid| (pid, String::from_utf8_lossy(&cmdline(pid)).replace('\0', " ")))
        .filter(|(_, cmd)| cmd.contains("chromium"))
        .collect();
    let browser = chromium.iter().find(|(_, cmd)| !cmd.contains("--type=")).expect("the browser process");
    let renderers: Vec<&(u32, String)> = chromium.iter().filter(|(_, cmd)| cmd.contains("--type=renderer")).collect();
    assert!(!renderers.is_empty(), "{chromium:?}");
    for (pid, cmd) in &chromium {
        assert_eq!(uid_of(&pid.to_string()), expected, "{cmd}");
        assert!(!cmd.contains("--no-sandbox"), "{cmd}");
    }
    let user_ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    for (pid, cmd) in renderers {
        assert_ne!(user_ns(*pid), user_ns(browser.0), "a renderer outside the sandbox's namespace: {cmd}");
    }
    // DevTools on a pipe: no debugging port, and no Chromium process listens on any TCP socket.
    assert!(
        browser.1.contains("--remote-debugging-pipe") && !browser.1.contains("--remote-debugging-port"),
        "{}",
        browser.1
    );
    let listening = listening_socket_inodes();
    // (What a listener looks like here: the worker's own egress proxies listen on 127.0.0.1.)
    assert!(socket_inodes(worker.pid()).iter().any(|s| listening.contains(s)), "no listener seen at all");
    for (pid, cmd) in &chromium {
        let sockets = socket_inodes(*pid);
        assert!(sockets.iter().all(|s| !listening.contains(s)), "a Chromium process listens: {cmd}");
    }
    let profile = browser.1.split(' ').find_map(|arg| arg.strip_prefix("--user-data-dir=")).expect("a profile");
    let meta = std::fs::symlink_metadata(profile).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o700, "{profile}");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), expected, "{profile}");
}

/// A public address that is one of the worker machine's own (a host with a public IP) is
/// refused like a private one: services listening on every interface answer there.
#[test]
fn an_address_of_the_workers_own_machine_is_refused_even_when_public() {
    let cluster = cluster();
    let name = cluster.fresh_db();
    let mut c = cluster.connect(&name);
    let own = enqueue(&mut c, "http://9.9.9.9:8080/", json!({"maxAttempts": 1}));
    let other = enqueue(&mut c, "http://9.9.9.8:8080/", json!({"maxAttempts": 1}));
    // Over the cluster's Unix socket: the worker's network namespace has no route to 127.0.0.1
    // of the test's.
    let socket = format!("host={} port={} user=postgres dbname={name}", cluster.dir().display(), cluster.port());
    let worker = WorkerProcess::start_in_network_namespace(&socket, "own-address", &[], "9.9.9.9");
    let job = finished(&mut c, &own, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "BLOCKED_URL", "{job}\n{}", worker.log());
    assert!(job["errorMessage"].as_str().unwrap().contains("an address of this machine"), "{job}");
    // The address beside it is public and not the machine's: tried, and unreachable here.
    let job = finished(&mut c, &other, Duration::from_secs(30), &worker);
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_ne!(job["errorCode"], "BLOCKED_URL", "{job}");
}

#[test]
fn timeouts_refused_connections_and_missing_selectors_fail_with_their_codes() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let hang = enqueue(c, &site.url("/hang"), json!({"timeout": 2000, "maxAttempts": 1}));
    let refused = enqueue(c, &format!("http://127.0.0.1:{}/", closed_port()), json!({"maxAttempts": 1}));
    let unresolved = enqueue(c, "http://no-such-host.invalid/", json!({"maxAttempts": 1}));
    let missing = enqueue(c, &site.url("/plain"), json!({"waitFor": "#never", "timeout": 1500, "maxAttempts": 3}));
    let retried = enqueue(c, &format!("http://127.0.0.1:{}/", closed_port()), json!({"maxAttempts": 2}));
    // A page whose certificate no one vouches for (self-signed): the navigation fails, so that
    // nobody on the path sees the cookies and headers the job sends.
    let (_https, https_port) = self_signed_https_server();
    let untrusted = enqueue(
        c,
        &format!("https://127.0.0.1:{https_port}/"),
        json!({"maxAttempts": 1, "session": {"cookies": [{"name": "sid", "value": "secret"}]}}),
    );
    // Rows changed by hand after screenshot_enqueue checked them: the worker checks them again.
    // (A file: or chrome: URL does not get this far: jobs_url_http refuses it, queue.rs.)
    let hand_url = enqueue(c, &site.url("/plain"), json!({"maxAttempts": 1}));
    c.execute("UPDATE pgshot.jobs SET url = 'http://exa mple.com:99999/' WHERE id = $1", &[&hand_url]).unwrap();
    let hand_options = enqueue(c, &site.url("/plain"), json!({"maxAttempts": 1}));
    let huge = json!({"viewport": {"width": 100000, "height": 100000}});
    c.execute("UPDATE pgshot.jobs SET options = $2 WHERE id = $1", &[&hand_options, &huge]).unwrap();
    let worker = WorkerProcess::start(&db.url, "errors", &private());

    let started = Instant::now();
    let job = finished(c, &hang, Duration::from_secs(30), &worker);
    assert_eq!((job["status"].as_str(), job["errorCode"].as_str()), (Some("FAILED"), Some("TIMEOUT")), "{job}");
    assert_eq!(job["errorMessage"], "Page load timed out after 2 seconds");
    assert!(started.elapsed() < Duration::from_secs(20), "the timeout bounds the attempt");

    // What happened, not Chromium's code for a failed proxy connection (ERR_SOCKS_CONNECTION_FAILED).
    let job = finished(c, &refused, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "URL_UNREACHABLE", "{job}");
    let message = job["errorMessage"].as_str().unwrap();
    assert!(message.contains("connection refused by 127.0.0.1:") && !message.contains("ERR_"), "{job}");
    let job = finished(c, &unresolved, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "URL_UNREACHABLE", "{job}");
    assert!(job["errorMessage"].as_str().unwrap().ends_with("could not resolve no-such-host.invalid"), "{job}");

    let job = finished(c, &missing, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "SELECTOR_NOT_FOUND", "{job}");
    let attempts: i32 = c.query_one("SELECT attempt FROM pgshot.jobs WHERE id = $1", &[&missing]).unwrap().get(0);
    assert_eq!(attempts, 1, "a missing selector is not retried");

    let job = finished(c, &retried, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "URL_UNREACHABLE");
    let attempts: i32 = c.query_one("SELECT attempt FROM pgshot.jobs WHERE id = $1", &[&retried]).unwrap().get(0);
    assert_eq!(attempts, 2, "an unreachable URL is retried up to maxAttempts");

    let job = finished(c, &untrusted, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "URL_UNREACHABLE", "{job}");
    let message = job["errorMessage"].as_str().unwrap();
    assert!(message.contains("the TLS certificate of 127.0.0.1 is not valid") && message.contains("ERR_CERT"), "{job}");

    for (id, field) in [(&hand_url, "url"), (&hand_options, "viewport.width")] {
        let job = finished(c, id, Duration::from_secs(30), &worker);
        assert_eq!(job["errorCode"], "INVALID_JOB", "{job}");
        assert!(job["errorMessage"].as_str().unwrap().contains(field), "{job}");
    }
}

#[test]
fn parallel_jobs_share_no_cookies_or_storage_and_sessions_apply() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let ids: Vec<String> =
        (0..4).map(|_| enqueue(c, &site.url("/memory"), json!({"viewport": {"width": 300, "height": 200}}))).collect();
    let with_session = enqueue(
        c,
        &site.url("/session"),
        json!({"session": {
            "cookies": [{"name": "sid", "value": "abc123"}],
            "storage": [{"key": "token", "value": "t-42"}]
        }, "outputs": [{"type": "text"}]}),
    );
    let mut env = private();
    env.push(("PGSHOT_WORKER_CONCURRENCY", "2".into()));
    let worker = WorkerProcess::start(&db.url, "isolation", &env);
    for id in &ids {
        completed(c, id, &worker);
        let img = Image::decode(&bytes(c, id, None));
        assert!(is_close(img.rgb(10, 10), GREEN), "job {id} saw another job's cookie or storage");
    }
    completed(c, &with_session, &worker);
    let text = String::from_utf8(bytes(c, &with_session, Some("text"))).unwrap();
    let seen: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(seen, json!({"cookie": "sid=abc123", "token": "t-42", "session": null}));
}

#[test]
fn ssrf_is_refused_by_default_for_pages_redirects_and_subresources() {
    let site = Site::start();
    let other = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let port = site.port();
    let spellings = [
        format!("http://127.0.0.1:{port}/plain"),
        format!("http://2130706433:{port}/plain"),
        format!("http://0177.0.0.1:{port}/plain"),
        format!("http://0x7f000001:{port}/plain"),
        format!("http://[::ffff:127.0.0.1]:{port}/plain"),
        format!("http://[::1]:{port}/plain"),
        format!("http://localhost:{port}/plain"),
    ];
    let refused: Vec<String> = spellings.iter().map(|u| enqueue(c, u, json!({"maxAttempts": 1}))).collect();
    // The site's own port is trusted explicitly; a redirect and an image lead to another port.
    let redirect = enqueue(
        c,
        &site.url(&format!("/redirect?to=http%3A%2F%2F127.0.0.1%3A{}%2Fplain", other.port())),
        json!({"maxAttempts": 1}),
    );
    let image = enqueue(
        c,
        &site.url(&format!("/image-from?port={}", other.port())),
        json!({"viewport": {"width": 300, "height": 300}}),
    );

    let env = vec![("PGSHOT_ALLOW_DESTINATIONS", format!("127.0.0.1:{port}"))];
    let mut worker = WorkerProcess::start(&db.url, "ssrf", &env);
    for (id, url) in refused.iter().zip(&spellings) {
        let job = finished(c, id, Duration::from_secs(30), &worker);
        // These spellings all reach 127.0.0.1 on the allowed port (Chromium maps localhost there
        // itself): they render. ::1 and the IPv4-mapped form are other addresses.
        let is_site = !url.contains('[');
        if is_site {
            assert_eq!(job["status"], "COMPLETED", "{url}: {job}");
        } else {
            assert_eq!(job["errorCode"], "BLOCKED_URL", "{url}: {job}");
        }
    }
    let job = finished(c, &redirect, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "BLOCKED_URL", "a redirect to a private address is refused: {job}");
    completed(c, &image, &worker);
    let img = Image::decode(&bytes(c, &image, None));
    assert!(is_close(img.rgb(100, 100), WHITE), "the private image was not loaded: {:?}", img.rgb(100, 100));
    worker.terminate(Duration::from_secs(20));

    // Without the allow-list every spelling is refused; with private networks allowed all render.
    // NAT64 and 6to4 forms of 127.0.0.1 are refused for the IPv4 address they carry.
    let mut strict_urls = spellings.to_vec();
    strict_urls.push(format!("http://[64:ff9b::7f00:1]:{port}/plain"));
    strict_urls.push(format!("http://[2002:7f00:1::1]:{port}/plain"));
    let strict: Vec<String> = strict_urls.iter().map(|u| enqueue(c, u, json!({"maxAttempts": 1}))).collect();
    let worker = WorkerProcess::start(&db.url, "ssrf-strict", &[]);
    for (id, url) in strict.iter().zip(&strict_urls) {
        let job = finished(c, id, Duration::from_secs(30), &worker);
        assert_eq!(job["errorCode"], "BLOCKED_URL", "{url}: {job}");
    }
    drop(worker);
    let open: Vec<String> = spellings.iter().map(|u| enqueue(c, u, json!({"maxAttempts": 1}))).collect();
    let redirect = enqueue(
        c,
        &site.url(&format!("/redirect?to=http%3A%2F%2F127.0.0.1%3A{}%2Fplain", other.port())),
        json!({"maxAttempts": 1}),
    );
    let worker = WorkerProcess::start(&db.url, "ssrf-open", &private());
    for (id, url) in open.iter().zip(&spellings).chain([(&redirect, &"redirect".to_string())]) {
        let job = finished(c, id, Duration::from_secs(30), &worker);
        if url.contains("[::1]") {
            // Allowed through, but the site listens on IPv4 only.
            assert_eq!(job["errorCode"], "URL_UNREACHABLE", "{url}: {job}");
        } else {
            assert_eq!(job["status"], "COMPLETED", "{url}: {job}");
        }
    }
}

#[test]
fn a_killed_worker_loses_its_job_to_another_and_cannot_complete_it() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let id = enqueue(c, &site.url("/slow?ms=4000"), json!({}));
    let lease = vec![("PGSHOT_LEASE_SECONDS", "3".to_string()), ("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())];
    let mut first = WorkerProcess::start(&db.url, "doomed", &lease);
    wait_for_status(c, &id, "PROCESSING", &first);
    std::thread::sleep(Duration::from_millis(500));
    let chromium = descendants(first.pid());
    first.kill9();
    for pid in chromium {
        // SIGKILL of the worker leaves its Chromium to be killed by whoever supervises it.
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    }

    let second = WorkerProcess::start(&db.url, "heir", &lease);
    let job = completed(c, &id, &second);
    let row = c.query_one("SELECT attempt, worker_id, errors FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap();
    assert_eq!(row.get::<_, i32>(0), 2, "{job}");
    assert_eq!(row.get::<_, String>(1), "heir");
    assert_eq!(row.get::<_, Value>(2)[0]["code"], "LEASE_EXPIRED");
    let stale = c.execute(
        "SELECT screenshot_complete($1, 'doomed', 1, '{}', ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x00'::bytea, '{}')::pgshot.output])",
        &[&id],
    );
    assert_eq!(stale.unwrap_err().code().unwrap().code(), "55000", "the killed attempt is fenced out");
}

#[test]
fn a_killed_chromium_fails_the_attempt_and_the_retry_completes() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let id = enqueue(c, &site.url("/slow?ms=3000"), json!({"maxAttempts": 3}));
    let worker = WorkerProcess::start(&db.url, "crashy", &private());
    wait_for_status(c, &id, "PROCESSING", &worker);
    std::thread::sleep(Duration::from_millis(800));
    let chromium = descendants(worker.pid());
    assert!(!chromium.is_empty(), "Chromium runs under the worker");
    for pid in &chromium {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let job = completed(c, &id, &worker);
    let row = c.query_one("SELECT attempt, errors FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap();
    assert!(row.get::<_, i32>(0) >= 2, "{job}");
    assert_eq!(row.get::<_, Value>(1)[0]["code"], "BROWSER_CRASHED", "{job}");

    // A clean stop reaps every Chromium process.
    let pid = worker.pid();
    let mut worker = worker;
    assert!(worker.terminate(Duration::from_secs(30)), "the worker stops on SIGTERM");
    let left = descendants(pid);
    assert!(left.is_empty(), "Chromium processes left behind: {left:?}");
    let leftovers = pgshot_tests::worker_process::processes_named(&format!("pgshot-chromium-{pid}-"));
    assert!(leftovers.is_empty(), "Chromium processes left behind: {leftovers:?}");
}

fn wait_for_status(c: &mut Client, id: &str, status: &str, worker: &WorkerProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job: Value = c.query_one("SELECT screenshot_job($1)", &[&id]).unwrap().get(0);
        if job["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} never became {status}: {job}\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cancelling_a_rendering_job_stops_it_at_the_next_heartbeat() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let id = enqueue(c, &site.url("/slow?ms=6000"), json!({}));
    let mut env = private();
    env.push(("PGSHOT_LEASE_SECONDS", "3".into()));
    let worker = WorkerProcess::start(&db.url, "cancel", &env);
    wait_for_status(c, &id, "PROCESSING", &worker);
    let flagged: Value = c.query_one("SELECT screenshot_cancel($1)", &[&id]).unwrap().get(0);
    assert_eq!(flagged["status"], "PROCESSING");
    let job = finished(c, &id, Duration::from_secs(30), &worker);
    assert_eq!(job["status"], "CANCELLED", "{job}");
    std::thread::sleep(Duration::from_secs(6));
    let job: Value = c.query_one("SELECT screenshot_job($1)", &[&id]).unwrap().get(0);
    assert_eq!(job["status"], "CANCELLED", "the render's end did not complete it: {job}");
    assert!(worker.log().contains("cancelled while rendering"), "{}", worker.log());
}

#[test]
fn sigterm_lets_running_jobs_finish_and_releases_what_outlasts_the_grace_period() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;

    // A generous grace period: the running job completes before the worker exits.
    let quick = enqueue(c, &site.url("/slow?ms=1500"), json!({}));
    let mut env = private();
    env.push(("PGSHOT_SHUTDOWN_GRACE_SECONDS", "20".into()));
    let mut worker = WorkerProcess::start(&db.url, "graceful", &env);
    wait_for_status(c, &quick, "PROCESSING", &worker);
    assert!(worker.terminate(Duration::from_secs(30)), "the worker exits after SIGTERM");
    let job: Value = c.query_one("SELECT screenshot_job($1)", &[&quick]).unwrap().get(0);
    assert_eq!(job["status"], "COMPLETED", "{job}");

    // A short one: the job is given back, claimable at once, its attempt not counted.
    let long = enqueue(c, &site.url("/slow?ms=8000"), json!({}));
    let mut env = private();
    env.push(("PGSHOT_SHUTDOWN_GRACE_SECONDS", "1".into()));
    let mut worker = WorkerProcess::start(&db.url, "impatient", &env);
    wait_for_status(c, &long, "PROCESSING", &worker);
    let pid = worker.pid();
    assert!(worker.terminate(Duration::from_secs(30)), "the worker exits after SIGTERM");
    let row = c.query_one("SELECT status, attempt, run_at <= now() FROM pgshot.jobs WHERE id = $1", &[&long]).unwrap();
    assert_eq!((row.get::<_, String>(0).as_str(), row.get::<_, i32>(1), row.get::<_, bool>(2)), ("QUEUED", 0, true));
    assert!(descendants(pid).is_empty(), "no Chromium process outlives the worker");
}

#[test]
fn actions_headers_and_css_shape_the_page_before_capture() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let actions = enqueue(
        c,
        &site.url("/actions"),
        json!({
            "actions": [
                {"type": "click", "selector": "#go"},
                {"type": "type", "selector": "#name", "text": "Ada"},
                {"type": "press", "key": "Enter"},
                {"type": "select", "selector": "#pick", "value": "b"},
                {"type": "hover", "selector": "#hoverme"},
                {"type": "scroll", "y": 500},
                {"type": "wait", "duration": 100}
            ],
            "outputs": [{"type": "json", "selectors": {"state": "#state"}}]
        }),
    );
    let missing = enqueue(
        c,
        &site.url("/actions"),
        json!({"actions": [{"type": "click", "selector": "#nope"}], "maxAttempts": 1}),
    );
    let headers = enqueue(
        c,
        &site.url("/echo-headers"),
        json!({"session": {"headers": [
            {"name": "X-All", "value": "1"},
            {"name": "X-Scoped", "value": "yes", "origin": format!("http://127.0.0.1:{}", site.port())},
            {"name": "X-Other", "value": "no", "origin": "https://elsewhere.example"}
        ]}, "outputs": [{"type": "text"}]}),
    );
    let styled = enqueue(
        c,
        &site.url("/plain"),
        json!({"customCss": "html, body { background: #0000ff !important }", "hideSelectors": ["h1"],
               "viewport": {"width": 400, "height": 300}, "outputs": [{"type": "screenshot"}, {"type": "text"}]}),
    );
    let worker = WorkerProcess::start(&db.url, "actions", &private());

    completed(c, &actions, &worker);
    let extracted: Value = serde_json::from_slice(&bytes(c, &actions, Some("json"))).unwrap();
    let state: Value = serde_json::from_str(extracted["data"]["state"][0].as_str().unwrap()).unwrap();
    assert_eq!(
        state,
        json!({"clicked": true, "name": "Ada", "entered": true, "picked": "b", "hovered": true, "scrolled": true,
               "bottom": false})
    );
    let job = finished(c, &missing, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "SELECTOR_NOT_FOUND", "{job}");

    completed(c, &headers, &worker);
    let seen = String::from_utf8(bytes(c, &headers, Some("text"))).unwrap();
    assert!(seen.contains("x-all: 1") && seen.contains("x-scoped: yes"), "{seen}");
    assert!(!seen.contains("x-other"), "a header scoped to another origin is not sent: {seen}");

    completed(c, &styled, &worker);
    assert!(is_close(Image::decode(&bytes(c, &styled, Some("screenshot"))).rgb(390, 290), [0, 0, 255]), "customCss");
    let text = String::from_utf8(bytes(c, &styled, Some("text"))).unwrap();
    assert!(!text.contains("Hello pgshot") && text.contains("the docs"), "hideSelectors hid the heading: {text}");
}

#[test]
fn a_hung_chromium_is_replaced_and_leaves_no_process_behind() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let id = enqueue(c, &site.url("/slow?ms=1500"), json!({"timeout": 4000, "maxAttempts": 3}));
    let mut worker = WorkerProcess::start(&db.url, "frozen", &private());
    wait_for_status(c, &id, "PROCESSING", &worker);
    std::thread::sleep(Duration::from_millis(300));
    let frozen = descendants(worker.pid());
    assert!(!frozen.is_empty(), "Chromium runs under the worker");
    for pid in &frozen {
        // A hung browser: alive, connected, and answering nothing.
        let _ = std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status();
    }
    let job = finished(c, &id, Duration::from_secs(120), &worker);
    assert_eq!(job["status"], "COMPLETED", "a new browser finished the job: {job}\n{}", worker.log());
    let errors: Value = c.query_one("SELECT errors FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    let codes: Vec<&str> = errors.as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert!(codes.iter().all(|c| ["TIMEOUT", "BROWSER_CRASHED"].contains(c)) && !codes.is_empty(), "{codes:?}");
    let pid = worker.pid();
    assert!(worker.terminate(Duration::from_secs(30)));
    // Killed helpers are orphans, reaped by init in its own time: exited (a zombie) counts as gone.
    let running = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left: Vec<u32> = frozen.iter().copied().filter(running).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left.retain(running);
    }
    assert!(left.is_empty(), "the frozen Chromium's processes were killed: {left:?}\n{}", worker.log());
    assert!(descendants(pid).is_empty());
}

#[test]
fn an_output_over_the_size_limit_fails_with_its_own_code_and_is_not_retried() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let id = enqueue(c, &site.url("/plain"), json!({"maxAttempts": 3}));
    let mut env = private();
    env.push(("PGSHOT_MAX_OUTPUT_BYTES", "1000".into()));
    let worker = WorkerProcess::start(&db.url, "tight", &env);
    let job = finished(c, &id, Duration::from_secs(60), &worker);
    assert_eq!(
        (job["status"].as_str(), job["errorCode"].as_str()),
        (Some("FAILED"), Some("OUTPUT_TOO_LARGE")),
        "{job}"
    );
    assert!(job["errorMessage"].as_str().unwrap().contains("limit of 1000"), "{job}");
    let attempts: i32 = c.query_one("SELECT attempt FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(attempts, 1, "the same page would be as large again");
}

#[test]
fn ssrf_through_redirect_chains_frames_and_names_that_resolve_to_loopback_is_refused() {
    let site = Site::start();
    let other = Site::start();
    let receiver = pgshot_tests::receiver::Receiver::start();
    let (mut c, url) = cluster().fresh_local_db(&["pgshot.retry_backoff = 0", "pgshot.webhook_retry_schedule = '0'"]);
    let c = &mut c;
    let chain = enqueue(c, &site.url(&format!("/hop?n=3&port={}", other.port())), json!({"maxAttempts": 1}));
    let frame = enqueue(
        c,
        &site.url(&format!("/frame-from?port={}", other.port())),
        json!({"viewport": {"width": 300, "height": 300}}),
    );
    let name = format!("http://pgshot-ssrf.example:{}/red-page", other.port());
    let by_name = enqueue(c, &name, json!({"maxAttempts": 1}));
    let hook_by_name = enqueue(
        c,
        &site.url("/plain"),
        json!({"webhookUrl": format!("http://pgshot-hook.example:{}/hook", receiver.port())}),
    );
    // Only the site itself is trusted; the names resolve to 127.0.0.1 in the worker's hosts file.
    let env = vec![("PGSHOT_ALLOW_DESTINATIONS", format!("127.0.0.1:{}", site.port()))];
    let hosts = "127.0.0.1 pgshot-ssrf.example\n127.0.0.1 pgshot-hook.example";
    let worker = WorkerProcess::start_with_hosts(&url, "ssrf-tricks", &env, hosts);

    let job = finished(c, &chain, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "BLOCKED_URL", "a chain of three redirects ending on 127.0.0.1: {job}");
    let job = finished(c, &by_name, Duration::from_secs(30), &worker);
    assert_eq!(job["errorCode"], "BLOCKED_URL", "a public-looking name that resolves to 127.0.0.1: {job}");
    let message = job["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("a private address") && !message.contains("127.0.0.1"), "{job}");
    completed(c, &frame, &worker);
    let img = Image::decode(&bytes(c, &frame, None));
    // The frame holds Chromium's error placeholder instead of the private page's red.
    assert!(!is_close(img.rgb(100, 100), RED), "the private frame was not loaded: {:?}", img.rgb(100, 100));

    completed(c, &hook_by_name, &worker);
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job: Value = c.query_one("SELECT screenshot_job($1)", &[&hook_by_name]).unwrap().get(0);
        if job["webhook"]["status"] == "FAILED" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let error = job["webhook"]["lastError"].as_str().unwrap_or_default();
    // Refused, and without the private address the name resolves to.
    assert!(error.contains("non-public") && error.contains("a private address"), "{job}");
    assert!(!error.contains("127.0.0.1"), "{job}");
    assert!(receiver.received().is_empty(), "nothing reached the receiver behind the name");
    assert_eq!(other.connections(), 0, "nothing reached the private site");
}

#[test]
fn domcontentloaded_does_not_wait_for_a_subresource_that_never_answers() {
    // chromiumoxide answers a Page.navigate only at the page's load event: on real pages whose
    // third-party images never arrive, every job waited out its whole timeout ("navigate: Request
    // timed out"). The default wait is DOMContentLoaded, and it must mean it.
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let options = json!({"timeout": 8000, "maxAttempts": 1, "outputs": [{"type": "screenshot"}, {"type": "text"}]});
    let dcl = enqueue(c, &site.url("/stalled-image"), options.clone());
    let mut load_options = options;
    load_options["waitUntil"] = json!("load");
    let load = enqueue(c, &site.url("/stalled-image"), load_options);
    let worker = WorkerProcess::start(&db.url, "stalled", &private());
    let job = completed(c, &dcl, &worker);
    assert!(job["metadata"]["renderTimeMs"].as_i64().unwrap() < 8000, "{job}");
    let text = String::from_utf8(bytes(c, &dcl, Some("text"))).unwrap();
    assert!(text.contains("Content first"), "{text}");
    let job = finished(c, &load, Duration::from_secs(60), &worker);
    assert_eq!((job["status"].as_str(), job["errorCode"].as_str()), (Some("FAILED"), Some("TIMEOUT")), "{job}");
}

#[test]
fn chromium_gets_the_switches_the_worker_means() {
    // chromiumoxide prefixes every switch with `--`: given with its dashes, a switch reached
    // Chromium as `----switch` and was ignored (the loopback proxy rule and the WebRTC policy of
    // the SSRF defence among them).
    let db = db();
    let worker = WorkerProcess::start(&db.url, "switches", &private());
    let deadline = Instant::now() + Duration::from_secs(30);
    let args = loop {
        let browser = descendants(worker.pid()).into_iter().find_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = String::from_utf8_lossy(&cmdline).split('\0').map(str::to_string).collect();
            (args.iter().any(|a| a.starts_with("--user-data-dir=")) && !args.iter().any(|a| a.starts_with("--type=")))
                .then_some(args)
        });
        if let Some(args) = browser {
            break args;
        }
        assert!(Instant::now() < deadline, "no Chromium under the worker\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    for wanted in [
        "--proxy-bypass-list=<-loopback>",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--js-flags=--max-old-space-size=1024",
        "--disable-gpu",
    ] {
        assert!(args.iter().any(|a| a == wanted), "{wanted} is missing: {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("---")), "a switch with too many dashes: {args:?}");
    assert!(!args.iter().any(|a| a == "--disable-popup-blocking"), "the popup blocker is off: {args:?}");
}

/// The rows of `image` (at x = `x`) whose colour is close to `rgb`, as [start, end) runs.
fn runs_of(image: &Image, x: u32, rgb: [u8; 3]) -> Vec<(u32, u32)> {
    let mut runs = Vec::new();
    let mut start = None;
    for y in 0..=image.height {
        let hit = y < image.height && is_close(image.rgb(x, y), rgb);
        match (hit, start) {
            (true, None) => start = Some(y),
            (false, Some(s)) => {
                runs.push((s, y));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[test]
fn stitched_and_native_full_pages_with_and_without_frozen_fixed_elements() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let url = site.url("/fixed");
    let view = json!({"width": 400, "height": 300});
    let stitched =
        enqueue(c, &url, json!({"viewport": view, "fullPage": true, "fullPageMode": "stitch", "scrollInterval": 50}));
    let frozen = enqueue(
        c,
        &url,
        json!({"viewport": view, "fullPage": true, "fullPageMode": "stitch", "freezeFixed": true, "scrollInterval": 50}),
    );
    let native_frozen = enqueue(c, &url, json!({"viewport": view, "fullPage": true, "freezeFixed": true}));
    let two_sections =
        enqueue(c, &url, json!({"viewport": view, "fullPage": true, "fullPageMode": "stitch", "maxSections": 2}));
    let jpeg = enqueue(
        c,
        &url,
        json!({"viewport": {"width": 400, "height": 300, "deviceScaleFactor": 2}, "fullPage": true,
               "fullPageMode": "stitch", "format": "jpeg", "quality": 60, "maxSections": 3}),
    );
    let worker = WorkerProcess::start(&db.url, "stitch", &private());

    // Stitched as a reader scrolls: the fixed header is in every viewport-high section.
    completed(c, &stitched, &worker);
    let image = Image::decode(&bytes(c, &stitched, None));
    assert_eq!((image.width, image.height), (400, 3000));
    let red = runs_of(&image, 200, RED);
    assert_eq!(red.len(), 10, "one header per section: {red:?}");
    assert_eq!(red[1], (300, 340), "{red:?}");
    // Between the headers, each stripe is where the page has it: the sections join without a seam.
    for i in 0..10u8 {
        let y = u32::from(i) * 300 + 150;
        assert!(is_close(image.rgb(200, y), stripe_rgb(i)), "stripe {i} at y={y}: {:?}", image.rgb(200, y));
    }

    // freezeFixed: the header stays where it is in the first viewport, once.
    for (id, what) in [(&frozen, "stitch"), (&native_frozen, "native")] {
        completed(c, id, &worker);
        let image = Image::decode(&bytes(c, id, None));
        assert_eq!((image.width, image.height), (400, 3000), "{what}");
        assert_eq!(runs_of(&image, 200, RED), [(0, 40)], "{what}");
        assert!(is_close(image.rgb(200, 320), stripe_rgb(1)), "{what}: no header over stripe 1");
    }

    let job = completed(c, &two_sections, &worker);
    let image = Image::decode(&bytes(c, &two_sections, None));
    assert_eq!((image.width, image.height), (400, 600), "maxSections bounds the height");
    assert_eq!(job["metadata"]["height"], 600, "{job}");

    // A stitched JPEG at device scale 2: the joined image is encoded in the format asked for.
    let job = completed(c, &jpeg, &worker);
    assert_eq!(&bytes(c, &jpeg, None)[..3], b"\xff\xd8\xff");
    assert_eq!(
        (job["metadata"]["width"].clone(), job["metadata"]["height"].clone()),
        (json!(800), json!(1800)),
        "{job}"
    );
}

/// What the Python SDK (allscreenshots_sdk 2.0.0) sends for a capture: every default of its
/// `ScreenshotRequest` model (models/screenshot_request.py).
fn python_sdk_request(url: &str) -> Value {
    json!({"blockAds": true, "blockCookieBanners": true, "blockLevel": "none", "blockPopups": true,
           "darkMode": false, "delay": 0, "format": "png", "freezeFixed": true, "fullPage": false,
           "fullPageMode": "stitch", "maxSections": 50, "quality": 80, "responseType": "BINARY",
           "scrollInterval": 150, "stealthMode": false, "timeout": 30000, "url": url,
           "waitUntil": "domcontentloaded"})
}

/// `body` without its url: `screenshot_enqueue` takes the URL apart.
fn options_of(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("url");
    body
}

#[test]
fn every_option_the_sdks_send_has_its_effect() {
    let site = Site::start();
    let mut db = db();
    let c = &mut db.client;
    let text = json!([{"type": "text"}]);
    // stealthMode, with the SDK's other defaults, and without it.
    let mut stealthy = python_sdk_request(&site.url("/detect"));
    stealthy["stealthMode"] = json!(true);
    stealthy["outputs"] = text.clone();
    let stealthy = enqueue(c, &site.url("/detect"), options_of(stealthy));
    let plain = enqueue(c, &site.url("/detect"), json!({"outputs": text}));
    // The SDK's output specs, exactly as its models serialise them.
    let article = enqueue(
        c,
        &site.url("/article"),
        json!({"outputs": [
            {"id": "md", "mainContentOnly": true, "type": "markdown"},
            {"id": "md-all", "mainContentOnly": false, "type": "markdown"},
            {"id": "main", "clean": false, "mainContentOnly": true, "type": "html"},
            {"id": "clean", "clean": true, "mainContentOnly": false, "type": "html"},
            {"id": "text", "mainContentOnly": true, "type": "text"},
            {"format": "Letter", "landscape": false, "printBackground": true, "type": "pdf", "id": "letter"},
            {"format": "A4", "landscape": false, "printBackground": true, "type": "pdf", "id": "a4"},
        ]}),
    );
    let extract = enqueue(
        c,
        &site.url("/extract"),
        json!({"outputs": [{"type": "json", "schema": {
            "title": {"multiple": false, "selector": "h1", "type": "text"},
            "links": {"multiple": true, "selector": "a.l", "type": "attribute", "attribute": "href"},
            "price": {"selector": "#price", "type": "number"},
            "rich": {"selector": "#rich", "type": "html"},
            "none": {"selector": "#missing"},
        }}]}),
    );
    // Actions as the SDK sends them: optional, timeout, clear, toBottom, wait's ms.
    let acted = enqueue(
        c,
        &site.url("/actions"),
        json!({
            "actions": [
                {"optional": true, "selector": "#nope", "timeout": 200, "type": "click"},
                {"clear": true, "optional": false, "selector": "#prefilled", "text": "new", "type": "type"},
                {"key": "Enter", "optional": false, "selector": "#name", "type": "press"},
                {"optional": false, "toBottom": true, "type": "scroll"},
                {"ms": 100, "networkIdle": true, "optional": false, "type": "wait"},
            ],
            "outputs": [{"type": "json", "schema": {"state": {"selector": "#state"}}}]
        }),
    );
    let busy_optional = enqueue(
        c,
        &site.url("/busy"),
        json!({"actions": [{"type": "wait", "networkIdle": true, "timeout": 1000, "optional": true}]}),
    );
    let busy = enqueue(
        c,
        &site.url("/busy"),
        json!({"actions": [{"type": "wait", "networkIdle": true, "timeout": 1000}], "maxAttempts": 1}),
    );
    // session.storage in the SDK's shape: an origin's localStorage and sessionStorage maps.
    let origin = format!("http://127.0.0.1:{}", site.port());
    let stored = enqueue(
        c,
        &site.url("/session"),
        json!({"session": {
            "cookies": [{"name": "sid", "value": "abc123", "path": "/", "sameSite": "unspecified"}],
            "storage": [{"origin": origin, "localStorage": {"token": "t-local"}, "sessionStorage": {"token": "t-session"}}],
        }, "outputs": [{"type": "text"}]}),
    );
    let worker = WorkerProcess::start(&db.url, "sdk-options", &private());

    completed(c, &stealthy, &worker);
    let seen: Value = serde_json::from_slice(&bytes(c, &stealthy, Some("text"))).unwrap();
    assert_eq!((seen["webdriver"].clone(), seen["chrome"].clone()), (json!(false), json!(true)), "{seen}");
    for what in ["agent", "header", "brands"] {
        // The test site reads header lines lower-cased.
        let value = seen[what].as_str().unwrap().to_ascii_lowercase();
        assert!(!value.contains("headless") && value.contains("chrom"), "{what}: {seen}");
    }
    assert!(seen["plugins"].as_i64() > Some(0) && seen["languages"].as_i64() > Some(0), "{seen}");
    completed(c, &plain, &worker);
    let seen: Value = serde_json::from_slice(&bytes(c, &plain, Some("text"))).unwrap();
    assert!(
        seen["webdriver"] == json!(true) || seen["header"].as_str().unwrap().contains("headlesschrome"),
        "without stealthMode the page can tell: {seen}"
    );

    completed(c, &article, &worker);
    let mut output = |id: &str| String::from_utf8(bytes(c, &article, Some(id))).unwrap();
    let noise = ["About us", "BUY NOW", "Copyright 2026", "Other post"];
    for id in ["md", "main", "text"] {
        let out = output(id);
        assert!(out.contains("SKIP LOCKED lets many workers"), "{id}: {out}");
        assert!(noise.iter().all(|n| !out.contains(n)), "{id} kept navigation, ads or footer: {out}");
    }
    let whole = output("md-all");
    assert!(noise.iter().all(|n| whole.contains(n)), "without mainContentOnly everything stays: {whole}");
    let clean = output("clean");
    assert!(clean.contains("SKIP LOCKED") && clean.contains("Copyright 2026"), "{clean}");
    for markup in ["<script", "<style", "<!--", "onclick", "<meta"] {
        assert!(!clean.contains(markup), "clean html kept {markup}: {clean}");
    }
    assert!(output("main").contains("<p"), "main content is HTML");
    // PDF page sizes in points: Letter is 612 x 792, A4 (8.27 x 11.69 in) about 596 x 842.
    let mut media_box = |id: &str| {
        let pdf = bytes(c, &article, Some(id));
        let text = String::from_utf8_lossy(&pdf).to_string();
        let at = text.find("/MediaBox [").unwrap_or_else(|| panic!("{id}: no MediaBox"));
        text[at + 11..]
            .split(']')
            .next()
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse::<f64>().unwrap().round())
            .collect::<Vec<_>>()
    };
    assert_eq!(media_box("letter"), [0.0, 0.0, 612.0, 792.0]);
    assert_eq!(media_box("a4"), [0.0, 0.0, 596.0, 842.0]);

    completed(c, &extract, &worker);
    let extracted: Value = serde_json::from_slice(&bytes(c, &extract, Some("json"))).unwrap();
    assert_eq!(
        extracted["data"],
        json!({"title": "The title", "links": ["/a", "/b"], "price": 1234.5, "rich": "<b>bold</b> text", "none": null})
    );

    completed(c, &acted, &worker);
    let extracted: Value = serde_json::from_slice(&bytes(c, &acted, Some("json"))).unwrap();
    let state: Value = serde_json::from_str(extracted["data"]["state"].as_str().unwrap()).unwrap();
    assert_eq!(state["prefilled"], "new", "clear emptied the field first: {state}");
    assert_eq!((state["entered"].clone(), state["bottom"].clone()), (json!(true), json!(true)), "{state}");
    completed(c, &busy_optional, &worker);
    let job = finished(c, &busy, Duration::from_secs(30), &worker);
    assert_eq!((job["status"].as_str(), job["errorCode"].as_str()), (Some("FAILED"), Some("TIMEOUT")), "{job}");
    assert!(job["errorMessage"].as_str().unwrap().contains("actions[0]"), "{job}");

    completed(c, &stored, &worker);
    let seen: Value = serde_json::from_slice(&bytes(c, &stored, Some("text"))).unwrap();
    assert_eq!(seen, json!({"cookie": "sid=abc123", "token": "t-local", "session": "t-session"}));
}
