//! Schemas of the OpenAPI spec. Requests are *parsed* by `pgshot-job` (the one definition of the
//! request and its validation); these types describe that shape, with its ranges and enums, to
//! the spec's readers and to client generators.

use std::collections::BTreeMap;

use poem_openapi::{Enum, Object};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ViewportSpec {
    #[oai(validator(minimum(value = "100"), maximum(value = "2560")))]
    pub width: Option<i64>,
    #[oai(validator(minimum(value = "100"), maximum(value = "2160")))]
    pub height: Option<i64>,
    #[oai(validator(minimum(value = "1"), maximum(value = "3")))]
    pub device_scale_factor: Option<f64>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum FormatSpec {
    Png,
    Jpeg,
    Jpg,
    Webp,
    Pdf,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum WaitUntilSpec {
    Load,
    Domcontentloaded,
    Networkidle,
    Commit,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "UPPERCASE")]
pub enum ResponseTypeSpec {
    Binary,
    Base64,
    Url,
    /// Older name of BASE64, sent by the official SDKs.
    Json,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum BlockLevelSpec {
    None,
    Light,
    Normal,
    Pro,
    ProPlus,
    Ultimate,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct CookieSpec {
    pub name: String,
    pub value: String,
    pub url: Option<String>,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    /// Strict, Lax or None.
    pub same_site: Option<String>,
    /// Unix time in seconds.
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct HeaderSpec {
    #[oai(validator(max_length = 256, pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))]
    pub name: String,
    /// No CR or LF.
    #[oai(validator(max_length = 8192, pattern = r"^[^\r\n\x00]*$"))]
    pub value: String,
    /// Send the header only to this origin (for example https://api.example.com).
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StorageItemSpec {
    pub key: String,
    pub value: String,
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct SessionSpec {
    #[oai(validator(max_items = 50))]
    pub cookies: Option<Vec<CookieSpec>>,
    #[oai(validator(max_items = 50))]
    pub headers: Option<Vec<HeaderSpec>>,
    #[oai(validator(max_items = 100))]
    pub storage: Option<Vec<StorageItemSpec>>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ActionType {
    Click,
    Type,
    Press,
    Hover,
    Select,
    Scroll,
    Wait,
}

/// One step run after the page loads: click, hover and select take `selector`; type takes
/// `selector` and `text`; press takes `key`; select takes `value`; scroll takes `selector` or
/// `y`; wait takes `duration` (ms) or `selector`.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ActionSpec {
    #[oai(rename = "type")]
    pub action_type: ActionType,
    #[oai(validator(max_length = 500))]
    pub selector: Option<String>,
    pub text: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
    pub y: Option<i64>,
    #[oai(validator(minimum(value = "0"), maximum(value = "30000")))]
    pub duration: Option<i64>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum OutputTypeSpec {
    Screenshot,
    Pdf,
    Html,
    Markdown,
    Json,
    Text,
}

/// One result of a multi-output job; all come from the same page load.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct OutputRequestSpec {
    #[oai(rename = "type")]
    pub output_type: OutputTypeSpec,
    /// Defaults to the type; unique within the job.
    #[oai(validator(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub id: Option<String>,
    pub format: Option<FormatSpec>,
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub quality: Option<i64>,
    pub full_page: Option<bool>,
    pub selector: Option<String>,
    pub landscape: Option<bool>,
    pub print_background: Option<bool>,
    /// A3, A4, A5, Letter, Legal or Tabloid.
    pub paper_format: Option<String>,
    /// json outputs: a name for each CSS selector whose matches' text is extracted.
    pub selectors: Option<BTreeMap<String, String>>,
}

/// A screenshot request: the allscreenshots request shape, plus pgshot's queue fields.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ScreenshotRequest {
    /// http or https only; private and loopback addresses are refused unless the deployment allows them.
    #[oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$"))]
    pub url: String,
    pub viewport: Option<ViewportSpec>,
    pub device: Option<DeviceSpec>,
    pub format: Option<FormatSpec>,
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub quality: Option<i64>,
    pub full_page: Option<bool>,
    #[oai(validator(minimum(value = "1000"), maximum(value = "30000")))]
    pub max_height: Option<i64>,
    #[oai(validator(minimum(value = "0"), maximum(value = "30000")))]
    pub delay: Option<i64>,
    #[oai(validator(min_length = 1, max_length = 500, pattern = r"\S"))]
    pub wait_for: Option<String>,
    pub wait_until: Option<WaitUntilSpec>,
    #[oai(validator(minimum(value = "1000"), maximum(value = "60000")))]
    pub timeout: Option<i64>,
    pub dark_mode: Option<bool>,
    #[oai(validator(max_length = 10000))]
    pub custom_css: Option<String>,
    #[oai(validator(max_items = 50))]
    pub hide_selectors: Option<Vec<String>>,
    #[oai(validator(min_length = 1, max_length = 500, pattern = r"\S"))]
    pub selector: Option<String>,
    pub block_ads: Option<bool>,
    pub block_cookie_banners: Option<bool>,
    pub block_popups: Option<bool>,
    pub block_level: Option<BlockLevelSpec>,
    pub session: Option<SessionSpec>,
    #[oai(validator(max_items = 25))]
    pub actions: Option<Vec<ActionSpec>>,
    #[oai(validator(min_items = 1, max_items = 10))]
    pub outputs: Option<Vec<OutputRequestSpec>>,
    pub response_type: Option<ResponseTypeSpec>,
    #[oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$"))]
    pub webhook_url: Option<String>,
    #[oai(validator(min_length = 1, max_length = 255, pattern = r"\S"))]
    pub webhook_secret: Option<String>,
    /// Lower runs first.
    #[oai(validator(minimum(value = "-100"), maximum(value = "100")))]
    pub priority: Option<i64>,
    /// RFC 3339: not rendered before this time.
    #[oai(validator(pattern = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"))]
    pub run_at: Option<String>,
    #[oai(validator(minimum(value = "1"), maximum(value = "25")))]
    pub max_attempts: Option<i64>,
    #[oai(validator(min_length = 1, max_length = 255, pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"))]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Enum)]
pub enum DeviceSpec {
    #[oai(rename = "Desktop HD")]
    DesktopHd,
    Desktop,
    Laptop,
    #[oai(rename = "iPhone 14")]
    IPhone14,
    #[oai(rename = "iPhone 14 Pro Max")]
    IPhone14ProMax,
    #[oai(rename = "iPad")]
    IPad,
    #[oai(rename = "iPad Pro")]
    IPadPro,
}

#[derive(Debug, Clone, Copy, Enum, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

/// 202 answer to an async request.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AsyncJobCreated {
    pub id: String,
    pub status: JobStatus,
    pub status_url: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub output_type: String,
    pub content_type: String,
    pub size: i64,
    pub result_url: String,
    #[oai(skip_serializing_if_is_none)]
    pub width: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub height: Option<i64>,
}

/// A job, as in the hosted API's job status response.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub url: String,
    pub result_url: Option<String>,
    pub storage_url: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub expires_at: Option<String>,
    /// width, height, format, size, renderTimeMs, title, finalUrl, httpStatus.
    pub metadata: Option<Value>,
    pub outputs: Option<BTreeMap<String, OutputInfo>>,
    /// The job's webhook delivery, when it has a webhookUrl and has finished.
    pub webhook: Option<WebhookInfo>,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    /// PENDING, DELIVERING, DELIVERED or FAILED.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

/// A result as JSON, for jobs whose responseType is BASE64.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Base64Result {
    pub url: String,
    pub format: String,
    pub content_type: String,
    #[oai(skip_serializing_if_is_none)]
    pub width: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub height: Option<i64>,
    pub size: i64,
    #[oai(skip_serializing_if_is_none)]
    pub render_time_ms: Option<i64>,
    pub encoding: String,
    pub data: String,
}

/// One URL of a bulk request, with options that override the request's `defaults`.
#[derive(Debug, Clone, Object)]
pub struct BulkItem {
    #[oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$"))]
    pub url: String,
    /// The same options as an async request (without `url`).
    pub options: Option<Value>,
}

/// Up to 100 URLs rendered as one bulk job.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BulkRequest {
    #[oai(validator(min_items = 1, max_items = 100))]
    pub urls: Vec<BulkItem>,
    /// Options applied to every URL unless its own options say otherwise.
    pub defaults: Option<Value>,
    /// Receives one BULK_COMPLETED delivery when every job has finished.
    #[oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$"))]
    pub webhook_url: Option<String>,
    #[oai(validator(min_length = 1, max_length = 255, pattern = r"\S"))]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct BulkJobItem {
    pub id: String,
    pub url: String,
    pub status: JobStatus,
    pub result_url: Option<String>,
    pub format: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub file_size: Option<i64>,
    pub render_time_ms: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: Option<String>,
    pub completed_at: Option<String>,
}

/// A bulk job: counts and status derived from its jobs.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct BulkJob {
    pub id: String,
    /// QUEUED, PROCESSING, COMPLETED, FAILED or CANCELLED.
    pub status: JobStatus,
    pub total_jobs: i32,
    pub completed_jobs: i32,
    pub failed_jobs: i32,
    /// Finished jobs, in percent.
    pub progress: i32,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub jobs: Option<Vec<BulkJobItem>>,
}
