//! A page's HTML made into an output away from the async runtime, and bounded: its main content
//! (dom_smoothie, a port of Mozilla's Readability) and markdown (htmd).
//!
//! Both walk the parsed document recursively: a page that builds a DOM thousands of elements deep
//! would overflow a runtime thread's stack and abort the whole worker, with every job in it. The
//! page refuses documents nested deeper than [`MAX_DEPTH`] before they are sent (see
//! `render::Job::html`), and the work runs on its own thread with a stack sized for that depth,
//! under a time limit.

use std::time::Duration;

use pgshot_job::ErrorCode;

use crate::render::RenderError;

/// Deepest element nesting converted. Chromium's own HTML parser stops nesting at 512; only a
/// script builds deeper documents.
pub const MAX_DEPTH: usize = 512;
/// The conversion thread's stack: generous for [`MAX_DEPTH`] levels of recursion.
const STACK_BYTES: usize = 64 * 1024 * 1024;
/// Longest a conversion may take; a document that needs more fails DOCUMENT_TOO_LARGE.
pub const TIME_LIMIT: Duration = Duration::from_secs(20);

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

/// Converts `html` (of the page at `url`) on a thread of its own, within [`TIME_LIMIT`]. A
/// conversion that runs over is abandoned (its thread ends with the conversion, its result is
/// dropped).
pub async fn convert(html: String, url: String, conversion: Conversion) -> Result<String, RenderError> {
    convert_within(html, url, conversion, TIME_LIMIT).await
}

fn run(html: &str, url: &str, conversion: Conversion) -> Result<String, String> {
    let main = |html: &str| -> Result<(String, String), String> {
        let mut readability = dom_smoothie::Readability::new(html, Some(url), None).map_err(|e| e.to_string())?;
        let article = readability.parse().map_err(|e| format!("no main content found: {e}"))?;
        Ok((article.content.to_string(), article.text_content.to_string()))
    };
    match conversion {
        Conversion::MainContent => main(html).map(|(content, _)| content),
        Conversion::MainText => main(html).map(|(_, text)| text.trim().to_string()),
        Conversion::Markdown => htmd::convert(html).map_err(|e| e.to_string()),
        Conversion::MainMarkdown => htmd::convert(&main(html)?.0).map_err(|e| e.to_string()),
    }
}

async fn convert_within(
    html: String,
    url: String,
    conversion: Conversion,
    limit: Duration,
) -> Result<String, RenderError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("document".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let _ = tx.send(run(&html, &url, conversion));
        })
        .map_err(|e| RenderError::new(ErrorCode::InternalError, format!("cannot start the conversion thread: {e}")))?;
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(Ok(output))) => Ok(output),
        Ok(Ok(Err(e))) => {
            Err(RenderError::new(ErrorCode::RenderFailed, format!("{conversion:?} conversion failed: {e}")))
        }
        Ok(Err(_)) => Err(RenderError::new(ErrorCode::InternalError, "the document conversion panicked")),
        Err(_) => Err(RenderError::new(
            ErrorCode::DocumentTooLarge,
            format!("the {conversion:?} conversion took longer than {} s", limit.as_secs()),
        )),
    }
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

    #[tokio::test]
    async fn main_content_keeps_the_article_and_drops_navigation_ads_and_footer() {
        for conversion in [Conversion::MainContent, Conversion::MainText, Conversion::MainMarkdown] {
            let out = convert(blog_page(), URL.into(), conversion).await.unwrap();
            assert!(out.contains("SKIP LOCKED lets many workers"), "{conversion:?}: {out}");
            for noise in ["About", "BUY NOW", "Copyright 2026", "Other post"] {
                assert!(!out.contains(noise), "{conversion:?} kept {noise:?}: {out}");
            }
        }
        let whole = convert(blog_page(), URL.into(), Conversion::Markdown).await.unwrap();
        assert!(whole.contains("Copyright 2026") && whole.contains("BUY NOW"), "{whole}");
    }

    fn nested(depth: usize) -> String {
        format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth))
    }

    #[tokio::test]
    async fn converts_on_its_own_thread() {
        let md = convert("<h1>Title</h1><p>Some <b>bold</b> text.</p>".into(), URL.into(), Conversion::Markdown)
            .await
            .unwrap();
        assert_eq!(md, "# Title\n\nSome **bold** text.");
    }

    #[tokio::test]
    async fn a_document_as_deep_as_the_limit_converts_without_overflowing() {
        // On a default 2 MiB thread this depth is where recursion gets dangerous; here it is fine.
        let md = convert(nested(MAX_DEPTH), URL.into(), Conversion::Markdown).await.unwrap();
        assert_eq!(md.trim(), "deep");
    }

    #[tokio::test]
    async fn a_conversion_over_its_time_limit_fails_with_its_own_code() {
        let big: String = (0..200_000).map(|i| format!("<p>paragraph {i}</p>")).collect();
        let e = convert_within(big, URL.into(), Conversion::Markdown, Duration::from_millis(1)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DocumentTooLarge);
    }
}
