//! The request options of DESIGN §4, in the allscreenshots camelCase shape.
//!
//! Deserialising refuses unknown fields and wrong types; [`ScreenshotOptions::validate`] then checks
//! ranges and limits and canonicalises aliases (`jpg`, `responseType: JSON`, device names), so the
//! JSON stored with a job is the canonical form the worker reads back.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{check_url, Device, InvalidOption, NetworkPolicy, DEVICES};

macro_rules! options_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>,)*
        }
    };
}

options_struct! {
    /// Everything a screenshot request may carry besides the URL.
    pub struct ScreenshotOptions {
        /// Only in a bulk request's items and the REST body; `screenshot_enqueue` takes it apart.
        pub url: String,
        pub viewport: Viewport,
        pub device: String,
        pub format: Format,
        pub quality: i64,
        pub full_page: bool,
        pub max_height: i64,
        pub delay: i64,
        pub wait_for: String,
        pub wait_until: WaitUntil,
        pub timeout: i64,
        pub dark_mode: bool,
        pub custom_css: String,
        pub hide_selectors: Vec<String>,
        pub selector: String,
        pub block_ads: bool,
        pub block_cookie_banners: bool,
        pub block_popups: bool,
        pub block_level: BlockLevel,
        pub session: Session,
        pub actions: Vec<Action>,
        pub outputs: Vec<OutputSpec>,
        pub response_type: ResponseType,
        pub webhook_url: String,
        pub webhook_secret: String,
        /// Lower runs first, as in graphile-worker and River.
        pub priority: i64,
        /// RFC 3339 timestamp before which the job is not claimed.
        pub run_at: String,
        pub max_attempts: i64,
        pub idempotency_key: String,
    }
}

options_struct! {
    pub struct Viewport {
        pub width: i64,
        pub height: i64,
        pub device_scale_factor: f64,
    }
}

options_struct! {
    /// State the page starts with: cookies, extra request headers and localStorage entries.
    pub struct Session {
        pub cookies: Vec<Cookie>,
        pub headers: Vec<Header>,
        pub storage: Vec<StorageItem>,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// Unix time in seconds; a session cookie when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SameSite {
    #[serde(alias = "strict")]
    Strict,
    #[serde(alias = "lax")]
    Lax,
    #[serde(alias = "none")]
    None,
}

/// An extra request header, sent only to `origin` when it is given (otherwise to every request of
/// the page, third parties included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A localStorage entry set before the page's scripts run, for `origin` (default: the page's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageItem {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[serde(alias = "PNG")]
    Png,
    #[serde(alias = "jpg", alias = "JPEG", alias = "JPG")]
    Jpeg,
    #[serde(alias = "WEBP")]
    Webp,
    #[serde(alias = "PDF")]
    Pdf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitUntil {
    Load,
    #[serde(rename = "domcontentloaded")]
    DomContentLoaded,
    #[serde(rename = "networkidle")]
    NetworkIdle,
    Commit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResponseType {
    #[serde(alias = "binary")]
    Binary,
    /// `JSON` is the official SDKs' older name for it.
    #[serde(alias = "base64", alias = "JSON", alias = "json")]
    Base64,
    #[serde(alias = "url")]
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockLevel {
    None,
    Light,
    Normal,
    Pro,
    ProPlus,
    Ultimate,
}

/// One step run on the page after it loads and before capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Action {
    Click {
        selector: String,
    },
    Type {
        selector: String,
        text: String,
    },
    Press {
        key: String,
    },
    Hover {
        selector: String,
    },
    Select {
        selector: String,
        value: String,
    },
    Scroll {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selector: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        y: Option<i64>,
    },
    Wait {
        /// Milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selector: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    Screenshot,
    Pdf,
    Html,
    Markdown,
    Json,
    Text,
}

impl OutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::Screenshot => "screenshot",
            OutputType::Pdf => "pdf",
            OutputType::Html => "html",
            OutputType::Markdown => "markdown",
            OutputType::Json => "json",
            OutputType::Text => "text",
        }
    }
}

/// One result of a multi-output job, produced from the same page load as the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputSpec {
    #[serde(rename = "type")]
    pub output_type: OutputType,
    /// Defaults to the type's name; unique within the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// screenshot: png, jpeg or webp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_page: Option<bool>,
    /// screenshot: the element to capture; html, markdown, text: the element to extract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// pdf only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landscape: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print_background: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_format: Option<String>,
    /// json only: a name for each CSS selector whose matches' text is extracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<BTreeMap<String, String>>,
}

pub const MAX_CUSTOM_CSS: usize = 10_000;
pub const MAX_SELECTOR: usize = 500;
pub const MAX_HIDE_SELECTORS: usize = 50;
pub const MAX_ACTIONS: usize = 25;
pub const MAX_OUTPUTS: usize = 10;
pub const MAX_COOKIES: usize = 50;
pub const MAX_HEADERS: usize = 50;
pub const MAX_STORAGE_ITEMS: usize = 100;
pub const MAX_WEBHOOK_SECRET: usize = 255;
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
const PAPER_FORMATS: &[&str] = &["A3", "A4", "A5", "Letter", "Legal", "Tabloid"];
/// Headers that describe the connection or that Chromium sets itself: overriding them breaks
/// requests or smuggles a different request past the page's server.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

impl ScreenshotOptions {
    /// Reads options from JSON, refusing unknown fields and wrong types with the field's path.
    pub fn from_json(value: &Value) -> Result<ScreenshotOptions, InvalidOption> {
        if !value.is_object() {
            return Err(InvalidOption::new("options", "options must be a JSON object")
                .with_detail(format!("got {}", json_kind(value))));
        }
        serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner().to_string();
            let field = if path == "." { "options".to_string() } else { path };
            if inner.starts_with("unknown field `") {
                return InvalidOption::new(&field, format!("{field} is not a known option"))
                    .with_detail(inner.clone())
                    .with_hint("option names are camelCase, as in the allscreenshots API");
            }
            InvalidOption::new(&field, format!("invalid value for {field}")).with_detail(inner)
        })
    }

    /// Checks ranges and limits, and canonicalises device names, header origins and output ids.
    pub fn validate(&mut self, policy: NetworkPolicy) -> Result<(), InvalidOption> {
        if let Some(v) = &self.viewport {
            range("viewport.width", v.width, 100, 2560)?;
            range("viewport.height", v.height, 100, 2160)?;
            if let Some(dsf) = v.device_scale_factor {
                if !(1.0..=3.0).contains(&dsf) {
                    return Err(InvalidOption::out_of_range("viewport.deviceScaleFactor", 1, 3, dsf));
                }
            }
        }
        if let Some(name) = &mut self.device {
            let device = Device::find(name).ok_or_else(|| {
                let names: Vec<&str> = DEVICES.iter().map(|d| d.name).collect();
                InvalidOption::not_one_of("device", &names, name)
            })?;
            *name = device.name.to_string();
        }
        range("quality", self.quality, 1, 100)?;
        range("maxHeight", self.max_height, 1000, 30_000)?;
        range("delay", self.delay, 0, 30_000)?;
        range("timeout", self.timeout, 1000, 60_000)?;
        text("waitFor", self.wait_for.as_deref(), 1, MAX_SELECTOR)?;
        text("selector", self.selector.as_deref(), 1, MAX_SELECTOR)?;
        text("customCss", self.custom_css.as_deref(), 0, MAX_CUSTOM_CSS)?;
        if let Some(list) = &self.hide_selectors {
            count("hideSelectors", list.len(), MAX_HIDE_SELECTORS)?;
            for (i, s) in list.iter().enumerate() {
                text(&format!("hideSelectors[{i}]"), Some(s), 1, MAX_SELECTOR)?;
            }
        }
        if let Some(session) = &mut self.session {
            session.validate()?;
        }
        if let Some(actions) = &self.actions {
            count("actions", actions.len(), MAX_ACTIONS)?;
            for (i, action) in actions.iter().enumerate() {
                action.validate(&format!("actions[{i}]"))?;
            }
        }
        if let Some(outputs) = &mut self.outputs {
            if outputs.is_empty() {
                return Err(InvalidOption::new("outputs", "outputs must not be empty")
                    .with_hint("leave outputs out for a single screenshot"));
            }
            count("outputs", outputs.len(), MAX_OUTPUTS)?;
            let mut seen = HashSet::new();
            for (i, output) in outputs.iter_mut().enumerate() {
                let field = format!("outputs[{i}]");
                output.validate(&field)?;
                let id = output.id.get_or_insert_with(|| output.output_type.as_str().to_string());
                if !seen.insert(id.clone()) {
                    return Err(InvalidOption::new(
                        format!("{field}.id"),
                        format!("{field}.id \"{id}\" is used twice"),
                    )
                    .with_hint("give each output of the same type its own id"));
                }
            }
        }
        if let Some(url) = &self.webhook_url {
            check_url("webhookUrl", url, policy)?;
        }
        text("webhookSecret", self.webhook_secret.as_deref(), 1, MAX_WEBHOOK_SECRET)?;
        if self.webhook_secret.is_some() && self.webhook_url.is_none() {
            return Err(InvalidOption::new("webhookSecret", "webhookSecret is set but webhookUrl is not"));
        }
        range("priority", self.priority, -100, 100)?;
        range("maxAttempts", self.max_attempts, 1, 25)?;
        if let Some(key) = &self.idempotency_key {
            text("idempotencyKey", Some(key), 1, MAX_IDEMPOTENCY_KEY)?;
            if key.chars().any(char::is_control) {
                return Err(InvalidOption::new("idempotencyKey", "idempotencyKey must not contain control characters"));
            }
        }
        if let Some(run_at) = &mut self.run_at {
            let parsed =
                time::OffsetDateTime::parse(run_at, &time::format_description::well_known::Rfc3339).map_err(|e| {
                    InvalidOption::new("runAt", "runAt must be an RFC 3339 timestamp")
                        .with_detail(e.to_string())
                        .with_hint("for example 2030-01-15T10:30:00Z")
                })?;
            *run_at = parsed
                .format(&time::format_description::well_known::Rfc3339)
                .expect("a parsed RFC 3339 timestamp formats again");
        }
        Ok(())
    }
}

impl Session {
    fn validate(&mut self) -> Result<(), InvalidOption> {
        if let Some(cookies) = &self.cookies {
            count("session.cookies", cookies.len(), MAX_COOKIES)?;
            for (i, c) in cookies.iter().enumerate() {
                let f = format!("session.cookies[{i}]");
                text(&format!("{f}.name"), Some(&c.name), 1, 256)?;
                text(&format!("{f}.value"), Some(&c.value), 0, 4096)?;
                no_line_breaks(&format!("{f}.value"), &c.value)?;
                if let Some(url) = &c.url {
                    check_url(&format!("{f}.url"), url, NetworkPolicy { allow_private_networks: true })?;
                }
                text(&format!("{f}.domain"), c.domain.as_deref(), 1, 253)?;
                text(&format!("{f}.path"), c.path.as_deref(), 1, 1024)?;
            }
        }
        if let Some(headers) = &mut self.headers {
            count("session.headers", headers.len(), MAX_HEADERS)?;
            for (i, h) in headers.iter_mut().enumerate() {
                let f = format!("session.headers[{i}]");
                text(&format!("{f}.name"), Some(&h.name), 1, 256)?;
                if !h.name.bytes().all(is_token_byte) {
                    return Err(InvalidOption::new(
                        format!("{f}.name"),
                        format!("{f}.name is not a valid header name"),
                    )
                    .with_detail(format!("got \"{}\"", h.name)));
                }
                if FORBIDDEN_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
                    return Err(InvalidOption::new(
                        format!("{f}.name"),
                        format!("{f}.name \"{}\" cannot be set", h.name),
                    )
                    .with_hint("connection headers are set by the browser"));
                }
                text(&format!("{f}.value"), Some(&h.value), 0, 8192)?;
                no_line_breaks(&format!("{f}.value"), &h.value)?;
                if let Some(origin) = &mut h.origin {
                    *origin = canonical_origin(&format!("{f}.origin"), origin)?;
                }
            }
        }
        if let Some(items) = &mut self.storage {
            count("session.storage", items.len(), MAX_STORAGE_ITEMS)?;
            for (i, item) in items.iter_mut().enumerate() {
                let f = format!("session.storage[{i}]");
                text(&format!("{f}.key"), Some(&item.key), 1, 256)?;
                text(&format!("{f}.value"), Some(&item.value), 0, 100_000)?;
                if let Some(origin) = &mut item.origin {
                    *origin = canonical_origin(&format!("{f}.origin"), origin)?;
                }
            }
        }
        Ok(())
    }
}

impl Action {
    fn validate(&self, f: &str) -> Result<(), InvalidOption> {
        let selector = |s: &str| text(&format!("{f}.selector"), Some(s), 1, MAX_SELECTOR);
        match self {
            Action::Click { selector: s } | Action::Hover { selector: s } => selector(s),
            Action::Type { selector: s, text: t } => {
                selector(s)?;
                text(&format!("{f}.text"), Some(t), 0, 10_000)
            }
            Action::Press { key } => text(&format!("{f}.key"), Some(key), 1, 50),
            Action::Select { selector: s, value } => {
                selector(s)?;
                text(&format!("{f}.value"), Some(value), 0, 1000)
            }
            Action::Scroll { selector: s, y } => {
                if let Some(s) = s {
                    selector(s)?;
                }
                range(&format!("{f}.y"), *y, 0, 100_000)
            }
            Action::Wait { duration, selector: s } => {
                if duration.is_none() && s.is_none() {
                    return Err(InvalidOption::new(f, format!("{f} needs a duration or a selector")));
                }
                if let Some(s) = s {
                    selector(s)?;
                }
                range(&format!("{f}.duration"), *duration, 0, 30_000)
            }
        }
    }
}

impl OutputSpec {
    fn validate(&self, f: &str) -> Result<(), InvalidOption> {
        let ty = self.output_type;
        let only_for = |name: &str, set: bool, allowed: &[OutputType]| {
            if set && !allowed.contains(&ty) {
                let types: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
                return Err(InvalidOption::new(
                    format!("{f}.{name}"),
                    format!("{f}.{name} applies only to {} outputs", types.join(" and ")),
                )
                .with_detail(format!("this output's type is {}", ty.as_str())));
            }
            Ok(())
        };
        only_for("format", self.format.is_some(), &[OutputType::Screenshot])?;
        only_for("quality", self.quality.is_some(), &[OutputType::Screenshot])?;
        only_for("fullPage", self.full_page.is_some(), &[OutputType::Screenshot])?;
        only_for("landscape", self.landscape.is_some(), &[OutputType::Pdf])?;
        only_for("printBackground", self.print_background.is_some(), &[OutputType::Pdf])?;
        only_for("paperFormat", self.paper_format.is_some(), &[OutputType::Pdf])?;
        only_for("selectors", self.selectors.is_some(), &[OutputType::Json])?;
        only_for(
            "selector",
            self.selector.is_some(),
            &[OutputType::Screenshot, OutputType::Html, OutputType::Markdown, OutputType::Text],
        )?;
        if self.format == Some(Format::Pdf) {
            return Err(InvalidOption::new(
                format!("{f}.format"),
                format!("{f}.format must be one of png, jpeg, webp"),
            )
            .with_hint("request a pdf output with type \"pdf\""));
        }
        range(&format!("{f}.quality"), self.quality, 1, 100)?;
        text(&format!("{f}.selector"), self.selector.as_deref(), 1, MAX_SELECTOR)?;
        if let Some(paper) = &self.paper_format {
            if !PAPER_FORMATS.iter().any(|p| p.eq_ignore_ascii_case(paper)) {
                return Err(InvalidOption::not_one_of(&format!("{f}.paperFormat"), PAPER_FORMATS, paper));
            }
        }
        if let Some(id) = &self.id {
            let ok =
                (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(InvalidOption::new(
                    format!("{f}.id"),
                    format!("{f}.id must be 1 to 64 letters, digits, - or _"),
                )
                .with_detail(format!("got \"{id}\"")));
            }
        }
        if let Some(selectors) = &self.selectors {
            count(&format!("{f}.selectors"), selectors.len(), 50)?;
            for (name, sel) in selectors {
                text(&format!("{f}.selectors.{name}"), Some(sel), 1, MAX_SELECTOR)?;
            }
        }
        Ok(())
    }
}

fn range(field: &str, value: Option<i64>, lo: i64, hi: i64) -> Result<(), InvalidOption> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(InvalidOption::out_of_range(field, lo, hi, v)),
        _ => Ok(()),
    }
}

/// Length in characters between `min` and `max`; a blank string counts as empty.
fn text(field: &str, value: Option<&str>, min: usize, max: usize) -> Result<(), InvalidOption> {
    let Some(value) = value else { return Ok(()) };
    let len = value.chars().count();
    if min > 0 && value.trim().is_empty() {
        return Err(InvalidOption::new(field, format!("{field} must not be empty")));
    }
    if len > max {
        return Err(InvalidOption::new(field, format!("{field} must be at most {max} characters"))
            .with_detail(format!("got {len} characters")));
    }
    Ok(())
}

fn count(field: &str, len: usize, max: usize) -> Result<(), InvalidOption> {
    if len > max {
        return Err(InvalidOption::new(field, format!("{field} must have at most {max} entries"))
            .with_detail(format!("got {len}")));
    }
    Ok(())
}

fn no_line_breaks(field: &str, value: &str) -> Result<(), InvalidOption> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(InvalidOption::new(field, format!("{field} must not contain CR, LF or NUL"))
            .with_hint("a line break would let the value start another header"));
    }
    Ok(())
}

/// RFC 7230 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn canonical_origin(field: &str, raw: &str) -> Result<String, InvalidOption> {
    let url = check_url(field, raw, NetworkPolicy { allow_private_networks: true })?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(InvalidOption::new(field, format!("{field} must be an origin without a path"))
            .with_detail(format!("got \"{raw}\""))
            .with_hint("for example https://api.example.com"));
    }
    Ok(url.origin().ascii_serialization())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
