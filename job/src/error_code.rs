use std::fmt;

/// Why a job failed: the `errorCode` of a FAILED job. Whether a code is worth another attempt is
/// decided here and nowhere else; the worker passes [`ErrorCode::is_retryable`] to `screenshot_fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum ErrorCode {
    /// The page did not load within the job's timeout.
    Timeout,
    /// DNS failure, refused or reset connection, TLS failure.
    UrlUnreachable,
    /// The page, a redirect or the webhook points at a destination the network policy refuses.
    BlockedUrl,
    /// `selector` or `waitFor` matched nothing.
    SelectorNotFound,
    /// The page loaded but capturing it failed.
    RenderFailed,
    /// Chromium died or stopped answering.
    BrowserCrashed,
    /// The page's own renderer process crashed (out of memory, for example); the browser and the
    /// jobs beside it are unharmed.
    PageCrashed,
    /// The page's renderer stopped answering (a script that never yields); its context is discarded.
    PageUnresponsive,
    /// The capture's pixel area (width x height x deviceScaleFactor squared) is over the limit.
    CaptureTooLarge,
    /// The document is too large or too deeply nested to serialise or convert (html, markdown).
    DocumentTooLarge,
    /// The worker holding the job stopped heartbeating (set by `screenshot_rescue`).
    LeaseExpired,
    /// An output is larger than the configured limit.
    OutputTooLarge,
    /// The job's stored URL or options are not a request `screenshot_enqueue` would accept (the
    /// row was written or changed by hand): the worker checks every job again before rendering it.
    InvalidJob,
    /// Anything else; details are in the worker's log.
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::Timeout,
        ErrorCode::UrlUnreachable,
        ErrorCode::BlockedUrl,
        ErrorCode::SelectorNotFound,
        ErrorCode::RenderFailed,
        ErrorCode::BrowserCrashed,
        ErrorCode::PageCrashed,
        ErrorCode::PageUnresponsive,
        ErrorCode::CaptureTooLarge,
        ErrorCode::DocumentTooLarge,
        ErrorCode::LeaseExpired,
        ErrorCode::OutputTooLarge,
        ErrorCode::InvalidJob,
        ErrorCode::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::UrlUnreachable => "URL_UNREACHABLE",
            ErrorCode::BlockedUrl => "BLOCKED_URL",
            ErrorCode::SelectorNotFound => "SELECTOR_NOT_FOUND",
            ErrorCode::RenderFailed => "RENDER_FAILED",
            ErrorCode::BrowserCrashed => "BROWSER_CRASHED",
            ErrorCode::PageCrashed => "PAGE_CRASHED",
            ErrorCode::PageUnresponsive => "PAGE_UNRESPONSIVE",
            ErrorCode::CaptureTooLarge => "CAPTURE_TOO_LARGE",
            ErrorCode::DocumentTooLarge => "DOCUMENT_TOO_LARGE",
            ErrorCode::LeaseExpired => "LEASE_EXPIRED",
            ErrorCode::OutputTooLarge => "OUTPUT_TOO_LARGE",
            ErrorCode::InvalidJob => "INVALID_JOB",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// Failures that another attempt may cure: transient network and browser trouble, and a page
    /// that crashed or stopped answering (memory pressure from its neighbours may have caused it).
    /// A blocked URL, a missing selector or an oversized capture, document or output fail the same
    /// way every time.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Timeout
                | ErrorCode::UrlUnreachable
                | ErrorCode::RenderFailed
                | ErrorCode::BrowserCrashed
                | ErrorCode::PageCrashed
                | ErrorCode::PageUnresponsive
                | ErrorCode::LeaseExpired
                | ErrorCode::InternalError
        )
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| code.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_only_transient_ones_retry() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            // The JSON name (serde, and the spec's enum) is the same name.
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert!(ErrorCode::BrowserCrashed.is_retryable());
        assert!(!ErrorCode::BlockedUrl.is_retryable());
        assert!(!ErrorCode::SelectorNotFound.is_retryable());
        assert!(ErrorCode::PageCrashed.is_retryable());
        assert!(!ErrorCode::CaptureTooLarge.is_retryable() && !ErrorCode::DocumentTooLarge.is_retryable());
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }
}
