//! Renders one job: a fresh browser context (no cookies, storage or cache shared with any other
//! job) behind the job's own egress proxy, one page, one page load, then every requested output.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams, SetEmulatedMediaParams, SetTouchEmulationEnabledParams,
    UserAgentBrandVersion, UserAgentMetadata,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventRequestPaused, HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType, InsertTextParams,
};
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, CookieSameSite, EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent, Headers,
    ResourceType, SetCookiesParams, SetExtraHttpHeadersParams, SetUserAgentOverrideParams, TimeSinceEpoch,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, CaptureScreenshotParams, CrashParams,
    CreateIsolatedWorldParams, EventLifecycleEvent, FrameId, PrintToPdfParams, Viewport,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;
use futures::StreamExt;
use pgshot_job::{
    Action, BlockLevel, Device, ErrorCode, Format, FullPageMode, JsonField, OutputSpec, OutputType, PaperFormat,
    SameSite, ScreenshotOptions, WaitUntil,
};
use serde_json::{json, Value};

use crate::blocklist::blocklists;
use crate::browser::{Chrome, TAB_VIEWPORT};
use crate::document::{self, Conversion};
use crate::egress::{Allowed, Egress, Refusal, Rules};
use pgshot_db::worker_queue::OutputRow;

/// Most DevTools calls answer in milliseconds; one that takes this long means a hung browser.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Capturing or printing a very tall page takes a while.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT_MS: i64 = 30_000;
const DEFAULT_MAX_HEIGHT: i64 = 16_384;
const DEFAULT_QUALITY: i64 = 80;
const DEFAULT_MAX_SECTIONS: i64 = 50;
const DEFAULT_SCROLL_INTERVAL_MS: i64 = 150;
/// How long a wait action waits for its selector or for the network when it sets no timeout.
const DEFAULT_WAIT_MS: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct RenderSettings {
    pub allow_private_networks: bool,
    pub allowed_destinations: Arc<[Allowed]>,
    pub max_output_bytes: usize,
    /// Largest capture in device pixels (width x height): a larger one fails CAPTURE_TOO_LARGE
    /// before Chromium allocates it.
    pub max_capture_pixels: u64,
}

#[derive(Debug)]
pub struct Rendered {
    pub outputs: Vec<OutputRow>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderError {
    pub code: ErrorCode,
    pub message: String,
}

impl RenderError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RenderError {
        RenderError { code, message: message.into() }
    }

    fn from_cdp(what: &str, e: CdpError) -> RenderError {
        let code = match e {
            // The browser answered, and said no: the page or our request is at fault.
            CdpError::Chrome(_)
            | CdpError::ChromeMessage(_)
            | CdpError::JavascriptException(_)
            | CdpError::NotFound => ErrorCode::RenderFailed,
            // A call to the page went unanswered: its renderer is busy. The browser is probed
            // before anyone calls it hung (see `render`).
            CdpError::Timeout => ErrorCode::PageUnresponsive,
            _ => ErrorCode::BrowserCrashed,
        };
        RenderError::new(code, format!("{what}: {e}"))
    }
}

/// The page load timed out: the message the hosted API uses.
pub fn timeout_error(timeout_ms: i64) -> RenderError {
    let seconds = (timeout_ms as f64 / 1000.0).round() as i64;
    RenderError::new(ErrorCode::Timeout, format!("Page load timed out after {seconds} seconds"))
}

/// Runs one DevTools step of the page under `limit`. No answer in time means the page's renderer
/// is stuck (a script that never yields, a layout that never ends): the job fails with
/// PAGE_UNRESPONSIVE and its context is discarded; the browser is only blamed if it is silent too.
async fn step<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, CdpError>>,
) -> Result<T, RenderError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RenderError::from_cdp(what, e)),
        Err(_) => Err(RenderError::new(
            ErrorCode::PageUnresponsive,
            format!("{what}: the page did not answer within {limit:?}"),
        )),
    }
}

/// The effective viewport: the device preset, overridden field by field by `viewport`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Screen {
    pub width: i64,
    pub height: i64,
    pub scale: f64,
    pub mobile: bool,
    pub touch: bool,
    pub user_agent: Option<&'static str>,
}

impl Screen {
    pub fn of(opts: &ScreenshotOptions) -> Screen {
        let device = opts.device.as_deref().and_then(Device::find);
        let viewport = opts.viewport.clone().unwrap_or_default();
        Screen {
            width: viewport.width.or(device.map(|d| i64::from(d.width))).unwrap_or(1920),
            height: viewport.height.or(device.map(|d| i64::from(d.height))).unwrap_or(1080),
            scale: viewport.device_scale_factor.or(device.map(|d| d.device_scale_factor)).unwrap_or(1.0),
            mobile: device.is_some_and(|d| d.mobile),
            touch: device.is_some_and(|d| d.touch),
            user_agent: device.and_then(|d| d.user_agent),
        }
    }
}

/// What `blockAds`, `blockCookieBanners`, `blockPopups` and `blockLevel` ask for together.
/// `blockLevel` light and normal block ads; pro and above block cookie banners too.
pub fn blocking(opts: &ScreenshotOptions) -> (bool, bool) {
    let level = opts.block_level.unwrap_or(BlockLevel::None);
    let ads = opts.block_ads == Some(true) || level != BlockLevel::None;
    let banners = opts.block_cookie_banners == Some(true)
        || opts.block_popups == Some(true)
        || matches!(level, BlockLevel::Pro | BlockLevel::ProPlus | BlockLevel::Ultimate);
    (ads, banners)
}

/// The outputs to produce: the requested ones, or one from `format` and the top-level options.
pub fn output_specs(opts: &ScreenshotOptions) -> Vec<OutputSpec> {
    if let Some(outputs) = &opts.outputs {
        return outputs.clone();
    }
    let spec = |ty: OutputType| OutputSpec {
        output_type: ty,
        id: Some(ty.as_str().to_string()),
        format: None,
        quality: None,
        full_page: None,
        selector: None,
        landscape: None,
        print_background: None,
        paper_format: None,
        main_content_only: None,
        clean: None,
        schema: None,
        selectors: None,
    };
    match opts.format {
        Some(Format::Pdf) => vec![spec(OutputType::Pdf)],
        format => vec![OutputSpec {
            format: format.map(|f| {
                if f == Format::Jpeg {
                    "jpeg"
                } else if f == Format::Webp {
                    "webp"
                } else {
                    "png"
                }
                .into()
            }),
            quality: opts.quality,
            full_page: opts.full_page,
            selector: opts.selector.clone(),
            ..spec(OutputType::Screenshot)
        }],
    }
}

pub async fn render(
    chrome: &Arc<Chrome>,
    url: &str,
    opts: &ScreenshotOptions,
    settings: &RenderSettings,
) -> Result<Rendered, RenderError> {
    let started = Instant::now();
    let (block_ads, _) = blocking(opts);
    let rules = Rules {
        allow_private_networks: settings.allow_private_networks,
        block_ads,
        allowed: settings.allowed_destinations.clone(),
    };
    let tab = chrome.take_tab(rules).await.map_err(|e| RenderError::new(ErrorCode::BrowserCrashed, e))?;
    let _dispose = ContextGuard { chrome: chrome.clone(), context: Some(tab.context.clone()) };
    let job = Job { page: &tab.page, egress: &tab.egress, url, opts, settings, started };
    let result = tokio::select! {
        biased;
        r = job.run() => r,
        () = tab.crashed() => Err(RenderError::new(ErrorCode::PageCrashed, "the page's renderer crashed")),
    };
    match result {
        Err(e) if matches!(e.code, ErrorCode::PageUnresponsive | ErrorCode::Timeout) => {
            // Whatever still runs in the page (a script in a loop) is stopped for good: Page.crash
            // is served on the renderer's IO thread, so a busy main thread cannot delay it. Its
            // context is disposed next, by `_dispose`.
            let _ = tokio::time::timeout(Duration::from_secs(2), tab.page.execute(CrashParams::default())).await;
            // A browser that does not answer either is the browser's problem: BROWSER_CRASHED,
            // which the job runner answers by retiring it.
            if chrome.answers().await {
                Err(e)
            } else {
                Err(RenderError::new(
                    ErrorCode::BrowserCrashed,
                    format!("{}; Chromium itself does not answer", e.message),
                ))
            }
        }
        other => other,
    }
}

/// Disposes the job's browser context (and so its page, cookies and storage) however the render
/// ends, including when the render future is dropped because the job was cancelled.
struct ContextGuard {
    chrome: Arc<Chrome>,
    context: Option<BrowserContextId>,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let (chrome, Some(context)) = (self.chrome.clone(), self.context.take()) else { return };
        tokio::spawn(async move {
            let dispose = chrome.with(async |b| b.dispose_browser_context(context).await);
            let _ = tokio::time::timeout(Duration::from_secs(5), dispose).await;
            // The render is over: replace the tab it took (see `Chrome::take_tab`).
            chrome.replenish();
        });
    }
}

struct Job<'a> {
    page: &'a Page,
    egress: &'a Egress,
    url: &'a str,
    opts: &'a ScreenshotOptions,
    settings: &'a RenderSettings,
    started: Instant,
}

impl Job<'_> {
    async fn run(&self) -> Result<Rendered, RenderError> {
        let screen = Screen::of(self.opts);
        let t0 = Instant::now();
        self.prepare(&screen).await?;
        let header_task = self.scope_headers().await?;
        let t1 = Instant::now();
        let loaded = self.load().await;
        let t2 = Instant::now();
        if let Some(task) = header_task {
            task.abort();
        }
        let info = loaded?;
        self.after_load().await?;

        let mut outputs = Vec::new();
        let mut primary: Option<(i64, i64, String)> = None;
        for spec in output_specs(self.opts) {
            let (row, dims) = self.produce(&spec, &screen).await?;
            if row.bytes.len() > self.settings.max_output_bytes {
                return Err(RenderError::new(
                    ErrorCode::OutputTooLarge,
                    format!(
                        "output \"{}\" is {} bytes, more than the limit of {}",
                        row.output_id,
                        row.bytes.len(),
                        self.settings.max_output_bytes
                    ),
                ));
            }
            if primary.is_none() {
                if let Some((w, h)) = dims {
                    primary = Some((w, h, format_name(&spec)));
                }
            }
            outputs.push(row);
        }
        // Where a render's time goes (RUST_LOG=pgshot_worker=debug), for profiling.
        tracing::debug!(
            tab_ms = (t0 - self.started).as_millis() as u64,
            prepare_ms = (t1 - t0).as_millis() as u64,
            load_ms = (t2 - t1).as_millis() as u64,
            outputs_ms = t2.elapsed().as_millis() as u64,
            "render phases"
        );
        let size: usize = outputs.iter().map(|o| o.bytes.len()).sum();
        let (width, height, format) = primary.unwrap_or((screen.width, screen.height, "HTML".into()));
        let format = if self.opts.outputs.is_some() { "MULTI".to_string() } else { format };
        let metadata = json!({
            "width": width,
            "height": height,
            "format": format,
            "size": size,
            "renderTimeMs": self.started.elapsed().as_millis() as u64,
            "title": info.title,
            "finalUrl": info.final_url,
            "httpStatus": info.http_status,
        });
        Ok(Rendered { outputs, metadata })
    }

    async fn exec<C: chromiumoxide::types::Command>(&self, what: &str, cmd: C) -> Result<C::Response, RenderError> {
        Ok(step(what, STEP_TIMEOUT, self.page.execute(cmd)).await?.result)
    }

    /// Emulation, cookies, headers and the scripts that must run before the page's own.
    async fn prepare(&self, screen: &Screen) -> Result<(), RenderError> {
        // Tabs are opened with the default viewport and a light colour scheme (browser::TAB_VIEWPORT).
        if (screen.width, screen.height, screen.scale, screen.mobile)
            != (TAB_VIEWPORT.0, TAB_VIEWPORT.1, TAB_VIEWPORT.2, false)
        {
            let metrics = SetDeviceMetricsOverrideParams::new(screen.width, screen.height, screen.scale, screen.mobile);
            self.exec("set viewport", metrics).await?;
        }
        if screen.touch {
            self.exec(
                "enable touch",
                SetTouchEmulationEnabledParams::builder().enabled(true).max_touch_points(5).build().unwrap(),
            )
            .await?;
        }
        if let Some(ua) = screen.user_agent {
            self.exec("set user agent", SetUserAgentOverrideParams::new(ua)).await?;
        }
        if self.opts.dark_mode == Some(true) {
            self.exec(
                "set color scheme",
                SetEmulatedMediaParams::builder().feature(MediaFeature::new("prefers-color-scheme", "dark")).build(),
            )
            .await?;
        }

        let session = self.opts.session.clone().unwrap_or_default();
        if let Some(cookies) = session.cookies.filter(|c| !c.is_empty()) {
            let params: Vec<CookieParam> = cookies
                .into_iter()
                .map(|c| {
                    let mut p = CookieParam::new(c.name, c.value);
                    p.url = c.url.or_else(|| c.domain.is_none().then(|| self.url.to_string()));
                    p.domain = c.domain;
                    p.path = c.path;
                    p.secure = c.secure;
                    p.http_only = c.http_only;
                    p.same_site = c.same_site.and_then(|s| match s {
                        SameSite::Strict => Some(CookieSameSite::Strict),
                        SameSite::Lax => Some(CookieSameSite::Lax),
                        SameSite::None => Some(CookieSameSite::None),
                        SameSite::Unspecified => None,
                    });
                    p.expires = c.expires.map(TimeSinceEpoch::new);
                    p
                })
                .collect();
            self.exec("set cookies", SetCookiesParams::new(params)).await?;
        }
        let unscoped: serde_json::Map<String, Value> = session
            .headers
            .iter()
            .flatten()
            .filter(|h| h.origin.is_none())
            .map(|h| (h.name.clone(), Value::String(h.value.clone())))
            .collect();
        if !unscoped.is_empty() {
            self.exec("set headers", SetExtraHttpHeadersParams::new(Headers::new(Value::Object(unscoped)))).await?;
        }

        let mut scripts = Vec::new();
        if let Some(items) = session.storage.filter(|s| !s.is_empty()) {
            // [origin, area, key, value]: one entry per key, from either shape of the option.
            let page_origin = origin_of(self.url);
            let mut entries = Vec::new();
            for item in items {
                let origin = item.origin.unwrap_or_else(|| page_origin.clone());
                if let (Some(key), Some(value)) = (item.key, item.value) {
                    entries.push(json!([origin, "localStorage", key, value]));
                }
                for (area, map) in [("localStorage", item.local_storage), ("sessionStorage", item.session_storage)] {
                    for (key, value) in map.into_iter().flatten() {
                        entries.push(json!([origin, area, key, value]));
                    }
                }
            }
            scripts.push(format!(
                "for (const [origin, area, key, value] of {}) {{ if (origin === location.origin) {{ \
                   try {{ window[area].setItem(key, value); }} catch (e) {{}} }} }}",
                Value::Array(entries)
            ));
        }
        if self.opts.stealth_mode == Some(true) {
            self.stealth(screen).await?;
            scripts.push(STEALTH_SCRIPT.to_string());
        }
        let mut css = String::new();
        if blocking(self.opts).1 {
            css.push_str(&blocklists().cookie_banner_css);
        }
        for selector in self.opts.hide_selectors.iter().flatten() {
            css.push_str(&format!("{selector} {{ display: none !important; }}\n"));
        }
        if let Some(custom) = &self.opts.custom_css {
            css.push_str(custom);
        }
        if !css.is_empty() {
            scripts.push(format!(
                "(() => {{ const add = () => {{ const s = document.createElement('style'); s.setAttribute('data-pgshot', ''); \
                 s.textContent = {}; (document.head || document.documentElement).appendChild(s); }}; \
                 if (document.documentElement) add(); else document.addEventListener('DOMContentLoaded', add); }})()",
                Value::String(css)
            ));
        }
        for source in scripts {
            self.exec("add init script", AddScriptToEvaluateOnNewDocumentParams::new(source)).await?;
        }
        Ok(())
    }

    /// The browser's own user agent without "HeadlessChrome", in the header, in `navigator` and
    /// in the client hints (a device preset's user agent is kept as it is).
    async fn stealth(&self, screen: &Screen) -> Result<(), RenderError> {
        let current = self.eval("navigator.userAgent").await?;
        let current = current.as_str().unwrap_or_default();
        let user_agent = screen.user_agent.map_or_else(|| current.replace("HeadlessChrome", "Chrome"), str::to_string);
        let version = user_agent.split("Chrome/").nth(1).and_then(|v| v.split(' ').next()).unwrap_or("0.0.0.0");
        let major = version.split('.').next().unwrap_or("0");
        let brands = |v: &str| {
            vec![
                UserAgentBrandVersion::new("Chromium", v),
                UserAgentBrandVersion::new("Google Chrome", v),
                UserAgentBrandVersion::new("Not_A Brand", if v.contains('.') { "24.0.0.0" } else { "24" }),
            ]
        };
        let metadata = UserAgentMetadata {
            brands: Some(brands(major)),
            full_version_list: Some(brands(version)),
            platform: if screen.mobile { "Android" } else { "Linux" }.into(),
            platform_version: String::new(),
            architecture: "x86".into(),
            model: String::new(),
            mobile: screen.mobile,
            bitness: Some("64".into()),
            wow64: Some(false),
            form_factors: None,
        };
        let mut params = SetUserAgentOverrideParams::new(user_agent);
        params.accept_language = Some("en-US,en;q=0.9".into());
        params.user_agent_metadata = Some(metadata);
        self.exec("set user agent", params).await?;
        Ok(())
    }

    /// Headers scoped to an origin are added request by request, through the Fetch domain.
    async fn scope_headers(&self) -> Result<Option<tokio::task::JoinHandle<()>>, RenderError> {
        let scoped: Vec<(String, String, String)> = self
            .opts
            .session
            .iter()
            .flat_map(|s| s.headers.iter().flatten())
            .filter_map(|h| h.origin.clone().map(|o| (o, h.name.clone(), h.value.clone())))
            .collect();
        if scoped.is_empty() {
            return Ok(None);
        }
        let mut paused =
            step("listen for requests", STEP_TIMEOUT, self.page.event_listener::<EventRequestPaused>()).await?;
        let pattern = RequestPattern::builder().url_pattern("*").request_stage(RequestStage::Request).build();
        self.exec("intercept requests", fetch::EnableParams::builder().pattern(pattern).build()).await?;
        let page = self.page.clone();
        Ok(Some(tokio::spawn(async move {
            while let Some(event) = paused.next().await {
                let origin = origin_of(&event.request.url);
                let mut headers: Vec<HeaderEntry> = event
                    .request
                    .headers
                    .inner()
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| HeaderEntry::new(k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                for (o, name, value) in &scoped {
                    if *o == origin {
                        headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
                        headers.push(HeaderEntry::new(name.clone(), value.clone()));
                    }
                }
                let cont = ContinueRequestParams::builder()
                    .request_id(event.request_id.clone())
                    .headers(headers)
                    .build()
                    .unwrap();
                if tokio::time::timeout(STEP_TIMEOUT, page.execute(cont)).await.is_err() {
                    break;
                }
            }
        })))
    }

    /// Navigates and waits for `waitUntil`, all within the job's `timeout`.
    ///
    /// chromiumoxide holds the answer to every `Page.navigate` sent through a `Page` until the
    /// page's `load` event, whatever the job waits for: a page whose third-party scripts and
    /// images cannot be reached took its whole timeout to "navigate" even with `domcontentloaded`,
    /// and a URL that answers with a download never answered at all. So the blank tab starts the
    /// navigation itself, and the navigation is followed through its own events: the main frame's
    /// document request names the loader, whose lifecycle event ends the wait and whose failure
    /// fails the job.
    async fn load(&self) -> Result<PageInfo, RenderError> {
        let timeout_ms = self.opts.timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
        let wait_until = self.opts.wait_until.unwrap_or(WaitUntil::DomContentLoaded);
        // Lifecycle events are on already: chromiumoxide enables them when it attaches the page.
        let listen = async {
            let lifecycle = self.page.event_listener::<EventLifecycleEvent>().await?;
            let requests = self.page.event_listener::<EventRequestWillBeSent>().await?;
            let failures = self.page.event_listener::<EventLoadingFailed>().await?;
            let main = self.page.mainframe().await?;
            Ok((lifecycle, requests, failures, main))
        };
        let (mut lifecycle, mut requests, mut failures, main) =
            step("listen for the load", STEP_TIMEOUT, listen).await?;
        let main = main.unwrap_or_else(|| FrameId::new(self.page.target_id().inner().clone()));
        let event = match wait_until {
            WaitUntil::Commit => "commit",
            WaitUntil::DomContentLoaded => "DOMContentLoaded",
            WaitUntil::Load => "load",
            WaitUntil::NetworkIdle => "networkIdle",
        };
        let navigate_and_wait = async {
            self.eval(&format!("location.href = {}", js(self.url))).await?;
            // The new document's loader: the id of the main frame's document request (the same
            // id names the request and its loader), or of its first lifecycle event.
            let mut loader: Option<String> = None;
            loop {
                tokio::select! {
                    Some(r) = requests.next() => {
                        if loader.is_none() && r.frame_id.as_ref() == Some(&main) && r.r#type == Some(ResourceType::Document) {
                            loader = Some(r.loader_id.inner().clone());
                        }
                    }
                    Some(f) = failures.next() => {
                        if loader.as_deref() == Some(f.request_id.inner().as_str()) {
                            let what = if f.error_text == "net::ERR_ABORTED" {
                                "net::ERR_ABORTED (the answer is a download, or no page)".to_string()
                            } else {
                                f.error_text.clone()
                            };
                            return Err(self.navigation_error(&what));
                        }
                    }
                    Some(e) = lifecycle.next() => {
                        if e.frame_id != main {
                            continue;
                        }
                        if loader.is_none() && (e.name == "init" || e.name == "commit") {
                            loader = Some(e.loader_id.inner().clone());
                        }
                        if e.name == event && loader.as_deref() == Some(e.loader_id.inner().as_str()) {
                            return Ok(());
                        }
                    }
                    else => return Err(RenderError::new(ErrorCode::BrowserCrashed, "the page closed while loading")),
                }
            }
        };
        let budget = Duration::from_millis(timeout_ms as u64);
        match tokio::time::timeout(budget, navigate_and_wait).await {
            Ok(r) => r?,
            Err(_) => return Err(timeout_error(timeout_ms)),
        }
        // Cut short in the page: a title can be any size (a hostile page's, hundreds of megabytes),
        // and it is kept in the job's metadata, which every listing of jobs reads.
        let info = self
            .read(&format!(
                "({{title: String(document.title).slice(0, {MAX_TITLE_CHARS}), \
                  url: String(location.href).slice(0, {MAX_URL_CHARS}), \
                  status: (performance.getEntriesByType('navigation')[0] || {{}}).responseStatus || null}})"
            ))
            .await?;
        let final_url = truncated(info["url"].as_str().unwrap_or_default(), MAX_URL_CHARS);
        if final_url.starts_with("chrome-error:") {
            return Err(self.navigation_error("net::ERR_FAILED"));
        }
        if let Some(selector) = &self.opts.wait_for {
            let left = budget.saturating_sub(self.started.elapsed());
            self.wait_for_selector(selector, left, "waitFor").await?;
        }
        Ok(PageInfo {
            title: info["title"].as_str().map(|t| truncated(t, MAX_TITLE_CHARS)),
            final_url,
            http_status: info["status"].as_i64(),
        })
    }

    fn navigation_error(&self, error: &str) -> RenderError {
        let refusals = self.egress.refusals();
        if let Some(refusal) = refusals.first() {
            let what = match refusal {
                Refusal::NonPublic { destination, reason } => format!("{destination} is {reason}"),
                Refusal::AdHost { host } => format!("{host} is on the ad block list"),
            };
            return RenderError::new(ErrorCode::BlockedUrl, format!("refused to load {}: {what}", self.url));
        }
        RenderError::new(
            ErrorCode::UrlUnreachable,
            format!("could not load {}: {}", self.url, self.why_unreachable(error)),
        )
    }

    /// What a user can act on, instead of Chromium's code for a failed proxy connection: which
    /// connection of the page's own host failed, and how (the job's egress listener knows).
    fn why_unreachable(&self, error: &str) -> String {
        let page = url::Url::parse(&self.url).ok();
        let host = page.as_ref().and_then(|u| u.host_str()).map(|h| h.trim_start_matches('[').trim_end_matches(']'));
        let port = page.as_ref().and_then(url::Url::port_or_known_default);
        let through_proxy =
            ["ERR_SOCKS_CONNECTION_FAILED", "ERR_PROXY_CONNECTION_FAILED", "ERR_TUNNEL_CONNECTION_FAILED"]
                .iter()
                .any(|code| error.contains(code));
        if through_proxy {
            let unreached = self.egress.unreached();
            let own = unreached.iter().find(|u| Some(u.host.as_str()) == host && Some(u.port) == port);
            if let Some(u) = own.or(unreached.first()) {
                return u.describe();
            }
        }
        if error.contains("ERR_CERT_") {
            return format!("the TLS certificate of {} is not valid ({error})", host.unwrap_or("the page"));
        }
        if error.contains("ERR_SSL_") {
            return format!("the TLS handshake with {} failed ({error})", host.unwrap_or("the page"));
        }
        error.to_string()
    }

    async fn wait_for_selector(&self, selector: &str, limit: Duration, option: &str) -> Result<(), RenderError> {
        let deadline = Instant::now() + limit;
        let probe = format!("!!document.querySelector({})", js(selector));
        loop {
            if self.eval(&probe).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RenderError::new(
                    ErrorCode::SelectorNotFound,
                    format!("{option}: no element matches \"{selector}\" after {:.1} s", limit.as_secs_f64()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Actions, then `delay`, then lazy content for full-page captures.
    async fn after_load(&self) -> Result<(), RenderError> {
        for (i, action) in self.opts.actions.iter().flatten().enumerate() {
            match self.act(i, action).await {
                // A page that crashed or hangs is not a failed step: the job fails whatever the
                // action says.
                Err(e)
                    if action.optional()
                        && !matches!(
                            e.code,
                            ErrorCode::PageCrashed | ErrorCode::PageUnresponsive | ErrorCode::BrowserCrashed
                        ) =>
                {
                    tracing::debug!(action = i, error = %e.message, "optional action skipped");
                }
                other => other?,
            }
        }
        if let Some(delay) = self.opts.delay.filter(|d| *d > 0) {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let native_full_page = self.opts.full_page_mode != Some(FullPageMode::Stitch)
            && output_specs(self.opts).iter().any(|s| s.full_page == Some(true));
        if native_full_page {
            // Scroll through once so that lazy images and infinite-scroll content load, then wait
            // (briefly) for the images to decode before returning to the top. (A stitched capture
            // scrolls through as it captures.)
            self.eval(
                "(async () => { const step = Math.max(innerHeight, 200); \
                   const end = () => Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0); \
                   for (let y = 0, t0 = Date.now(); y < end() && Date.now() - t0 < 8000; y += step) { \
                     scrollTo(0, y); await new Promise(r => setTimeout(r, 60)); } \
                   scrollTo(0, 0); \
                   const pending = Array.from(document.images).filter(i => !i.complete) \
                     .map(i => new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })); \
                   await Promise.race([Promise.all(pending), new Promise(r => setTimeout(r, 3000))]); \
                   await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); })()",
            )
            .await?;
        }
        Ok(())
    }

    async fn act(&self, i: usize, action: &Action) -> Result<(), RenderError> {
        let field = format!("actions[{i}]");
        let element = |selector: &str, then: &str| {
            format!(
                "(() => {{ const el = document.querySelector({}); if (!el) return null; \
                 el.scrollIntoView({{block: 'center', inline: 'center'}}); {then} }})()",
                js(selector)
            )
        };
        let missing = |selector: &str| {
            RenderError::new(ErrorCode::SelectorNotFound, format!("{field}: no element matches \"{selector}\""))
        };
        // An action's `timeout` is how long its element may take to appear.
        let wait = action.timeout_ms();
        let appear = async |selector: &str| -> Result<(), RenderError> {
            if wait > 0 {
                self.wait_for_selector(selector, Duration::from_millis(wait as u64), &field).await?;
            }
            Ok(())
        };
        match action {
            Action::Click(a) => {
                appear(&a.selector).await?;
                if self.eval(&element(&a.selector, "el.click(); return true;")).await?.is_null() {
                    return Err(missing(&a.selector));
                }
            }
            Action::Hover(a) => {
                appear(&a.selector).await?;
                let at = self
                    .eval(&element(&a.selector, "const r = el.getBoundingClientRect(); return {x: r.left + r.width / 2, y: r.top + r.height / 2};"))
                    .await?;
                if at.is_null() {
                    return Err(missing(&a.selector));
                }
                let mouse = DispatchMouseEventParams::new(
                    DispatchMouseEventType::MouseMoved,
                    at["x"].as_f64().unwrap_or(0.0),
                    at["y"].as_f64().unwrap_or(0.0),
                );
                self.exec("hover", mouse).await?;
            }
            Action::Type(a) => {
                appear(&a.selector).await?;
                let clear = if a.clear == Some(false) {
                    ""
                } else {
                    "if ('value' in el) { el.value = ''; el.dispatchEvent(new Event('input', {bubbles: true})); } \
                     else if (el.isContentEditable) { el.textContent = ''; }"
                };
                if self.eval(&element(&a.selector, &format!("el.focus(); {clear} return true;"))).await?.is_null() {
                    return Err(missing(&a.selector));
                }
                self.exec("type", InsertTextParams::new(a.text.clone())).await?;
            }
            Action::Select(a) => {
                appear(&a.selector).await?;
                let script = element(
                    &a.selector,
                    &format!(
                        "el.value = {}; el.dispatchEvent(new Event('input', {{bubbles: true}})); \
                         el.dispatchEvent(new Event('change', {{bubbles: true}})); return true;",
                        js(&a.value)
                    ),
                );
                if self.eval(&script).await?.is_null() {
                    return Err(missing(&a.selector));
                }
            }
            Action::Press(a) => {
                if let Some(selector) = &a.selector {
                    appear(selector).await?;
                    if self.eval(&element(selector, "el.focus(); return true;")).await?.is_null() {
                        return Err(missing(selector));
                    }
                }
                let (code, text) = key_code(&a.key);
                for kind in [DispatchKeyEventType::KeyDown, DispatchKeyEventType::KeyUp] {
                    let mut params = DispatchKeyEventParams::new(kind.clone());
                    params.key = Some(a.key.clone());
                    params.code = Some(a.key.clone());
                    params.windows_virtual_key_code = code;
                    params.native_virtual_key_code = code;
                    if kind == DispatchKeyEventType::KeyDown {
                        params.text = text.clone();
                    }
                    self.exec("press", params).await?;
                }
            }
            Action::Scroll(a) => match (&a.selector, a.to_bottom == Some(true)) {
                (Some(selector), to_bottom) => {
                    appear(selector).await?;
                    let then = if to_bottom { "el.scrollTop = el.scrollHeight; return true;" } else { "return true;" };
                    if self.eval(&element(selector, then)).await?.is_null() {
                        return Err(missing(selector));
                    }
                }
                (None, true) => {
                    self.eval(
                        "scrollTo({top: Math.max(document.documentElement.scrollHeight, \
                         document.body ? document.body.scrollHeight : 0), behavior: 'instant'})",
                    )
                    .await?;
                }
                (None, false) => {
                    self.eval(&format!("scrollTo({{top: {}, behavior: 'instant'}})", a.y.unwrap_or(0))).await?;
                }
            },
            Action::Wait(a) => {
                let limit = Duration::from_millis(a.timeout.filter(|t| *t > 0).unwrap_or(DEFAULT_WAIT_MS) as u64);
                if let Some(ms) = a.duration {
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                }
                if let Some(selector) = &a.selector {
                    self.wait_for_selector(selector, limit, &field).await?;
                }
                if a.network_idle == Some(true) {
                    self.network_idle(limit, &field).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits until no request the page started since the wait began is in flight, and none has
    /// started or ended for 500 ms; fails after `limit`. (Requests already in flight when the
    /// wait begins are not seen: the wait follows DevTools' network events from then on.)
    async fn network_idle(&self, limit: Duration, field: &str) -> Result<(), RenderError> {
        let listen = async {
            let started = self.page.event_listener::<EventRequestWillBeSent>().await?;
            let finished = self.page.event_listener::<EventLoadingFinished>().await?;
            let failed = self.page.event_listener::<EventLoadingFailed>().await?;
            Ok((started, finished, failed))
        };
        let (mut started, mut finished, mut failed) = step("listen to the network", STEP_TIMEOUT, listen).await?;
        let quiet = Duration::from_millis(500);
        let deadline = tokio::time::Instant::now() + limit;
        let mut pending = std::collections::HashSet::new();
        let mut last = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if pending.is_empty() && now >= last + quiet {
                return Ok(());
            }
            if now >= deadline {
                return Err(RenderError::new(
                    ErrorCode::Timeout,
                    format!(
                        "{field}: the network was still busy after {:.1} s ({} requests in flight)",
                        limit.as_secs_f64(),
                        pending.len()
                    ),
                ));
            }
            let wake = if pending.is_empty() { (last + quiet).min(deadline) } else { deadline };
            tokio::select! {
                Some(e) = started.next() => { pending.insert(e.request_id.inner().clone()); last = tokio::time::Instant::now(); }
                Some(e) = finished.next() => { pending.remove(e.request_id.inner()); last = tokio::time::Instant::now(); }
                Some(e) = failed.next() => { pending.remove(e.request_id.inner()); last = tokio::time::Instant::now(); }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// One output and, for images and PDFs, its pixel size.
    async fn produce(
        &self,
        spec: &OutputSpec,
        screen: &Screen,
    ) -> Result<(OutputRow, Option<(i64, i64)>), RenderError> {
        let id = spec.id.clone().unwrap_or_else(|| spec.output_type.as_str().to_string());
        let row = |content_type: &str, bytes: Vec<u8>, metadata: Value| OutputRow {
            output_id: id.clone(),
            output_type: spec.output_type.as_str().to_string(),
            content_type: content_type.to_string(),
            bytes,
            metadata,
        };
        match spec.output_type {
            OutputType::Screenshot => {
                let (bytes, width, height, content_type) = self.screenshot(spec, screen).await?;
                Ok((row(content_type, bytes, json!({"width": width, "height": height})), Some((width, height))))
            }
            OutputType::Pdf => {
                let bytes = self.pdf(spec).await?;
                Ok((row("application/pdf", bytes, json!({})), Some((screen.width, screen.height))))
            }
            OutputType::Html => {
                let main = spec.main_content_only == Some(true);
                let clean = spec.clean == Some(true);
                let html = if main {
                    let html = self.html(spec.selector.as_deref(), Some(document::MAX_DEPTH), clean).await?;
                    document::convert(html, self.url.to_string(), Conversion::MainContent).await?
                } else {
                    self.html(spec.selector.as_deref(), None, clean).await?
                };
                Ok((row("text/html; charset=utf-8", html.into_bytes(), json!({})), None))
            }
            OutputType::Markdown => {
                // The body only: the head's title and scripts are not content.
                let selector = spec.selector.as_deref().unwrap_or("body");
                let html = self.html(Some(selector), Some(document::MAX_DEPTH), false).await?;
                // The markdown is checked against the output limit like any output; its HTML may
                // be larger (see `html`).
                let conversion =
                    if spec.main_content_only == Some(true) { Conversion::MainMarkdown } else { Conversion::Markdown };
                let markdown = document::convert(html, self.url.to_string(), conversion).await?;
                Ok((row("text/markdown; charset=utf-8", markdown.into_bytes(), json!({})), None))
            }
            OutputType::Text if spec.main_content_only == Some(true) => {
                let html = self.html(spec.selector.as_deref(), Some(document::MAX_DEPTH), false).await?;
                let text = document::convert(html, self.url.to_string(), Conversion::MainText).await?;
                Ok((row("text/plain; charset=utf-8", text.into_bytes(), json!({})), None))
            }
            OutputType::Text => {
                let element = match &spec.selector {
                    Some(s) => format!("document.querySelector({})", js(s)),
                    None => "(document.body || {innerText: ''})".to_string(),
                };
                let limit = self.settings.max_output_bytes;
                // Measured in the page: only a text within the output limit crosses DevTools.
                let script = format!(
                    "(() => {{ const el = {element}; if (!el) return null; const text = String(el.innerText); \
                       return text.length > {limit} ? {{tooLarge: text.length}} : {{text}}; }})()"
                );
                let mut found = self.read(&script).await?;
                if let Some(length) = found["tooLarge"].as_u64() {
                    return Err(too_large("text", length, limit));
                }
                let Value::String(text) = found["text"].take() else { return Err(self.selector_missing(spec)) };
                Ok((row("text/plain; charset=utf-8", text.into_bytes(), json!({})), None))
            }
            OutputType::Json => {
                // Parsed and written again: the same bytes as before it was measured in the page.
                let data: Value = serde_json::from_str(&self.extract(spec.schema.as_ref()).await?).map_err(|e| {
                    RenderError::new(ErrorCode::RenderFailed, format!("the page's json output is not JSON: {e}"))
                })?;
                let bytes = serde_json::to_vec(&data).expect("JSON values serialise");
                Ok((row("application/json", bytes, json!({})), None))
            }
        }
    }

    fn selector_missing(&self, spec: &OutputSpec) -> RenderError {
        RenderError::new(
            ErrorCode::SelectorNotFound,
            format!(
                "output \"{}\": no element matches \"{}\"",
                spec.id.as_deref().unwrap_or_default(),
                spec.selector.as_deref().unwrap_or_default()
            ),
        )
    }

    async fn screenshot(
        &self,
        spec: &OutputSpec,
        screen: &Screen,
    ) -> Result<(Vec<u8>, i64, i64, &'static str), RenderError> {
        let image_format = spec.image_format();
        let (format, content_type) = match image_format {
            Format::Jpeg => (CaptureScreenshotFormat::Jpeg, "image/jpeg"),
            Format::Webp => (CaptureScreenshotFormat::Webp, "image/webp"),
            Format::Png | Format::Pdf => (CaptureScreenshotFormat::Png, "image/png"),
        };
        let full_page = spec.selector.is_none() && spec.full_page == Some(true);
        if full_page && self.opts.freeze_fixed == Some(true) {
            self.freeze_fixed().await?;
        }
        let stitch = full_page && self.opts.full_page_mode == Some(FullPageMode::Stitch);
        let clip = if let Some(selector) = &spec.selector {
            let rect = self
                .eval(&format!(
                    "(() => {{ const el = document.querySelector({}); if (!el) return null; el.scrollIntoView({{block: 'start'}}); \
                     const r = el.getBoundingClientRect(); return {{x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}}; }})()",
                    js(selector)
                ))
                .await?;
            if rect.is_null() {
                return Err(self.selector_missing(spec));
            }
            let f = |k: &str| rect[k].as_f64().unwrap_or(0.0);
            if f("width") < 1.0 || f("height") < 1.0 {
                return Err(RenderError::new(
                    ErrorCode::SelectorNotFound,
                    format!("\"{selector}\" matches an element with no size"),
                ));
            }
            Some(Viewport { x: f("x"), y: f("y"), width: f("width"), height: f("height"), scale: 1.0 })
        } else if full_page {
            let height = self
                .eval("Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)")
                .await?
                .as_f64()
                .unwrap_or(screen.height as f64);
            let mut cap = self.opts.max_height.unwrap_or(DEFAULT_MAX_HEIGHT) as f64;
            if stitch {
                let sections = self.opts.max_sections.unwrap_or(DEFAULT_MAX_SECTIONS);
                cap = cap.min((sections * screen.height) as f64);
            }
            Some(Viewport { x: 0.0, y: 0.0, width: screen.width as f64, height: height.clamp(1.0, cap), scale: 1.0 })
        } else {
            None
        };
        let (css_w, css_h) = clip.as_ref().map_or((screen.width as f64, screen.height as f64), |c| (c.width, c.height));
        let pixels = (css_w * screen.scale).ceil() as u64 * (css_h * screen.scale).ceil() as u64;
        if pixels > self.settings.max_capture_pixels {
            return Err(RenderError::new(
                ErrorCode::CaptureTooLarge,
                format!(
                    "the capture would be {:.0} x {:.0} pixels ({pixels}), more than the limit of {}; \
                     lower maxHeight, the viewport or deviceScaleFactor",
                    css_w * screen.scale,
                    css_h * screen.scale,
                    self.settings.max_capture_pixels
                ),
            ));
        }
        let quality = spec.quality.unwrap_or(DEFAULT_QUALITY);
        if stitch {
            let bytes = self.stitch(screen, css_h, image_format, quality).await?;
            let px = |css: f64| (css * screen.scale).round() as i64;
            return Ok((bytes, px(css_w), px(css_h), content_type));
        }
        let mut params = CaptureScreenshotParams::builder().format(format.clone()).from_surface(true);
        if format != CaptureScreenshotFormat::Png {
            params = params.quality(quality);
        }
        if let Some(clip) = clip {
            params = params.clip(clip).capture_beyond_viewport(true);
        }
        let shot = step("capture screenshot", CAPTURE_TIMEOUT, self.page.execute(params.build())).await?;
        let bytes = decode(shot.result.data.as_ref())?;
        let px = |css: f64| (css * screen.scale).round() as i64;
        Ok((bytes, px(css_w), px(css_h), content_type))
    }

    async fn pdf(&self, spec: &OutputSpec) -> Result<Vec<u8>, RenderError> {
        let (w, h) = spec.paper_format.unwrap_or(PaperFormat::A4).inches();
        let params = PrintToPdfParams::builder()
            .landscape(spec.landscape.unwrap_or(false))
            .print_background(spec.print_background.unwrap_or(true))
            .paper_width(w)
            .paper_height(h)
            .build();
        let pdf = step("print to PDF", CAPTURE_TIMEOUT, self.page.execute(params)).await?;
        decode(pdf.result.data.as_ref())
    }

    /// The element's (or the document's) HTML, refused in the page, before it crosses the DevTools
    /// connection, when it is larger than the output limit (four times that when it is the input
    /// of a markdown conversion, `max_depth` set: markup is most of a page's HTML) or nested deeper
    /// than `max_depth`.
    ///
    /// `clean` takes the HTML of a copy without scripts, styles, comments, frames, event-handler
    /// and style attributes and `javascript:` URLs: the content's markup only.
    async fn html(&self, selector: Option<&str>, max_depth: Option<usize>, clean: bool) -> Result<String, RenderError> {
        let limit =
            if max_depth.is_some() { self.settings.max_output_bytes * 4 } else { self.settings.max_output_bytes };
        let element = match selector {
            Some(s) => format!("document.querySelector({})", js(s)),
            None => "document.documentElement".to_string(),
        };
        let script = format!(
            "(() => {{ const el = {element}; if (!el) return null; \
               const maxDepth = {depth}; \
               if (maxDepth > 0) {{ const stack = [[el, 1]]; \
                 while (stack.length) {{ const [n, d] = stack.pop(); \
                   if (d > maxDepth) return {{tooDeep: true}}; \
                   for (let c = n.firstElementChild; c; c = c.nextElementSibling) stack.push([c, d + 1]); }} }} \
               const html = ({clean} ? pgshotClean(el) : el).outerHTML; \
               return html.length > {limit} ? {{tooLarge: html.length}} : {{html}}; }})()",
            depth = max_depth.unwrap_or(0),
        );
        let script = if clean { format!("{CLEAN_SCRIPT}; {script}") } else { script };
        // In a world of the worker's own: the depth and size checks use the browser's own DOM
        // getters, not ones the page redefined to pass them.
        let mut found = self.read(&script).await?;
        // Taken, not copied: it may be several times the output limit.
        if let Value::String(html) = found["html"].take() {
            return Ok(html);
        }
        if found["tooDeep"] == Value::Bool(true) {
            return Err(RenderError::new(
                ErrorCode::DocumentTooLarge,
                format!("the document is nested more than {} elements deep", max_depth.unwrap_or(0)),
            ));
        }
        if let Some(length) = found["tooLarge"].as_u64() {
            return Err(too_large("document's HTML", length, limit));
        }
        Err(RenderError::new(
            ErrorCode::SelectorNotFound,
            format!("no element matches \"{}\"", selector.unwrap_or_default()),
        ))
    }

    /// The json output, serialised: the fields of `schema`, or the page's title, description,
    /// headings and links when it has none. Serialised and measured in the page, so that only an
    /// output within the limit crosses DevTools.
    async fn extract(&self, schema: Option<&BTreeMap<String, JsonField>>) -> Result<String, RenderError> {
        let value = match schema {
            Some(fields) => format!(
                "(() => {{ const out = {{title: document.title, url: location.href, data: {{}}}}; \
                 for (const [name, f] of Object.entries({})) {{ \
                   const take = e => {{ switch (f.type || 'text') {{ \
                     case 'html': return e.innerHTML; \
                     case 'attribute': return e.getAttribute(f.attribute); \
                     case 'number': {{ const m = (e.textContent || '').match(/-?\\d[\\d,]*(\\.\\d+)?/); \
                       return m ? Number(m[0].replace(/,/g, '')) : null; }} \
                     default: return e.textContent.trim(); }} }}; \
                   out.data[name] = f.multiple \
                     ? Array.from(document.querySelectorAll(f.selector), take) \
                     : (e => e ? take(e) : null)(document.querySelector(f.selector)); }} \
                 return out; }})()",
                serde_json::to_string(fields).expect("a schema serialises")
            ),
            None => "({title: document.title, url: location.href, \
                      description: (document.querySelector('meta[name=description]') || {}).content || null, \
                      headings: Array.from(document.querySelectorAll('h1,h2,h3'), e => ({level: +e.tagName[1], text: e.textContent.trim()})), \
                      links: Array.from(document.querySelectorAll('a[href]'), a => ({text: a.textContent.trim(), href: a.href}))})"
                .to_string(),
        };
        let limit = self.settings.max_output_bytes;
        let script = format!(
            "(() => {{ const json = JSON.stringify({value}); \
               return json.length > {limit} ? {{tooLarge: json.length}} : {{json}}; }})()"
        );
        let mut found = self.read(&script).await?;
        if let Some(length) = found["tooLarge"].as_u64() {
            return Err(too_large("json output", length, limit));
        }
        match found["json"].take() {
            Value::String(json) => Ok(json),
            _ => Err(RenderError::new(ErrorCode::RenderFailed, "the json output could not be read from the page")),
        }
    }

    /// Fixed and sticky elements keep the place they have in the first viewport: fixed ones
    /// become absolute at that place in the document, sticky ones stay in the flow. A full-page
    /// capture then shows each once (not once per stitched section, nor moved to the bottom).
    async fn freeze_fixed(&self) -> Result<(), RenderError> {
        self.eval(
            "(() => { scrollTo({top: 0, left: 0, behavior: 'instant'}); \
               const found = []; \
               for (const el of document.querySelectorAll('body *')) { \
                 const p = getComputedStyle(el).position; if (p === 'fixed' || p === 'sticky') found.push([el, p]); } \
               const set = (el, k, v) => el.style.setProperty(k, v, 'important'); \
               for (const [el, p] of found) { \
                 if (p === 'sticky') { set(el, 'position', 'relative'); set(el, 'top', 'auto'); set(el, 'bottom', 'auto'); continue; } \
                 const r = el.getBoundingClientRect(); \
                 set(el, 'position', 'absolute'); set(el, 'right', 'auto'); set(el, 'bottom', 'auto'); \
                 set(el, 'width', r.width + 'px'); set(el, 'height', r.height + 'px'); \
                 set(el, 'top', r.top + 'px'); set(el, 'left', r.left + 'px'); \
                 const a = el.getBoundingClientRect(); \
                 set(el, 'top', (2 * r.top - a.top) + 'px'); set(el, 'left', (2 * r.left - a.left) + 'px'); } \
               return found.length; })()",
        )
        .await?;
        Ok(())
    }

    /// A full page captured one viewport at a time, scrolling as a reader would (`scrollInterval`
    /// between scrolls lets lazy content load), the sections joined into one image of `height`
    /// CSS pixels.
    async fn stitch(&self, screen: &Screen, height: f64, format: Format, quality: i64) -> Result<Vec<u8>, RenderError> {
        let interval = Duration::from_millis(self.opts.scroll_interval.unwrap_or(DEFAULT_SCROLL_INTERVAL_MS) as u64);
        let view = screen.height as f64;
        let sections = (height / view).ceil().max(1.0) as usize;
        let mut captures = Vec::with_capacity(sections);
        for i in 0..sections {
            let want = i as f64 * view;
            let at = self
                .eval(&format!(
                    "(async () => {{ scrollTo({{top: {want}, left: 0, behavior: 'instant'}}); \
                       await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); return scrollY; }})()"
                ))
                .await?
                .as_f64()
                .unwrap_or(want);
            tokio::time::sleep(interval).await;
            let params =
                CaptureScreenshotParams::builder().format(CaptureScreenshotFormat::Png).from_surface(true).build();
            let shot = step("capture a section", CAPTURE_TIMEOUT, self.page.execute(params)).await?;
            // Where this section's top is in the joined image, and where its own top is in the
            // document (the last section stops at the page's end and overlaps the one before).
            captures.push((want, at, decode(shot.result.data.as_ref())?));
        }
        self.eval("scrollTo({top: 0, left: 0, behavior: 'instant'})").await?;
        let scale = screen.scale;
        let (width_px, height_px) = ((screen.width as f64 * scale).round() as u32, (height * scale).round() as u32);
        tokio::task::spawn_blocking(move || join_sections(captures, width_px, height_px, scale, format, quality))
            .await
            .map_err(|e| RenderError::new(ErrorCode::InternalError, format!("joining the sections failed: {e}")))?
    }

    /// Evaluates `expression` in the page and returns its value (promises are awaited).
    async fn eval(&self, expression: &str) -> Result<Value, RenderError> {
        self.evaluate_in(expression, None).await
    }

    /// Evaluates `expression` in an isolated world of the page's main frame, made for this read:
    /// it shares the page's DOM but none of its JavaScript, so whatever the page redefined
    /// (`Element.prototype.outerHTML`, `firstElementChild`, `innerText`, `document.title`,
    /// `JSON.stringify`) is the browser's own there. Everything read from the page for an output
    /// or the job's metadata is read so.
    async fn read(&self, expression: &str) -> Result<Value, RenderError> {
        // A page target's main frame has the target's id.
        let frame = FrameId::new(self.page.target_id().inner().clone());
        let world =
            CreateIsolatedWorldParams::builder().frame_id(frame).world_name("pgshot").build().expect("frame_id is set");
        let world = self.exec("make an isolated world", world).await?;
        self.evaluate_in(expression, Some(world.execution_context_id)).await
    }

    async fn evaluate_in(
        &self,
        expression: &str,
        context: Option<chromiumoxide::cdp::js_protocol::runtime::ExecutionContextId>,
    ) -> Result<Value, RenderError> {
        let mut params = EvaluateParams::builder()
            .expression(expression)
            .return_by_value(true)
            .await_promise(true)
            .build()
            .expect("expression is set");
        params.context_id = context;
        let result = self.exec("evaluate", params).await?;
        if let Some(ex) = result.exception_details {
            let description = ex.exception.and_then(|e| e.description).unwrap_or(ex.text);
            let code = if description.contains("is not a valid selector") {
                ErrorCode::SelectorNotFound
            } else {
                ErrorCode::RenderFailed
            };
            return Err(RenderError::new(code, format!("page script failed: {description}")));
        }
        Ok(result.result.value.unwrap_or(Value::Null))
    }
}

/// Longest `metadata.title` kept, in characters, and `metadata.finalUrl`.
const MAX_TITLE_CHARS: usize = 1000;
const MAX_URL_CHARS: usize = 8192;

/// `s` cut to `max` characters.
fn truncated(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// An output measured in the page over the limit.
fn too_large(what: &str, length: u64, limit: usize) -> RenderError {
    RenderError::new(
        ErrorCode::OutputTooLarge,
        format!("the {what} is {length} characters, more than the limit of {limit} bytes"),
    )
}

/// Copies each section's rows into one image and encodes it. Sections are (top in the joined
/// image, top in the document, PNG), all in CSS pixels.
fn join_sections(
    captures: Vec<(f64, f64, Vec<u8>)>,
    width: u32,
    height: u32,
    scale: f64,
    format: Format,
    quality: i64,
) -> Result<Vec<u8>, RenderError> {
    use image::{GenericImage, ImageEncoder};
    let failed = |what: &str, e: image::ImageError| RenderError::new(ErrorCode::RenderFailed, format!("{what}: {e}"));
    let mut joined = image::RgbaImage::new(width, height);
    for (want, at, png) in captures {
        let section = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .map_err(|e| failed("a section is not a PNG", e))?
            .into_rgba8();
        let dest_top = (want * scale).round() as u32;
        let skip = ((want - at).max(0.0) * scale).round() as u32;
        if dest_top >= height || skip >= section.height() {
            continue;
        }
        let rows = (section.height() - skip).min(height - dest_top);
        let cols = section.width().min(width);
        let part = image::imageops::crop_imm(&section, 0, skip, cols, rows).to_image();
        joined.copy_from(&part, 0, dest_top).map_err(|e| failed("a section does not fit", e))?;
    }
    let mut out = Vec::new();
    let encoded = match format {
        Format::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100) as u8)
            .write_image(
                &image::DynamicImage::ImageRgba8(joined).into_rgb8(),
                width,
                height,
                image::ExtendedColorType::Rgb8,
            ),
        // The image crate writes lossless WebP only: `quality` does not apply to a stitched WebP.
        Format::Webp => image::codecs::webp::WebPEncoder::new_lossless(&mut out).write_image(
            &joined,
            width,
            height,
            image::ExtendedColorType::Rgba8,
        ),
        Format::Png | Format::Pdf => image::codecs::png::PngEncoder::new(&mut out).write_image(
            &joined,
            width,
            height,
            image::ExtendedColorType::Rgba8,
        ),
    };
    encoded.map_err(|e| failed("encoding the joined image failed", e))?;
    Ok(out)
}

/// Defines `pgshotClean(el)`: a copy of `el` without what is not content (see `Job::html`).
const CLEAN_SCRIPT: &str = "const pgshotClean = (el) => { const c = el.cloneNode(true); \
  c.querySelectorAll('script, style, noscript, template, iframe, frame, object, embed, link, meta, base') \
    .forEach(n => n.remove()); \
  const comments = [], walk = document.createTreeWalker(c, NodeFilter.SHOW_COMMENT); \
  while (walk.nextNode()) comments.push(walk.currentNode); comments.forEach(n => n.remove()); \
  for (const n of [c, ...c.querySelectorAll('*')]) for (const a of Array.from(n.attributes)) \
    if (/^on/i.test(a.name) || a.name === 'style' || /^\\s*javascript:/i.test(a.value)) n.removeAttribute(a.name); \
  return c; }";

/// What `stealthMode` changes in the page before its scripts run (the user agent is set through
/// DevTools, see `Job::stealth`): `navigator.webdriver` reads false as in a browser nobody drives,
/// and plugins, languages and `window.chrome` look like a desktop Chrome's when headless left
/// them empty.
const STEALTH_SCRIPT: &str = "(() => { \
  const def = (o, k, get) => { try { Object.defineProperty(o, k, {get, configurable: true}); } catch (e) {} }; \
  def(Navigator.prototype, 'webdriver', () => false); \
  if (!navigator.languages || navigator.languages.length === 0) def(Navigator.prototype, 'languages', () => ['en-US', 'en']); \
  if (!navigator.plugins || navigator.plugins.length === 0) { \
    const names = ['PDF Viewer', 'Chrome PDF Viewer', 'Chromium PDF Viewer', 'Microsoft Edge PDF Viewer', 'WebKit built-in PDF']; \
    const list = Object.create(PluginArray.prototype); \
    names.forEach((name, i) => { const p = Object.create(Plugin.prototype); def(p, 'name', () => name); \
      def(p, 'filename', () => 'internal-pdf-viewer'); def(p, 'description', () => 'Portable Document Format'); \
      def(p, 'length', () => 0); def(list, i, () => p); }); \
    def(list, 'length', () => names.length); \
    list.item = i => list[i] || null; list.namedItem = n => names.includes(n) ? list[names.indexOf(n)] : null; \
    def(Navigator.prototype, 'plugins', () => list); } \
  if (!window.chrome) window.chrome = {runtime: {}}; })()";

struct PageInfo {
    title: Option<String>,
    final_url: String,
    http_status: Option<i64>,
}

fn format_name(spec: &OutputSpec) -> String {
    match spec.output_type {
        OutputType::Pdf => "PDF".into(),
        _ => match spec.image_format() {
            Format::Jpeg => "JPEG".into(),
            Format::Webp => "WEBP".into(),
            _ => "PNG".into(),
        },
    }
}

fn decode(data: &str) -> Result<Vec<u8>, RenderError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| RenderError::new(ErrorCode::RenderFailed, format!("Chromium sent undecodable data: {e}")))
}

/// A JavaScript string literal (JSON strings are valid JavaScript).
fn js(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

/// Windows virtual key code and typed text for `Input.dispatchKeyEvent`.
fn key_code(key: &str) -> (Option<i64>, Option<String>) {
    let code = match key {
        "Enter" => return (Some(13), Some("\r".into())),
        "Tab" => 9,
        "Escape" => 27,
        "Backspace" => 8,
        "Delete" => 46,
        " " | "Space" => return (Some(32), Some(" ".into())),
        "ArrowLeft" => 37,
        "ArrowUp" => 38,
        "ArrowRight" => 39,
        "ArrowDown" => 40,
        "PageUp" => 33,
        "PageDown" => 34,
        "Home" => 36,
        "End" => 35,
        k if k.chars().count() == 1 => {
            let c = k.chars().next().expect("one char");
            return (Some(i64::from(c.to_ascii_uppercase() as u32)), Some(k.to_string()));
        }
        _ => return (None, None),
    };
    (Some(code), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> ScreenshotOptions {
        ScreenshotOptions::from_json(&v).unwrap()
    }

    #[test]
    fn device_presets_fill_what_the_viewport_leaves_out() {
        let s = Screen::of(&opts(json!({"device": "iPhone 14", "viewport": {"height": 700}})));
        assert_eq!((s.width, s.height, s.scale, s.mobile, s.touch), (390, 700, 3.0, true, true));
        let d = Screen::of(&opts(json!({})));
        assert_eq!((d.width, d.height, d.scale, d.mobile), (1920, 1080, 1.0, false));
    }

    #[test]
    fn block_level_implies_ad_and_banner_blocking() {
        assert_eq!(blocking(&opts(json!({}))), (false, false));
        assert_eq!(blocking(&opts(json!({"blockAds": true}))), (true, false));
        assert_eq!(blocking(&opts(json!({"blockPopups": true}))), (false, true));
        assert_eq!(blocking(&opts(json!({"blockLevel": "normal"}))), (true, false));
        assert_eq!(blocking(&opts(json!({"blockLevel": "pro_plus"}))), (true, true));
    }

    #[test]
    fn single_output_follows_the_top_level_options() {
        let specs = output_specs(&opts(json!({"format": "jpeg", "quality": 50, "fullPage": true})));
        assert_eq!(specs.len(), 1);
        assert_eq!(
            (specs[0].output_type, specs[0].image_format(), specs[0].quality),
            (OutputType::Screenshot, Format::Jpeg, Some(50))
        );
        assert_eq!(output_specs(&opts(json!({"format": "pdf"})))[0].output_type, OutputType::Pdf);
        assert_eq!(timeout_error(5000).message, "Page load timed out after 5 seconds");
    }
}
