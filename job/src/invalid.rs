use std::fmt;

/// A request that cannot be enqueued, with the option at fault.
///
/// The extension raises it as SQLSTATE 22023 (`invalid_parameter_value`), the API as a 400/422
/// whose `details.field` is `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOption {
    /// The API error code: `INVALID_URL`, `BLOCKED_URL` or `INVALID_OPTION`.
    pub code: &'static str,
    /// Dotted path of the option, for example `viewport.width` or `requests[2].url`.
    pub field: String,
    /// Postgres style: short, factual, lower case, naming the field.
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl InvalidOption {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidOption { code: "INVALID_OPTION", field: field.into(), message: message.into(), detail: None, hint: None }
    }

    /// `field must be between lo and hi`, with the value given as detail.
    pub fn out_of_range(field: &str, lo: impl fmt::Display, hi: impl fmt::Display, got: impl fmt::Display) -> Self {
        InvalidOption::new(field, format!("{field} must be between {lo} and {hi}")).with_detail(format!("got {got}"))
    }

    /// `field must be one of a, b, c`.
    pub fn not_one_of(field: &str, allowed: &[&str], got: &str) -> Self {
        InvalidOption::new(field, format!("{field} must be one of {}", allowed.join(", ")))
            .with_detail(format!("got \"{got}\""))
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error for the same option nested under `prefix` (a bulk request's index).
    pub fn under(mut self, prefix: &str) -> Self {
        self.message = match self.message.strip_prefix(self.field.as_str()) {
            Some(rest) => format!("{prefix}.{}{rest}", self.field),
            None => format!("{prefix}: {}", self.message),
        };
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidOption {}
