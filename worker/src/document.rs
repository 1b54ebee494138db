//! A page's HTML made into an output in a process of its own, and bounded: its main content
//! (dom_smoothie, a port of Mozilla's Readability) and markdown (htmd).
//!
//! Both walk the parsed document recursively: a document nested thousands of elements deep
//! overflows any stack, and in the worker's process that aborts the whole worker, with every job
//! in it. So the HTML is measured here first, without recursion, and refused when nested deeper
//! than [`MAX_DEPTH`] (the page measures it too, in a world of the worker's own, before sending it:
//! see `render::Job::html`); and the conversion runs in a child process (this same binary, run
//! as `pgshot-worker convert-document`), killed when it runs over [`TIME_LIMIT`]. Whatever a
//! document does to the converters (a stack overflow, a conversion that never ends), it ends that
//! process and fails that job with DOCUMENT_TOO_LARGE, not the worker.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pgshot_job::ErrorCode;
use tokio::io::AsyncWriteExt;

use crate::render::RenderError;

/// Deepest element nesting converted. Chromium's own HTML parser stops nesting at 512; only a
/// script builds deeper documents.
pub const MAX_DEPTH: usize = 512;
/// The conversion thread's stack (in the child): generous for [`MAX_DEPTH`] levels of recursion.
const STACK_BYTES: usize = 64 * 1024 * 1024;
/// Longest a conversion may take; a document that needs more fails DOCUMENT_TOO_LARGE.
pub const TIME_LIMIT: Duration = Duration::from_secs(20);
/// The first argument that makes `pgshot-worker` a converter (see `main`).
pub const CHILD_ARGUMENT: &str = "convert-document";
/// The child's exit codes: the document is refused (too deep), or the conversion failed.
const EXIT_REFUSED: i32 = 10;
const EXIT_FAILED: i32 = 11;

/// What is made of the HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The main content's HTML.
    MainContent,
    /// The main content's text.
    MainText,
    Markdown,
    /// The main content as markdown.
    MainMarkdown,
}

impl Conversion {
    fn as_arg(self) -> &'static str {
        match self {
            Conversion::MainContent => "main-content",
            Conversion::MainText => "main-text",
            Conversion::Markdown => "markdown",
            Conversion::MainMarkdown => "main-markdown",
        }
    }

    fn from_arg(arg: &str) -> Option<Conversion> {
        [Conversion::MainContent, Conversion::MainText, Conversion::Markdown, Conversion::MainMarkdown]
            .into_iter()
            .find(|c| c.as_arg() == arg)
    }
}

/// Converts `html` (of the page at `url`) in a child process of this binary, within
/// [`TIME_LIMIT`].
pub async fn convert(html: String, url: String, conversion: Conversion) -> Result<String, RenderError> {
    // The running binary itself, even if the file was replaced since it started.
    convert_with(Path::new("/proc/self/exe"), html, url, conversion, TIME_LIMIT).await
}

/// As [`convert`], with `program` as the converter: one that a run with [`CHILD_ARGUMENT`] makes
/// run [`child_main`].
pub async fn convert_with(
    program: &Path,
    html: String,
    url: String,
    conversion: Conversion,
    limit: Duration,
) -> Result<String, RenderError> {
    let mut child = tokio::process::Command::new(program)
        .args([CHILD_ARGUMENT, conversion.as_arg(), &url])
        // It needs nothing of the worker's environment (the database URL, storage credentials).
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RenderError::new(ErrorCode::InternalError, format!("cannot start the document converter: {e}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // The child reads all of its input before it writes anything, so one write then one read
    // cannot both wait.
    let feed = async move {
        let _ = stdin.write_all(html.as_bytes()).await;
    };
    let run = async {
        feed.await;
        child.wait_with_output().await
    };
    // Dropped on the time limit, the child is killed (kill_on_drop) and reaped by tokio.
    let output = match tokio::time::timeout(limit, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(RenderError::new(ErrorCode::InternalError, format!("the document converter failed: {e}")))
        }
        Err(_) => {
            return Err(RenderError::new(
                ErrorCode::DocumentTooLarge,
                format!("the {conversion:?} conversion took longer than {} s", limit.as_secs()),
            ))
        }
    };
    let said = || String::from_utf8_lossy(&output.stderr).trim().chars().take(500).collect::<String>();
    match output.status.code() {
        Some(0) => String::from_utf8(output.stdout)
            .map_err(|_| RenderError::new(ErrorCode::InternalError, "the document converter wrote invalid UTF-8")),
        Some(EXIT_REFUSED) => Err(RenderError::new(ErrorCode::DocumentTooLarge, said())),
        Some(EXIT_FAILED) => {
            Err(RenderError::new(ErrorCode::RenderFailed, format!("{conversion:?} conversion failed: {}", said())))
        }
        // Killed by a signal (a stack overflow aborts) or ended otherwise: the document did it.
        _ => Err(RenderError::new(
            ErrorCode::DocumentTooLarge,
            format!("the {conversion:?} conversion of this document crashed ({})", output.status),
        )),
    }
}

/// `pgshot-worker convert-document KIND URL`: reads HTML on standard input, writes the
/// conversion on standard output. Exits [`EXIT_REFUSED`] for a document nested too deep and
/// [`EXIT_FAILED`] for a conversion that failed, with the reason on standard error.
pub fn child_main(args: &[String]) -> std::process::ExitCode {
    let (Some(conversion), Some(url)) = (args.first().and_then(|a| Conversion::from_arg(a)), args.get(1)) else {
        eprintln!("usage: pgshot-worker {CHILD_ARGUMENT} main-content|main-text|markdown|main-markdown URL");
        return std::process::ExitCode::from(2);
    };
    let mut html = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut html) {
        eprintln!("cannot read the document: {e}");
        return std::process::ExitCode::from(EXIT_FAILED as u8);
    }
    let url = url.clone();
    let worker = std::thread::Builder::new()
        .name("document".into())
        .stack_size(STACK_BYTES)
        .spawn(move || run(&html, &url, conversion));
    let result = match worker.map(|t| t.join()) {
        Ok(Ok(result)) => result,
        _ => Err(Refusal::Failed("the conversion panicked".into())),
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).is_err() {
                return std::process::ExitCode::from(EXIT_FAILED as u8);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(Refusal::TooDeep(why)) => {
            eprintln!("{why}");
            std::process::ExitCode::from(EXIT_REFUSED as u8)
        }
        Err(Refusal::Failed(why)) => {
            eprintln!("{why}");
            std::process::ExitCode::from(EXIT_FAILED as u8)
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Refusal {
    TooDeep(String),
    Failed(String),
}

/// The conversion itself, after the depth check (in the child).
pub fn run(html: &str, url: &str, conversion: Conversion) -> Result<String, Refusal> {
    let depth = nesting_depth(html);
    if depth > MAX_DEPTH {
        return Err(Refusal::TooDeep(format!(
            "the document is nested more than {MAX_DEPTH} elements deep (at least {depth})"
        )));
    }
    let main = |html: &str| -> Result<(String, String), Refusal> {
        let mut readability =
            dom_smoothie::Readability::new(html, Some(url), None).map_err(|e| Refusal::Failed(e.to_string()))?;
        let article = readability.parse().map_err(|e| Refusal::Failed(format!("no main content found: {e}")))?;
        Ok((article.content.to_string(), article.text_content.to_string()))
    };
    let markdown = |html: &str| htmd::convert(html).map_err(|e| Refusal::Failed(e.to_string()));
    match conversion {
        Conversion::MainContent => main(html).map(|(content, _)| content),
        Conversion::MainText => main(html).map(|(_, text)| text.trim().to_string()),
        Conversion::Markdown => markdown(html),
        Conversion::MainMarkdown => markdown(&main(html)?.0),
    }
}

/// Elements that have no end tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
    "keygen", "basefont", "bgsound", "frame",
];
/// Elements whose content is text up to their own end tag, never markup.
const RAW_TEXT: &[&str] =
    &["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"];
/// Elements whose end tag HTML lets a document leave out (and Chromium's serialisation never
/// does): not counted, so that a hand-written document of unclosed paragraphs or list items
/// is not taken for a deep one. Their children are counted.
const OPTIONAL_END: &[&str] =
    &["p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "rb", "rt", "rp"];

/// How deep elements nest in `html`, read in one pass without recursion: each start tag of an
/// element with an end tag opens a level, its end tag closes one. Comments, the text of raw-text
/// elements (scripts, styles) and quoted attribute values are skipped. Meant for what Chromium
/// serialises (every end tag written); on other HTML it may count deeper than a parser would
/// nest, never less for what it counts.
pub fn nesting_depth(html: &str) -> usize {
    let b = html.as_bytes();
    let (mut i, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    let find = |from: usize, needle: &[u8]| -> Option<usize> {
        b.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|p| p + from)
    };
    while let Some(lt) = b.get(i..).and_then(|rest| rest.iter().position(|c| *c == b'<')).map(|p| p + i) {
        i = lt + 1;
        if b[i..].starts_with(b"!--") {
            i = find(i + 3, b"-->").map_or(b.len(), |e| e + 3);
            continue;
        }
        let closing = b.get(i) == Some(&b'/');
        let name_start = if closing { i + 1 } else { i };
        let name_len = b[name_start..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'-').count();
        if name_len == 0 || !b[name_start].is_ascii_alphabetic() {
            // `<!doctype`, `<?`, or a `<` in text.
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        // The tag's end, past quoted attribute values.
        let mut j = name_start + name_len;
        let mut quote = None;
        while j < b.len() {
            match (quote, b[j]) {
                (None, b'"' | b'\'') => quote = Some(b[j]),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        let self_closing = j > 0 && b.get(j - 1) == Some(&b'/');
        i = (j + 1).min(b.len());
        if closing {
            if !VOID.contains(&name.as_str()) && !OPTIONAL_END.contains(&name.as_str()) {
                depth = depth.saturating_sub(1);
            }
            continue;
        }
        if VOID.contains(&name.as_str()) || self_closing || OPTIONAL_END.contains(&name.as_str()) {
            continue;
        }
        depth += 1;
        deepest = deepest.max(depth);
        if RAW_TEXT.contains(&name.as_str()) {
            // Its text runs to its end tag, which closes it.
            let end = format!("</{name}");
            i = find(i, end.as_bytes()).map_or(b.len(), |e| e);
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/post";

    /// A page as a blog serves it: navigation, an ad, the article, a sidebar and a footer.
    fn blog_page() -> String {
        let para = "Postgres can be a queue: SKIP LOCKED lets many workers claim rows without waiting for each other, and a transaction makes the enqueue atomic with the rest of the work.";
        format!(
            "<html><head><title>Queues in Postgres</title></head><body>\
             <nav><a href='/'>Home</a> <a href='/about'>About</a> <a href='/blog'>Blog</a></nav>\
             <div class='ad sponsor'>BUY NOW: fifty percent off</div>\
             <article><h1>Queues in Postgres</h1><p>{para}</p><p>{para}</p><p>{para}</p></article>\
             <aside class='sidebar'><h3>Related</h3><a href='/x'>Other post</a></aside>\
             <footer>Copyright 2026 Example Inc. All rights reserved.</footer></body></html>"
        )
    }

    #[test]
    fn main_content_keeps_the_article_and_drops_navigation_ads_and_footer() {
        for conversion in [Conversion::MainContent, Conversion::MainText, Conversion::MainMarkdown] {
            let out = run(&blog_page(), URL, conversion).unwrap();
            assert!(out.contains("SKIP LOCKED lets many workers"), "{conversion:?}: {out}");
            for noise in ["About", "BUY NOW", "Copyright 2026", "Other post"] {
                assert!(!out.contains(noise), "{conversion:?} kept {noise:?}: {out}");
            }
        }
        let whole = run(&blog_page(), URL, Conversion::Markdown).unwrap();
        assert!(whole.contains("Copyright 2026") && whole.contains("BUY NOW"), "{whole}");
    }

    fn nested(depth: usize) -> String {
        format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth))
    }

    #[test]
    fn converts_markdown() {
        let md = run("<h1>Title</h1><p>Some <b>bold</b> text.</p>", URL, Conversion::Markdown).unwrap();
        assert_eq!(md, "# Title\n\nSome **bold** text.");
    }

    #[test]
    fn a_document_as_deep_as_the_limit_converts_on_the_childs_stack() {
        let out = std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(|| run(&nested(MAX_DEPTH), URL, Conversion::Markdown))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(out.trim(), "deep");
    }

    #[test]
    fn a_document_deeper_than_the_limit_is_refused_before_any_recursion() {
        // On a 2 MiB test thread: converting this deep would overflow it and abort the tests.
        for depth in [MAX_DEPTH + 1, 100_000] {
            for conversion in [Conversion::Markdown, Conversion::MainMarkdown, Conversion::MainText] {
                match run(&nested(depth), URL, conversion) {
                    Err(Refusal::TooDeep(why)) => assert!(why.contains("512"), "{why}"),
                    other => panic!("{depth} deep, {conversion:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn depth_counts_what_chromium_serialises_and_skips_what_is_not_markup() {
        assert_eq!(nesting_depth("<html><head></head><body><div><p>a</p></div></body></html>"), 3);
        assert_eq!(nesting_depth(&nested(700)), 700);
        // Void elements, self-closed ones, comments, attribute values, script and style text.
        assert_eq!(nesting_depth("<div><br><img src=x><hr/><input value=\"<div><div>\"></div>"), 1);
        assert_eq!(nesting_depth("<div><!-- <div><div><div> --></div>"), 1);
        assert_eq!(
            nesting_depth(
                "<div><script>for (let i = 0; i < 9; i++) '<div>'.repeat(i)</script><style>a<b{}</style></div>"
            ),
            2
        );
        assert_eq!(nesting_depth("<div title='a > b'><span>x</span></div>"), 2);
        // Unclosed paragraphs and list items do not add up.
        assert_eq!(nesting_depth(&"<p>text".repeat(10_000)), 0);
        assert_eq!(nesting_depth(&format!("<ul>{}</ul>", "<li>item".repeat(10_000))), 1);
        // Text with a `<` in it, and a doctype.
        assert_eq!(nesting_depth("<!doctype html><div>1 < 2 and 3 <4</div>"), 1);
    }

    /// A stand-in converter: a shell script that ignores its arguments and runs `body`.
    fn stand_in(body: &str) -> (std::path::PathBuf, String) {
        let marker = format!("pgshot-convert-test-{}-{}", std::process::id(), pgshot_job::new_job_id());
        let path = std::env::temp_dir().join(&marker);
        std::fs::write(&path, format!("#!/bin/sh\n# {marker}\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        (path, marker)
    }

    fn running(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
    }

    #[tokio::test]
    async fn a_conversion_over_its_time_limit_is_killed_and_fails_with_its_own_code() {
        let (path, marker) = stand_in("cat > /dev/null; exec sleep 30");
        let e = convert_with(&path, "<p>x</p>".into(), URL.into(), Conversion::Markdown, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::DocumentTooLarge, "{e:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(&marker) {
            assert!(std::time::Instant::now() < deadline, "the converter outlived its time limit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_converter_that_crashes_fails_its_job_and_only_its_job() {
        let (path, _) = stand_in("cat > /dev/null; kill -ABRT $$");
        let e = convert_with(&path, "<p>x</p>".into(), URL.into(), Conversion::Markdown, TIME_LIMIT).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DocumentTooLarge, "{e:?}");
        assert!(e.message.contains("crashed"), "{e:?}");
        let (path2, _) = stand_in("cat > /dev/null; echo 'no main content found' >&2; exit 11");
        let e =
            convert_with(&path2, "<p>x</p>".into(), URL.into(), Conversion::MainText, TIME_LIMIT).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::RenderFailed, "{e:?}");
        let (path3, _) = stand_in("cat; exit 0");
        let out = convert_with(&path3, "echoed".into(), URL.into(), Conversion::Markdown, TIME_LIMIT).await.unwrap();
        assert_eq!(out, "echoed");
        for p in [path, path2, path3] {
            let _ = std::fs::remove_file(p);
        }
    }
}
