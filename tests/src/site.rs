//! Web pages served by the tests on 127.0.0.1, each built to make one rendering behaviour visible
//! in the pixels, bytes or text of the result.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Site {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Site {
    pub fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test site");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream, port));
            }
        });
        Site { port, connections }
    }

    /// How many connections reached the site: none, for a destination that must stay unreached.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const RED_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><rect width="200" height="200" fill="#ff0000"/></svg>"##;

/// The colour of stripe `i` of `/fixed`: distinct from each other, from red and from white.
pub fn stripe_rgb(i: u8) -> [u8; 3] {
    [0, 25 * i, 255 - 25 * i]
}

fn page(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title>\
         <style>html,body{{margin:0;padding:0;background:#ffffff}}</style>{head}</head><body>{body}</body></html>"
    )
}

/// Reads one HTTP request's head from `stream`: its target (path and query) and its header lines,
/// lower-cased. None when the client went away first.
pub fn read_request(stream: &TcpStream) -> Option<(String, String)> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut request_headers = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => request_headers.push_str(&line.to_ascii_lowercase()),
        }
    }
    Some((request_line.split_whitespace().nth(1).unwrap_or("/").to_string(), request_headers))
}

fn serve(mut stream: TcpStream, port: u16) {
    let Some((target, request_headers)) = read_request(&stream) else { return };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
    };
    let html = "text/html; charset=utf-8";
    let (status, content_type, body, extra): (&str, &str, String, String) = match path {
        "/plain" => (
            "200 OK",
            html,
            page("Plain page", "", "<h1>Hello pgshot</h1><p>Read <a href=\"https://example.com/docs\">the docs</a> first.</p>"),
            String::new(),
        ),
        // A page the test changes between two visits: the HTML in the file named by `file`.
        "/from-file" => {
            let body = param("file").and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
            ("200 OK", html, page("Changing page", "", &body), String::new())
        }
        "/tall" => ("200 OK", html, page("Tall", "", "<div style=\"height:3000px;background:#eeeeff\"></div>"), String::new()),
        "/lazy" => (
            "200 OK",
            html,
            page(
                "Lazy",
                "",
                "<div style=\"position:relative;height:3000px\">\
                 <img loading=\"lazy\" src=\"/red.svg\" width=\"200\" height=\"200\" style=\"position:absolute;top:2600px;left:0\"></div>",
            ),
            String::new(),
        ),
        // Six images from this site, for the benchmarks' page with images.
        "/gallery" => {
            let images: String = (0..6)
                .map(|i| format!("<img src=\"/red.svg?i={i}\" width=\"300\" height=\"300\" style=\"margin:8px\">"))
                .collect();
            ("200 OK", html, page("Gallery", "", &format!("<h1>Gallery</h1>{images}")), String::new())
        }
        "/red.svg" => ("200 OK", "image/svg+xml", RED_SVG.to_string(), String::new()),
        "/box" => (
            "200 OK",
            html,
            page("Box", "", "<div id=\"box\" style=\"position:absolute;left:50px;top:40px;width:321px;height:123px;background:#00ff00\"></div>"),
            String::new(),
        ),
        "/late" => (
            "200 OK",
            html,
            page(
                "Late",
                "",
                "<script>setTimeout(() => { const d = document.createElement('div'); d.id = 'late'; \
                 d.style.cssText = 'width:100px;height:100px;background:#00ff00'; document.body.appendChild(d); }, 1500)</script>",
            ),
            String::new(),
        ),
        "/dark" => (
            "200 OK",
            html,
            page("Dark", "<style>@media (prefers-color-scheme: dark) { html, body { background: #000000 } }</style>", "<p>x</p>"),
            String::new(),
        ),
        "/banner" => (
            "200 OK",
            html,
            page("Banner", "", "<p>content</p><div id=\"onetrust-banner-sdk\" style=\"position:fixed;left:0;top:0;width:100%;height:100%;background:#ff0000\">We use cookies</div>"),
            String::new(),
        ),
        // Red when it finds a cookie or a localStorage entry set by an earlier render, green otherwise.
        "/memory" => (
            "200 OK",
            html,
            page(
                "Memory",
                "",
                "<script>const seen = document.cookie.includes('seen=1') || localStorage.getItem('seen') === '1'; \
                 document.documentElement.style.background = seen ? '#ff0000' : '#00ff00'; \
                 document.body.style.background = seen ? '#ff0000' : '#00ff00'; \
                 document.cookie = 'seen=1; max-age=3600; path=/'; localStorage.setItem('seen', '1');</script>",
            ),
            String::new(),
        ),
        "/session" => (
            "200 OK",
            html,
            page(
                "Session",
                "",
                "<pre id=out></pre><script>document.getElementById('out').textContent = \
                 JSON.stringify({cookie: document.cookie, token: localStorage.getItem('token'), \
                 session: sessionStorage.getItem('token')});</script>",
            ),
            String::new(),
        ),
        "/echo-headers" => ("200 OK", html, page("Headers", "", &format!("<pre>{request_headers}</pre>")), String::new()),
        // Each action leaves its mark in #state, which a json output reads back.
        "/actions" => (
            "200 OK",
            html,
            page(
                "Actions",
                "",
                "<input id=name><input id=prefilled value=old><select id=pick><option value=a>A</option><option value=b>B</option></select>\
                 <button id=go>Go</button><div id=hoverme style=\"width:100px;height:100px\"></div>\
                 <div style=\"height:3000px\"></div><pre id=state></pre>\
                 <script>const marks = {}; const show = () => document.getElementById('state').textContent = \
                 JSON.stringify(marks); \
                 document.getElementById('go').onclick = () => { marks.clicked = true; show(); }; \
                 document.getElementById('hoverme').onmouseover = () => { marks.hovered = true; show(); }; \
                 document.getElementById('name').oninput = e => { marks.name = e.target.value; show(); }; \
                 document.getElementById('prefilled').oninput = e => { marks.prefilled = e.target.value; show(); }; \
                 document.getElementById('name').onkeydown = e => { if (e.key === 'Enter') { marks.entered = true; show(); } }; \
                 document.getElementById('pick').onchange = e => { marks.picked = e.target.value; show(); }; \
                 addEventListener('scroll', () => { marks.scrolled = scrollY > 0; \
                   marks.bottom = innerHeight + scrollY >= document.documentElement.scrollHeight - 2; show(); }); \
                 show();</script>",
            ),
            String::new(),
        ),
        // A red fixed header 40 px high over ten 300 px stripes, each its own colour (stripe_rgb).
        "/fixed" => (
            "200 OK",
            html,
            page(
                "Fixed",
                "<style>#bar{position:fixed;top:0;left:0;right:0;height:40px;background:#ff0000;z-index:9}\
                 .s{height:300px}</style>",
                &format!(
                    "<div id=bar></div>{}",
                    (0..10)
                        .map(|i| {
                            let [r, g, b] = stripe_rgb(i);
                            format!("<div class=s style=\"background:rgb({r},{g},{b})\"></div>")
                        })
                        .collect::<String>()
                ),
            ),
            String::new(),
        ),
        // What a page sees that tells a headless browser, and the User-Agent header it was sent.
        "/detect" => {
            let ua = request_headers.lines().find_map(|l| l.strip_prefix("user-agent: ")).unwrap_or("").trim().to_string();
            (
                "200 OK",
                html,
                page(
                    "Detect",
                    "",
                    &format!(
                        "<pre id=out></pre><script>const ua = {ua:?}; \
                         const brands = navigator.userAgentData ? navigator.userAgentData.brands.map(b => b.brand).join(',') : ''; \
                         document.getElementById('out').textContent = JSON.stringify({{webdriver: navigator.webdriver, \
                         agent: navigator.userAgent, header: ua, brands, plugins: navigator.plugins.length, \
                         languages: navigator.languages.length, chrome: typeof window.chrome === 'object'}});</script>"
                    ),
                ),
                String::new(),
            )
        }
        // A blog post as served: navigation, an ad, the article, a sidebar, a footer, and markup
        // that is not content (a script, a style, a comment, a handler).
        "/article" => {
            let para = "Postgres can be a queue: SKIP LOCKED lets many workers claim rows without waiting \
                        for each other, and a transaction makes the enqueue atomic with the rest of the work.";
            (
                "200 OK",
                html,
                page(
                    "Queues in Postgres",
                    "<style>.ad{color:red}</style>",
                    &format!(
                        "<nav><a href=/>Home</a> <a href=/about>About us</a> <a href=/blog>Blog</a></nav>\
                         <div class='ad sponsor'>BUY NOW: fifty percent off</div><!-- tracking pixel below -->\
                         <article><h1>Queues in Postgres</h1><p onclick=\"alert(1)\">{para}</p><p>{para}</p>\
                         <p>{para}</p><script>window.analytics = true;</script></article>\
                         <aside class=sidebar><h3>Related</h3><a href=/x>Other post</a></aside>\
                         <footer>Copyright 2026 Example Inc. All rights reserved.</footer>"
                    ),
                ),
                String::new(),
            )
        }
        "/extract" => (
            "200 OK",
            html,
            page(
                "Extract",
                "",
                "<h1> The title </h1><a class=l href=/a>First</a><a class=l href=/b>Second</a>\
                 <span id=price>Price: $1,234.50</span><div id=rich><b>bold</b> text</div>",
            ),
            String::new(),
        ),
        // Starts a request every 100 ms, each answered after 2 s: the network is never idle, even
        // when a loaded machine delays the timer.
        "/busy" => (
            "200 OK",
            html,
            page("Busy", "", "<script>setInterval(() => fetch('/slow?ms=2000&' + Math.random()), 100);</script>"),
            String::new(),
        ),
        "/slow" => {
            let ms: u64 = param("ms").and_then(|v| v.parse().ok()).unwrap_or(5000);
            std::thread::sleep(Duration::from_millis(ms));
            ("200 OK", html, page("Slow", "", "<h1>Finally</h1>"), String::new())
        }
        "/hang" => {
            // Accept, read the request, never answer.
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        "/redirect" => {
            let to = param("to").unwrap_or_else(|| format!("http://127.0.0.1:{port}/plain"));
            ("302 Found", html, String::new(), format!("Location: {to}\r\n"))
        }
        // A chain of `n` redirects on this site that ends on 127.0.0.1:`port`.
        "/hop" => {
            let n: u32 = param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            let to = param("port").unwrap_or_default();
            let next = if n == 0 {
                format!("http://127.0.0.1:{to}/red-page")
            } else {
                format!("http://127.0.0.1:{port}/hop?n={}&port={to}", n - 1)
            };
            ("302 Found", html, String::new(), format!("Location: {next}\r\n"))
        }
        "/red-page" => ("200 OK", html, page("Red", "<style>html,body{background:#ff0000 !important}</style>", ""), String::new()),
        "/frame-from" => {
            let from = param("port").unwrap_or_default();
            (
                "200 OK",
                html,
                page(
                    "Frame from elsewhere",
                    "",
                    &format!("<iframe src=\"http://127.0.0.1:{from}/red-page\" width=\"200\" height=\"200\" style=\"display:block;border:0\"></iframe>"),
                ),
                String::new(),
            )
        }
        "/image-from" => {
            let from = param("port").unwrap_or_default();
            (
                "200 OK",
                html,
                page(
                    "Image from elsewhere",
                    "",
                    &format!("<img src=\"http://127.0.0.1:{from}/red.svg\" width=\"200\" height=\"200\" style=\"display:block\">"),
                ),
                String::new(),
            )
        }
        // A page like most saved real pages here: its content is in the HTML, and an image from a
        // host that never answers keeps its load event from ever firing.
        "/stalled-image" => (
            "200 OK",
            html,
            page("Stalled image", "", "<h1>Content first</h1><img src=\"/hang\" width=\"10\" height=\"10\">"),
            String::new(),
        ),
        // Pages that misbehave, each rendered beside normal jobs that must not notice.
        // A script that never yields, started once the page has loaded.
        "/hostile/loop" => (
            "200 OK",
            html,
            page(
                "Loop",
                "",
                "<h1>Looping</h1><script>addEventListener('load', () => setTimeout(() => { for (;;) {} }, 0));</script>",
            ),
            String::new(),
        ),
        // Eats memory until its renderer dies.
        "/hostile/oom" => (
            "200 OK",
            html,
            page(
                "Out of memory",
                "",
                "<h1>Eating</h1><script>addEventListener('load', () => { const hoard = []; \
                 for (;;) hoard.push(new Array(8 * 1024 * 1024).fill(hoard.length + 0.5)); });</script>",
            ),
            String::new(),
        ),
        // alert, confirm and prompt while parsing, another alert after load, and a beforeunload
        // handler that asks to stay.
        "/hostile/dialogs" => (
            "200 OK",
            html,
            page(
                "Dialogs",
                "<script>alert('first'); const sure = confirm('sure?'); const name = prompt('name?', 'x'); \
                 addEventListener('beforeunload', e => { e.preventDefault(); e.returnValue = 'stay'; }); \
                 addEventListener('load', () => setTimeout(() => alert('again'), 0));</script>",
                "<h1>After the dialogs</h1>",
            ),
            String::new(),
        ),
        // Opens windows in a loop, at once and on a timer.
        "/hostile/popups" => (
            "200 OK",
            html,
            page(
                "Popups",
                "",
                "<h1>Popups</h1><script>for (let i = 0; i < 50; i++) window.open('/plain?popup=' + i, '_blank'); \
                 setInterval(() => window.open('/plain?popup=timer', '_blank'), 20);</script>",
            ),
            String::new(),
        ),
        // Starts downloads: a link with `download` clicked by script, and a frame whose answer is an
        // attachment.
        "/hostile/downloads" => (
            "200 OK",
            html,
            page(
                "Downloads",
                "",
                "<h1>Downloads</h1><a id=dl href=\"/hostile/attachment?via=link\" download=\"pgshot-download-link.bin\">x</a>\
                 <iframe src=\"/hostile/attachment?via=frame\" width=10 height=10></iframe>\
                 <script>document.getElementById('dl').click();</script>",
            ),
            String::new(),
        ),
        "/hostile/attachment" => (
            "200 OK",
            "application/octet-stream",
            "pgshot download payload".to_string(),
            "Content-Disposition: attachment; filename=\"pgshot-download-attachment.bin\"\r\n".to_string(),
        ),
        // A document built by script 5,000 elements deep (the HTML parser alone stops at 512).
        "/hostile/deep" => (
            "200 OK",
            html,
            page(
                "Deep",
                "",
                "<script>let n = document.body; for (let i = 0; i < 5000; i++) { const d = document.createElement('div'); \
                 n.appendChild(d); n = d; } n.textContent = 'bottom';</script>",
            ),
            String::new(),
        ),
        // The same depth out of the layout's way: Chromium keeps it, and it reaches the outputs.
        "/hostile/deep-hidden" => (
            "200 OK",
            html,
            page(
                "Deep and hidden",
                "",
                "<p>visible</p><div id=root style=\"display:none\"></div><script>let n = document.getElementById('root'); \
                 for (let i = 0; i < 5000; i++) { const d = document.createElement('div'); n.appendChild(d); n = d; } \
                 n.textContent = 'bottom';</script>",
            ),
            String::new(),
        ),
        // 100,000 levels, out of the layout's way, and getters redefined so that a depth or size
        // check run in the page's own JavaScript passes: firstElementChild finds no child, and
        // outerHTML is measured as short. Converted, that depth overflows any stack.
        "/hostile/deep-lying" => (
            "200 OK",
            html,
            page(
                "Deep and lying",
                "",
                "<p>visible</p><div id=root style=\"display:none\"></div><script>let n = document.getElementById('root'); \
                 for (let i = 0; i < 100000; i++) { const d = document.createElement('div'); n.appendChild(d); n = d; } \
                 n.textContent = 'bottom'; \
                 Object.defineProperty(Element.prototype, 'firstElementChild', {get() { return null; }}); \
                 const real = Object.getOwnPropertyDescriptor(Element.prototype, 'outerHTML').get; \
                 Object.defineProperty(Element.prototype, 'outerHTML', {get() { const s = new String(real.call(this)); \
                   Object.defineProperty(s, 'length', {value: 10}); return s; }});</script>",
            ),
            String::new(),
        ),
        // A title of five million characters.
        "/hostile/huge-title" => (
            "200 OK",
            html,
            page("placeholder", "", "<p>titled</p><script>document.title = 'T'.repeat(5000000);</script>"),
            String::new(),
        ),
        // Three million characters of text in a heading, behind getters that say it is short.
        "/hostile/huge-text" => (
            "200 OK",
            html,
            page(
                "Huge text",
                "",
                "<h1 id=h></h1><script>document.getElementById('h').textContent = 'word '.repeat(600000); \
                 Object.defineProperty(HTMLElement.prototype, 'innerText', {get() { return 'short'; }}); \
                 Object.defineProperty(Node.prototype, 'textContent', {get() { return 'short'; }}); \
                 JSON.stringify = () => '{}';</script>",
            ),
            String::new(),
        ),
        // 100,000 paragraphs.
        "/hostile/wide" => (
            "200 OK",
            html,
            page(
                "Wide",
                "",
                "<script>const f = document.createDocumentFragment(); for (let i = 0; i < 100000; i++) { \
                 const p = document.createElement('p'); p.textContent = 'row ' + i; f.appendChild(p); } \
                 document.body.appendChild(f);</script>",
            ),
            String::new(),
        ),
        // A title that is markup once unescaped: whatever shows it must show it as text.
        "/hostile/title" => (
            "200 OK",
            html,
            page(
                "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;&lt;script&gt;window.__pwned=2&lt;/script&gt;",
                "",
                "<h1>A page with a hostile title</h1>",
            ),
            String::new(),
        ),
        _ => ("404 Not Found", "text/plain", "not found".to_string(), String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}
