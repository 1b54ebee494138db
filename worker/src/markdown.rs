//! HTML to markdown (htmd), kept away from the async runtime and bounded.
//!
//! htmd walks the parsed document recursively: a page that builds a DOM thousands of elements
//! deep would overflow a runtime thread's stack and abort the whole worker, with every job in it.
//! The page refuses documents nested deeper than [`MAX_DEPTH`] before they are sent (see
//! `render::Job::html`), and the conversion runs on its own thread with a stack sized for that
//! depth, under a time limit.

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

/// Converts `html` to markdown on a thread of its own, within [`TIME_LIMIT`]. A conversion that
/// runs over is abandoned (its thread ends with the conversion, its result is dropped).
pub async fn convert(html: String) -> Result<String, RenderError> {
    convert_within(html, TIME_LIMIT).await
}

async fn convert_within(html: String, limit: Duration) -> Result<String, RenderError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("markdown".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let _ = tx.send(htmd::convert(&html));
        })
        .map_err(|e| RenderError::new(ErrorCode::InternalError, format!("cannot start the markdown thread: {e}")))?;
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(Ok(markdown))) => Ok(markdown),
        Ok(Ok(Err(e))) => Err(RenderError::new(ErrorCode::RenderFailed, format!("markdown conversion failed: {e}"))),
        Ok(Err(_)) => Err(RenderError::new(ErrorCode::InternalError, "the markdown conversion panicked")),
        Err(_) => Err(RenderError::new(
            ErrorCode::DocumentTooLarge,
            format!("the markdown conversion took longer than {} s", limit.as_secs()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth))
    }

    #[tokio::test]
    async fn converts_on_its_own_thread() {
        let md = convert("<h1>Title</h1><p>Some <b>bold</b> text.</p>".into()).await.unwrap();
        assert_eq!(md, "# Title\n\nSome **bold** text.");
    }

    #[tokio::test]
    async fn a_document_as_deep_as_the_limit_converts_without_overflowing() {
        // On a default 2 MiB thread this depth is where recursion gets dangerous; here it is fine.
        let md = convert(nested(MAX_DEPTH)).await.unwrap();
        assert_eq!(md.trim(), "deep");
    }

    #[tokio::test]
    async fn a_conversion_over_its_time_limit_fails_with_its_own_code() {
        let big: String = (0..200_000).map(|i| format!("<p>paragraph {i}</p>")).collect();
        let e = convert_within(big, Duration::from_millis(1)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DocumentTooLarge);
    }
}
