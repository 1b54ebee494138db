//! The request options of DESIGN §4, in the allscreenshots camelCase shape.
//!
//! Deserialising refuses unknown fields and wrong types; [`ScreenshotOptions::validate`] then checks
//! ranges and limits and canonicalises aliases (`jpg`, `responseType: JSON`, device names), so the
//! JSON stored with a job is the canonical form the worker reads back.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{check_url, Device, InvalidOption, NetworkPolicy, DEVICES};

/// The spec's schemas are derived from these same types (feature `openapi`, used by pgshot-api):
/// `oai` attributes give the ranges that [`ScreenshotOptions::validate`] enforces, and a test of
/// the API walks the spec and checks each range against `validate`, so the two cannot drift.
macro_rules! options_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
        #[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
        pub struct $name {
            $($(#[$fmeta])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>,)*
        }
    };
}

options_struct! {
    /// Everything a screenshot request may carry. `url` is required in a request of its own and
    /// absent in a bulk request's `defaults` and `options` (the bulk item has it).
    pub struct ScreenshotOptions {
        /// The page to capture: an http or https URL of at most 8192 characters. Private and
        /// loopback addresses are refused unless the deployment allows them.
        #[cfg_attr(feature = "openapi", oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$")))]
        pub url: String,
        /// The browser window; missing fields come from `device`, then 1920 x 1080 at scale 1.
        pub viewport: Viewport,
        /// A device preset (case-insensitive): Desktop HD, Desktop, Laptop, iPhone 14,
        /// iPhone 14 Pro Max, iPad, iPad Pro. Sets the viewport, scale, touch and user agent.
        pub device: String,
        /// The single result's format: png (default), jpeg (or jpg), webp, or pdf.
        pub format: Format,
        /// JPEG and WebP quality, 1 to 100 (default 80). Ignored for PNG.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "100"))))]
        pub quality: i64,
        /// Capture the whole scrollable page instead of the viewport (default false).
        pub full_page: bool,
        /// How a full page is captured: `native` (one capture of the whole page; the default) or
        /// `stitch` (scroll one viewport at a time and join the captures: lazy content loads as
        /// it would for a reader, and pages taller than one capture can hold still work).
        pub full_page_mode: FullPageMode,
        /// stitch only: at most this many viewport-high sections, 1 to 50 (default 50).
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "50"))))]
        pub max_sections: i64,
        /// stitch only: milliseconds to wait after each scroll before capturing, 50 to 1000
        /// (default 150).
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "50"), maximum(value = "1000"))))]
        pub scroll_interval: i64,
        /// Full-page captures: fixed and sticky elements (headers, chat buttons, cookie bars) stay
        /// where they are in the first viewport instead of repeating down the page or moving to
        /// its bottom (default false).
        pub freeze_fixed: bool,
        /// Full-page captures are cut at this height in CSS pixels, 1000 to 30000 (default 16384).
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1000"), maximum(value = "30000"))))]
        pub max_height: i64,
        /// Milliseconds to wait after the page loads (and the actions ran), 0 to 30000.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "0"), maximum(value = "30000"))))]
        pub delay: i64,
        /// A CSS selector that must match before capture, within `timeout`.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500, pattern = r"\S")))]
        pub wait_for: String,
        /// When the page counts as loaded (default domcontentloaded).
        pub wait_until: WaitUntil,
        /// Milliseconds the page may take to load, 1000 to 60000 (default 30000).
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1000"), maximum(value = "60000"))))]
        pub timeout: i64,
        /// Emulate `prefers-color-scheme: dark` (default false).
        pub dark_mode: bool,
        /// Hide the usual signs of a headless browser from the page: `navigator.webdriver`,
        /// "HeadlessChrome" in the user agent and its client hints, empty plugins and languages
        /// (default false).
        pub stealth_mode: bool,
        /// CSS added to the page before it renders, at most 10000 characters.
        #[cfg_attr(feature = "openapi", oai(validator(max_length = 10000)))]
        pub custom_css: String,
        /// CSS selectors of elements to hide (`display: none`), at most 50 of at most 500
        /// characters each.
        #[cfg_attr(feature = "openapi", oai(validator(max_items = 50)))]
        pub hide_selectors: Vec<String>,
        /// Capture only the first element this CSS selector matches.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500, pattern = r"\S")))]
        pub selector: String,
        /// Block requests to known ad and tracker hosts (default false).
        pub block_ads: bool,
        /// Hide known cookie-consent banners (default false).
        pub block_cookie_banners: bool,
        /// Hide cookie banners and overlays; popup windows are always blocked (default false).
        pub block_popups: bool,
        /// Shorthand: light and normal block ads; pro, pro_plus and ultimate also hide cookie banners.
        pub block_level: BlockLevel,
        /// Cookies, request headers and storage the page starts with.
        pub session: Session,
        /// Steps run in order after the page loads and before capture, at most 25.
        #[cfg_attr(feature = "openapi", oai(validator(max_items = 25)))]
        pub actions: Vec<Action>,
        /// Several results from one page load, 1 to 10; replaces `format` and the top-level capture
        /// options.
        #[cfg_attr(feature = "openapi", oai(validator(min_items = 1, max_items = 10)))]
        pub outputs: Vec<OutputSpec>,
        /// How `GET .../result` answers: BINARY (the bytes; default), BASE64 (JSON with the bytes
        /// in base64) or URL (JSON with the result's URL).
        pub response_type: ResponseType,
        /// Receives a signed POST when the job finishes (Standard Webhooks).
        #[cfg_attr(feature = "openapi", oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$")))]
        pub webhook_url: String,
        /// Signs the webhook (HMAC-SHA256); 16 to 255 characters, for example `whsec_` and 32
        /// random base64 characters.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 16, max_length = 255, pattern = r"\S")))]
        pub webhook_secret: String,
        /// -100 to 100 (default 0); lower runs first, as in graphile-worker and River.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "-100"), maximum(value = "100"))))]
        pub priority: i64,
        /// An RFC 3339 time before which the job is not rendered.
        #[cfg_attr(feature = "openapi", oai(validator(pattern = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")))]
        pub run_at: String,
        /// Attempts before the job fails for good, 1 to 25 (default 3). Only retryable errors retry.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "25"))))]
        pub max_attempts: i64,
        /// A second request with the same key (per API key) returns the first job instead of a
        /// new one; 1 to 255 characters, no control characters.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 255, pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$")))]
        pub idempotency_key: String,
    }
}

options_struct! {
    /// The browser window in CSS pixels.
    pub struct Viewport {
        /// 100 to 2560.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "100"), maximum(value = "2560"))))]
        pub width: i64,
        /// 100 to 2160.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "100"), maximum(value = "2160"))))]
        pub height: i64,
        /// Device pixels per CSS pixel, 1 to 3.
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "3"))))]
        pub device_scale_factor: f64,
    }
}

options_struct! {
    /// State the page starts with: cookies, extra request headers and storage entries.
    pub struct Session {
        /// At most 50.
        #[cfg_attr(feature = "openapi", oai(validator(max_items = 50)))]
        pub cookies: Vec<Cookie>,
        /// At most 50.
        #[cfg_attr(feature = "openapi", oai(validator(max_items = 50)))]
        pub headers: Vec<Header>,
        /// At most 100 entries.
        #[cfg_attr(feature = "openapi", oai(validator(max_items = 100)))]
        pub storage: Vec<StorageItem>,
    }
}

/// A cookie set before the page loads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
pub struct Cookie {
    /// 1 to 256 characters.
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 256)))]
    pub name: String,
    /// At most 4096 characters, no CR, LF or NUL.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default, validator(max_length = 4096, pattern = r"^[^\r\n\x00]*$")))]
    pub value: String,
    /// The URL the cookie belongs to (default: the page's URL, unless `domain` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The cookie's domain, 1 to 253 characters (a leading dot includes subdomains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 253)))]
    pub domain: Option<String>,
    /// The cookie's path, 1 to 1024 characters (default /).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 1024)))]
    pub path: Option<String>,
    /// Sent over https only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// Hidden from the page's scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// Unix time in seconds; a session cookie when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<f64>,
}

/// The cookie's SameSite attribute; `no_restriction` is None and `unspecified` leaves it to the
/// browser, as the official SDKs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
pub enum SameSite {
    #[serde(alias = "strict")]
    Strict,
    #[serde(alias = "lax")]
    Lax,
    #[serde(alias = "none", alias = "no_restriction")]
    None,
    #[serde(alias = "unspecified")]
    Unspecified,
}

/// An extra request header, sent only to `origin` when it is given (otherwise to every request of
/// the page, third parties included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
pub struct Header {
    /// An HTTP token of at most 256 characters; connection headers (Host, Content-Length, ...)
    /// cannot be set.
    #[cfg_attr(feature = "openapi", oai(validator(max_length = 256, pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")))]
    pub name: String,
    /// At most 8192 characters, no CR, LF or NUL.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default, validator(max_length = 8192, pattern = r"^[^\r\n\x00]*$")))]
    pub value: String,
    /// Send the header only to this origin (for example https://api.example.com).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Storage set before the page's scripts run, in either of two shapes: one localStorage entry
/// (`key`, `value`), or the official SDKs' shape, an origin's `localStorage` and
/// `sessionStorage` maps. `origin` defaults to the page's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
pub struct StorageItem {
    /// A localStorage key, 1 to 256 characters; with `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 256)))]
    pub key: Option<String>,
    /// At most 100000 characters; with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(max_length = 100000)))]
    pub value: Option<String>,
    /// The origin whose storage this is, for example https://app.example.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// localStorage entries for `origin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_storage: Option<BTreeMap<String, String>>,
    /// sessionStorage entries for `origin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<BTreeMap<String, String>>,
}

/// An image format, or pdf for a PDF document; jpg is accepted for jpeg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
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

/// See `fullPageMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum FullPageMode {
    Native,
    Stitch,
}

/// When the page counts as loaded: `commit` (the response arrived), `domcontentloaded`, `load`,
/// or `networkidle` (no request for 500 ms after load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum WaitUntil {
    Load,
    #[serde(rename = "domcontentloaded")]
    #[cfg_attr(feature = "openapi", oai(rename = "domcontentloaded"))]
    DomContentLoaded,
    #[serde(rename = "networkidle")]
    #[cfg_attr(feature = "openapi", oai(rename = "networkidle"))]
    NetworkIdle,
    Commit,
}

/// How the result is answered; `JSON` is the official SDKs' older name of BASE64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum ResponseType {
    #[serde(alias = "binary")]
    Binary,
    #[serde(alias = "base64", alias = "JSON", alias = "json")]
    Base64,
    #[serde(alias = "url")]
    Url,
}

/// Ad and banner blocking in one setting: light and normal block ads; pro, pro_plus and ultimate
/// also hide cookie banners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum BlockLevel {
    None,
    Light,
    Normal,
    Pro,
    ProPlus,
    Ultimate,
}

/// One step run on the page after it loads and before capture. Every action takes `optional`
/// (a failing optional action is skipped instead of failing the job) and `timeout` (milliseconds
/// to wait for its selector to match, 0 to 30000; default 0, no wait).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Union))]
#[cfg_attr(feature = "openapi", oai(discriminator_name = "type", one_of))]
pub enum Action {
    #[cfg_attr(feature = "openapi", oai(mapping = "click"))]
    Click(ClickAction),
    #[cfg_attr(feature = "openapi", oai(mapping = "type"))]
    Type(TypeAction),
    #[cfg_attr(feature = "openapi", oai(mapping = "press"))]
    Press(PressAction),
    #[cfg_attr(feature = "openapi", oai(mapping = "hover"))]
    Hover(HoverAction),
    #[cfg_attr(feature = "openapi", oai(mapping = "select"))]
    Select(SelectAction),
    #[cfg_attr(feature = "openapi", oai(mapping = "scroll"))]
    Scroll(ScrollAction),
    #[cfg_attr(feature = "openapi", oai(mapping = "wait"))]
    Wait(WaitAction),
}

macro_rules! action_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
        #[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Skip this action instead of failing the job when it fails (default false).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub optional: Option<bool>,
            /// Milliseconds to wait for the selector to match, 0 to 30000 (default 0).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "0"), maximum(value = "30000"))))]
            pub timeout: Option<i64>,
        }
    };
}

action_struct! {
    /// Clicks the first element the selector matches.
    pub struct ClickAction {
        /// A CSS selector, 1 to 500 characters: the first element it matches.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: String,
    }
}

action_struct! {
    /// Types text into the first element the selector matches.
    pub struct TypeAction {
        /// A CSS selector, 1 to 500 characters: the first element it matches.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: String,
        /// At most 10000 characters.
        #[cfg_attr(feature = "openapi", oai(validator(max_length = 10000)))]
        pub text: String,
        /// Empty the field first (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub clear: Option<bool>,
    }
}

action_struct! {
    /// Presses a key (Enter, Tab, Escape, ArrowDown, a character, ...), in the element the
    /// selector matches when one is given.
    pub struct PressAction {
        /// At most 50 characters.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 50)))]
        pub key: String,
        /// A CSS selector, 1 to 500 characters: the element focused before the key is pressed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: Option<String>,
    }
}

action_struct! {
    /// Moves the mouse over the first element the selector matches.
    pub struct HoverAction {
        /// A CSS selector, 1 to 500 characters: the first element it matches.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: String,
    }
}

action_struct! {
    /// Chooses a value in the first `<select>` the selector matches.
    pub struct SelectAction {
        /// A CSS selector, 1 to 500 characters: the first element it matches.
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: String,
        /// At most 1000 characters.
        #[cfg_attr(feature = "openapi", oai(validator(max_length = 1000)))]
        pub value: String,
    }
}

action_struct! {
    /// Scrolls the page: to the element the selector matches, to `y` (CSS pixels, 0 to 100000),
    /// or to the bottom (`toBottom`; with a selector, the element's own content to its bottom).
    pub struct ScrollAction {
        /// A CSS selector, 1 to 500 characters: the element scrolled into view.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: Option<String>,
        /// The page's vertical scroll position in CSS pixels, 0 to 100000.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "0"), maximum(value = "100000"))))]
        pub y: Option<i64>,
        /// Default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub to_bottom: Option<bool>,
    }
}

action_struct! {
    /// Waits: `duration` (or `ms`) milliseconds, 0 to 30000; until the selector matches (within
    /// `timeout`, default 10000); or until the network is idle (`networkIdle`: no request in
    /// flight and none started or ended for 500 ms, within `timeout`).
    pub struct WaitAction {
        /// Milliseconds to wait, 0 to 30000.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "0"), maximum(value = "30000"))))]
        pub duration: Option<i64>,
        /// The official SDKs' name of `duration`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "0"), maximum(value = "30000"))))]
        pub ms: Option<i64>,
        /// A CSS selector, 1 to 500 characters, that must match (within `timeout`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
        pub selector: Option<String>,
        /// Default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network_idle: Option<bool>,
    }
}

/// What an output is: a screenshot (png, jpeg, webp), a pdf, the page's html, markdown or text,
/// or json data extracted from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
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
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
pub struct OutputSpec {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", oai(rename = "type"))]
    pub output_type: OutputType,
    /// 1 to 64 letters, digits, - or _; defaults to the type's name; unique within the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(pattern = "^[A-Za-z0-9_-]{1,64}$")))]
    pub id: Option<String>,
    /// screenshot: png (default), jpeg (or jpg) or webp. pdf: the paper size, A3, A4 (default),
    /// A5, Letter, Legal or Tabloid (as `paperFormat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(max_length = 16)))]
    pub format: Option<String>,
    /// screenshot: JPEG and WebP quality, 1 to 100 (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "100"))))]
    pub quality: Option<i64>,
    /// screenshot: the whole page (with the request's fullPageMode and freezeFixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_page: Option<bool>,
    /// screenshot: the element to capture; html, markdown, text: the element to extract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
    pub selector: Option<String>,
    /// pdf: landscape pages (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landscape: Option<bool>,
    /// pdf: print backgrounds (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print_background: Option<bool>,
    /// pdf: the paper size (another name for a pdf output's `format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_format: Option<PaperFormat>,
    /// html, markdown, text: only the page's main content (the article, without navigation, ads,
    /// sidebars and footers), found by a readability algorithm (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_content_only: Option<bool>,
    /// html: without scripts, styles, comments, event-handler attributes and other markup that
    /// is not content (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<bool>,
    /// json: named fields to extract, at most 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<BTreeMap<String, JsonField>>,
    /// json: another form of `schema`: a CSS selector for each name, whose matches' text is
    /// extracted as a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<BTreeMap<String, String>>,
}

/// A PDF's paper size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
pub enum PaperFormat {
    #[serde(alias = "a3")]
    A3,
    #[serde(alias = "a4")]
    A4,
    #[serde(alias = "a5")]
    A5,
    #[serde(alias = "letter", alias = "LETTER")]
    Letter,
    #[serde(alias = "legal", alias = "LEGAL")]
    Legal,
    #[serde(alias = "tabloid", alias = "TABLOID")]
    Tabloid,
}

impl PaperFormat {
    pub const NAMES: [&'static str; 6] = ["A3", "A4", "A5", "Letter", "Legal", "Tabloid"];

    fn parse(name: &str) -> Option<PaperFormat> {
        serde_json::from_value(Value::String(name.to_string())).ok()
    }

    /// Width and height in inches, portrait.
    pub fn inches(self) -> (f64, f64) {
        match self {
            PaperFormat::A3 => (11.69, 16.54),
            PaperFormat::A4 => (8.27, 11.69),
            PaperFormat::A5 => (5.83, 8.27),
            PaperFormat::Letter => (8.5, 11.0),
            PaperFormat::Legal => (8.5, 14.0),
            PaperFormat::Tabloid => (11.0, 17.0),
        }
    }
}

/// One named field of a json output's `schema`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
pub struct JsonField {
    /// The CSS selector, 1 to 500 characters.
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 500)))]
    pub selector: String,
    /// What is taken of each match (default text).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(rename = "type"))]
    pub field_type: Option<JsonFieldType>,
    /// A list of every match instead of the first match or null (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiple: Option<bool>,
    /// The attribute to read, for type attribute (for example href).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 100)))]
    pub attribute: Option<String>,
}

/// `text`: the trimmed text; `html`: the inner HTML; `attribute`: the value of `attribute`;
/// `number`: the text as a number (null when it is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum JsonFieldType {
    Text,
    Html,
    Attribute,
    Number,
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
/// A webhook secret is an HMAC key: a short one can be guessed from one signed delivery.
pub const MIN_WEBHOOK_SECRET: usize = 16;
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
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
        range("maxSections", self.max_sections, 1, 50)?;
        range("scrollInterval", self.scroll_interval, 50, 1000)?;
        range("maxHeight", self.max_height, 1000, 30_000)?;
        range("delay", self.delay, 0, 30_000)?;
        range("timeout", self.timeout, 1000, 60_000)?;
        text("waitFor", self.wait_for.as_deref(), 1, MAX_SELECTOR)?;
        text("selector", self.selector.as_deref(), 1, MAX_SELECTOR)?;
        text("device", self.device.as_deref(), 0, 64)?;
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
        if let Some(actions) = &mut self.actions {
            count("actions", actions.len(), MAX_ACTIONS)?;
            for (i, action) in actions.iter_mut().enumerate() {
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
        webhook_secret(self.webhook_secret.as_deref())?;
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
                if let Some(expires) = c.expires {
                    if !expires.is_finite() || expires < 0.0 {
                        return Err(InvalidOption::new(
                            format!("{f}.expires"),
                            format!("{f}.expires must be a Unix time in seconds"),
                        )
                        .with_detail(format!("got {expires}")));
                    }
                }
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
            let mut entries = 0;
            for (i, item) in items.iter_mut().enumerate() {
                let f = format!("session.storage[{i}]");
                let maps = item.local_storage.is_some() || item.session_storage.is_some();
                match (&item.key, &item.value, maps) {
                    (Some(key), Some(value), false) => {
                        text(&format!("{f}.key"), Some(key), 1, 256)?;
                        text(&format!("{f}.value"), Some(value), 0, 100_000)?;
                        entries += 1;
                    }
                    (None, None, true) => {
                        for (name, map) in
                            [("localStorage", &item.local_storage), ("sessionStorage", &item.session_storage)]
                        {
                            for (key, value) in map.iter().flatten() {
                                text(&format!("{f}.{name}.{key}"), Some(key), 1, 256)?;
                                text(&format!("{f}.{name}.{key}"), Some(value), 0, 100_000)?;
                                entries += 1;
                            }
                        }
                    }
                    _ => {
                        return Err(InvalidOption::new(
                            f.clone(),
                            format!("{f} needs either key and value, or localStorage and/or sessionStorage"),
                        )
                        .with_hint("for example {\"origin\": \"https://example.com\", \"localStorage\": {\"theme\": \"dark\"}}"));
                    }
                }
                if let Some(origin) = &mut item.origin {
                    *origin = canonical_origin(&format!("{f}.origin"), origin)?;
                }
            }
            count("session.storage entries", entries, MAX_STORAGE_ITEMS)
                .map_err(|e| InvalidOption { field: "session.storage".into(), ..e })?;
        }
        Ok(())
    }
}

impl Action {
    /// The fields every action has.
    pub fn optional(&self) -> bool {
        self.common().0 == Some(true)
    }

    /// Milliseconds to wait for the action's selector (0: none).
    pub fn timeout_ms(&self) -> i64 {
        self.common().1.unwrap_or(0)
    }

    fn common(&self) -> (Option<bool>, Option<i64>) {
        match self {
            Action::Click(a) => (a.optional, a.timeout),
            Action::Type(a) => (a.optional, a.timeout),
            Action::Press(a) => (a.optional, a.timeout),
            Action::Hover(a) => (a.optional, a.timeout),
            Action::Select(a) => (a.optional, a.timeout),
            Action::Scroll(a) => (a.optional, a.timeout),
            Action::Wait(a) => (a.optional, a.timeout),
        }
    }

    fn validate(&mut self, f: &str) -> Result<(), InvalidOption> {
        range(&format!("{f}.timeout"), self.common().1, 0, 30_000)?;
        let selector = |s: &str| text(&format!("{f}.selector"), Some(s), 1, MAX_SELECTOR);
        match self {
            Action::Click(ClickAction { selector: s, .. }) | Action::Hover(HoverAction { selector: s, .. }) => {
                selector(s)
            }
            Action::Type(a) => {
                selector(&a.selector)?;
                text(&format!("{f}.text"), Some(&a.text), 0, 10_000)
            }
            Action::Press(a) => {
                if let Some(s) = &a.selector {
                    selector(s)?;
                }
                text(&format!("{f}.key"), Some(&a.key), 1, 50)
            }
            Action::Select(a) => {
                selector(&a.selector)?;
                text(&format!("{f}.value"), Some(&a.value), 0, 1000)
            }
            Action::Scroll(a) => {
                if let Some(s) = &a.selector {
                    selector(s)?;
                }
                range(&format!("{f}.y"), a.y, 0, 100_000)
            }
            Action::Wait(a) => {
                range(&format!("{f}.duration"), a.duration, 0, 30_000)?;
                range(&format!("{f}.ms"), a.ms, 0, 30_000)?;
                // `ms` is the SDKs' name of `duration`: stored as `duration`.
                if let Some(ms) = a.ms.take() {
                    if a.duration.is_some_and(|d| d != ms) {
                        return Err(InvalidOption::new(
                            format!("{f}.ms"),
                            format!("{f} has both duration and ms, and they differ"),
                        ));
                    }
                    a.duration = Some(ms);
                }
                if a.duration.is_none() && a.selector.is_none() && a.network_idle != Some(true) {
                    return Err(InvalidOption::new(f, format!("{f} needs a duration, a selector or networkIdle"))
                        .with_hint("for example {\"type\": \"wait\", \"ms\": 500}"));
                }
                if let Some(s) = &a.selector {
                    selector(s)?;
                }
                Ok(())
            }
        }
    }
}

impl OutputSpec {
    /// A screenshot output's image format (png unless it says otherwise).
    pub fn image_format(&self) -> Format {
        match self.format.as_deref() {
            Some("jpeg") => Format::Jpeg,
            Some("webp") => Format::Webp,
            _ => Format::Png,
        }
    }

    /// Checks the output and canonicalises it: a screenshot's `format` to png, jpeg or webp, a
    /// pdf's `format` to `paperFormat`, a json output's `selectors` to `schema`.
    fn validate(&mut self, f: &str) -> Result<(), InvalidOption> {
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
        only_for("format", self.format.is_some(), &[OutputType::Screenshot, OutputType::Pdf])?;
        only_for("quality", self.quality.is_some(), &[OutputType::Screenshot])?;
        only_for("fullPage", self.full_page.is_some(), &[OutputType::Screenshot])?;
        only_for("landscape", self.landscape.is_some(), &[OutputType::Pdf])?;
        only_for("printBackground", self.print_background.is_some(), &[OutputType::Pdf])?;
        only_for("paperFormat", self.paper_format.is_some(), &[OutputType::Pdf])?;
        only_for("selectors", self.selectors.is_some(), &[OutputType::Json])?;
        only_for("schema", self.schema.is_some(), &[OutputType::Json])?;
        only_for("clean", self.clean.is_some(), &[OutputType::Html])?;
        only_for(
            "mainContentOnly",
            self.main_content_only.is_some(),
            &[OutputType::Html, OutputType::Markdown, OutputType::Text],
        )?;
        only_for(
            "selector",
            self.selector.is_some(),
            &[OutputType::Screenshot, OutputType::Html, OutputType::Markdown, OutputType::Text],
        )?;
        let field = format!("{f}.format");
        match (ty, self.format.take()) {
            (OutputType::Screenshot, Some(name)) => {
                let format: Format = serde_json::from_value(Value::String(name.clone()))
                    .map_err(|_| InvalidOption::not_one_of(&field, &["png", "jpeg", "webp"], &name))?;
                if format == Format::Pdf {
                    return Err(InvalidOption::new(&field, format!("{field} must be one of png, jpeg, webp"))
                        .with_hint("request a pdf output with type \"pdf\""));
                }
                self.format = Some(serde_json::to_value(format).expect("formats serialise").as_str().unwrap().into());
            }
            (OutputType::Pdf, Some(name)) => {
                let paper = PaperFormat::parse(&name)
                    .ok_or_else(|| InvalidOption::not_one_of(&field, &PaperFormat::NAMES, &name))?;
                if self.paper_format.is_some_and(|p| p != paper) {
                    return Err(InvalidOption::new(
                        &field,
                        format!("{f} has both format and paperFormat, and they differ"),
                    ));
                }
                self.paper_format = Some(paper);
            }
            _ => {}
        }
        range(&format!("{f}.quality"), self.quality, 1, 100)?;
        text(&format!("{f}.selector"), self.selector.as_deref(), 1, MAX_SELECTOR)?;
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
        if let Some(selectors) = self.selectors.take() {
            if self.schema.is_some() {
                return Err(InvalidOption::new(format!("{f}.selectors"), format!("{f} has both schema and selectors"))
                    .with_hint("selectors is another form of schema: use one"));
            }
            let fields = selectors
                .into_iter()
                .map(|(name, selector)| {
                    (name, JsonField { selector, field_type: None, multiple: Some(true), attribute: None })
                })
                .collect();
            self.schema = Some(fields);
        }
        if let Some(schema) = &self.schema {
            count(&format!("{f}.schema"), schema.len(), 50)?;
            for (name, field) in schema {
                let at = format!("{f}.schema.{name}");
                text(&at, Some(name), 1, 100)?;
                text(&format!("{at}.selector"), Some(&field.selector), 1, MAX_SELECTOR)?;
                text(&format!("{at}.attribute"), field.attribute.as_deref(), 1, 100)?;
                let wants_attribute = field.field_type == Some(JsonFieldType::Attribute);
                if wants_attribute != field.attribute.is_some() {
                    return Err(InvalidOption::new(
                        format!("{at}.attribute"),
                        format!("{at}.attribute is needed by type attribute, and only by it"),
                    )
                    .with_hint("for example {\"selector\": \"a\", \"type\": \"attribute\", \"attribute\": \"href\"}"));
                }
            }
        }
        Ok(())
    }
}

/// A bulk request's own webhook: the same rules as a job's `webhookUrl` and `webhookSecret`.
pub fn check_bulk_webhook(url: Option<&str>, secret: Option<&str>, policy: NetworkPolicy) -> Result<(), InvalidOption> {
    if let Some(url) = url {
        check_url("webhookUrl", url, policy)?;
    }
    webhook_secret(secret)?;
    if secret.is_some() && url.is_none() {
        return Err(InvalidOption::new("webhookSecret", "webhookSecret is set but webhookUrl is not"));
    }
    Ok(())
}

fn webhook_secret(secret: Option<&str>) -> Result<(), InvalidOption> {
    text("webhookSecret", secret, 1, MAX_WEBHOOK_SECRET)?;
    if let Some(secret) = secret {
        let len = secret.chars().count();
        if len < MIN_WEBHOOK_SECRET {
            return Err(InvalidOption::new(
                "webhookSecret",
                format!("webhookSecret must be at least {MIN_WEBHOOK_SECRET} characters"),
            )
            .with_detail(format!("got {len} characters"))
            .with_hint("use a random secret, for example whsec_ and 32 base64 characters"));
        }
    }
    Ok(())
}

fn range(field: &str, value: Option<i64>, lo: i64, hi: i64) -> Result<(), InvalidOption> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(InvalidOption::out_of_range(field, lo, hi, v)),
        _ => Ok(()),
    }
}

/// Length in characters between `min` and `max`; a blank string counts as empty.
pub(crate) fn text(field: &str, value: Option<&str>, min: usize, max: usize) -> Result<(), InvalidOption> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DENY: NetworkPolicy = NetworkPolicy { allow_private_networks: false };

    fn parse(v: Value) -> Result<ScreenshotOptions, InvalidOption> {
        let mut opts = ScreenshotOptions::from_json(&v)?;
        opts.validate(DENY)?;
        Ok(opts)
    }

    /// What allscreenshots_sdk 2.0.0 (Python) sends for `ScreenshotRequest(url=...)`: its model
    /// serialises every default (models/screenshot_request.py, to_dict with exclude_none).
    fn python_sdk_defaults() -> Value {
        json!({"blockAds": true, "blockCookieBanners": true, "blockLevel": "none", "blockPopups": true,
               "darkMode": false, "delay": 0, "format": "png", "freezeFixed": true, "fullPage": false,
               "fullPageMode": "stitch", "maxSections": 50, "quality": 80, "responseType": "BINARY",
               "scrollInterval": 150, "stealthMode": false, "timeout": 30000,
               "url": "https://example.com/", "waitUntil": "domcontentloaded"})
    }

    #[test]
    fn the_python_sdks_default_request_is_accepted() {
        let opts = parse(python_sdk_defaults()).unwrap();
        assert_eq!(opts.full_page_mode, Some(FullPageMode::Stitch));
        assert_eq!((opts.max_sections, opts.scroll_interval), (Some(50), Some(150)));
        assert_eq!((opts.freeze_fixed, opts.stealth_mode), (Some(true), Some(false)));
        // BulkDefaults of the same SDK (models/bulk_defaults.py).
        parse(json!({"blockAds": true, "blockCookieBanners": true, "blockLevel": "none", "blockPopups": true,
                     "darkMode": false, "delay": 0, "format": "png", "fullPage": false, "quality": 80,
                     "stealthMode": false, "timeout": 30000, "waitUntil": "domcontentloaded"}))
        .unwrap();
    }

    #[test]
    fn the_python_sdks_outputs_actions_and_session_are_accepted_and_canonicalised() {
        let mut body = python_sdk_defaults();
        body["outputs"] = json!([
            {"format": "png", "fullPage": false, "quality": 80, "type": "screenshot"},
            {"id": "md", "mainContentOnly": true, "type": "markdown"},
            {"clean": true, "mainContentOnly": false, "type": "html"},
            {"schema": {"h": {"multiple": false, "selector": "h1", "type": "text"}}, "type": "json"},
            {"format": "A4", "landscape": false, "printBackground": true, "type": "pdf"},
            {"id": "legacy", "selectors": {"links": "a"}, "type": "json"},
        ]);
        body["actions"] = json!([
            {"optional": false, "selector": "#accept", "type": "click"},
            {"clear": true, "optional": false, "selector": "#q", "text": "pgshot", "type": "type"},
            {"key": "Enter", "optional": false, "type": "press"},
            {"optional": true, "selector": "#menu", "timeout": 500, "type": "hover"},
            {"optional": false, "selector": "select", "type": "select", "value": "b"},
            {"optional": false, "toBottom": false, "type": "scroll", "y": 300},
            {"ms": 200, "networkIdle": false, "optional": false, "type": "wait"},
        ]);
        body["session"] = json!({
            "cookies": [{"name": "c", "path": "/", "value": "", "sameSite": "no_restriction", "expires": 1893456000.5}],
            "headers": [{"name": "X-Trace", "value": ""}],
            "storage": [{"origin": "https://example.com", "localStorage": {"k": "v"}, "sessionStorage": {"s": "1"}}],
        });
        let opts = parse(body).unwrap();
        let outputs = opts.outputs.unwrap();
        assert_eq!(outputs[0].image_format(), Format::Png);
        assert_eq!(outputs[1].main_content_only, Some(true));
        assert_eq!((outputs[2].clean, outputs[2].main_content_only), (Some(true), Some(false)));
        assert_eq!(outputs[3].schema.as_ref().unwrap()["h"].selector, "h1");
        assert_eq!((outputs[4].format.as_deref(), outputs[4].paper_format), (None, Some(PaperFormat::A4)));
        let legacy = &outputs[5].schema.as_ref().unwrap()["links"];
        assert_eq!((legacy.selector.as_str(), legacy.multiple), ("a", Some(true)), "selectors is stored as schema");
        let actions = opts.actions.unwrap();
        assert!(actions[3].optional() && !actions[0].optional());
        assert_eq!(actions[3].timeout_ms(), 500);
        let Action::Wait(wait) = &actions[6] else { panic!("{:?}", actions[6]) };
        assert_eq!((wait.duration, wait.ms), (Some(200), None), "ms is stored as duration");
        let session = opts.session.unwrap();
        assert_eq!(session.cookies.unwrap()[0].same_site, Some(SameSite::None));
        assert_eq!(session.storage.unwrap()[0].session_storage.as_ref().unwrap()["s"], "1");
    }

    #[test]
    fn new_options_are_checked_and_errors_name_the_field() {
        let cases = [
            (json!({"maxSections": 0}), "maxSections", "maxSections must be between 1 and 50"),
            (json!({"scrollInterval": 20}), "scrollInterval", "scrollInterval must be between 50 and 1000"),
            (json!({"fullPageMode": "tiles"}), "fullPageMode", "invalid value for fullPageMode"),
            (
                json!({"outputs": [{"type": "pdf", "format": "B5"}]}),
                "outputs[0].format",
                "outputs[0].format must be one of A3, A4, A5, Letter, Legal, Tabloid",
            ),
            (
                json!({"outputs": [{"type": "screenshot", "format": "A4"}]}),
                "outputs[0].format",
                "outputs[0].format must be one of png, jpeg, webp",
            ),
            (
                json!({"outputs": [{"type": "markdown", "clean": true}]}),
                "outputs[0].clean",
                "outputs[0].clean applies only to html outputs",
            ),
            (
                json!({"outputs": [{"type": "json", "schema": {"a": {"selector": "a", "type": "attribute"}}}]}),
                "outputs[0].schema.a.attribute",
                "outputs[0].schema.a.attribute is needed by type attribute, and only by it",
            ),
            (
                json!({"actions": [{"type": "click", "selector": "a", "timeout": 40000}]}),
                "actions[0].timeout",
                "actions[0].timeout must be between 0 and 30000",
            ),
            (
                json!({"actions": [{"type": "wait", "ms": 5, "duration": 6}]}),
                "actions[0].ms",
                "actions[0] has both duration and ms, and they differ",
            ),
            (
                json!({"session": {"storage": [{"key": "k", "value": "v", "localStorage": {"a": "b"}}]}}),
                "session.storage[0]",
                "session.storage[0] needs either key and value, or localStorage and/or sessionStorage",
            ),
            (
                json!({"session": {"cookies": [{"name": "c", "expires": -1}]}}),
                "session.cookies[0].expires",
                "session.cookies[0].expires must be a Unix time in seconds",
            ),
        ];
        for (body, field, message) in cases {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!((e.field.as_str(), e.message.as_str()), (field, message), "{body}");
        }
    }
}
