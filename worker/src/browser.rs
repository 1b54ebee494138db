//! One long-lived Chromium per worker, replaced after a number of renders or when it dies.
//!
//! chromiumoxide's handler must be polled on its own task for as long as the browser lives, and
//! must keep being polled after an error: a handler that stops makes every later command hang.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, GetVersionParams, SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams, SetEmulatedMediaParams,
};
use chromiumoxide::cdp::browser_protocol::inspector::{self, EventTargetCrashed};
use chromiumoxide::cdp::browser_protocol::page::{
    DialogType, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CloseTargetParams, CreateBrowserContextParams, CreateTargetParams, EventTargetCreated, GetTargetsParams, TargetId,
};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::Page;
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::devtools_pipe;
use crate::egress::{Egress, Rules};
use crate::launcher::Launcher;

const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const TAB_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_POLL: Duration = Duration::from_millis(250);
/// How long the browser process itself may take to answer a trivial call before it counts as hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Chromium's switches, without their leading `--` (chromiumoxide adds it: a switch given with its
/// dashes reaches Chromium as `----switch`, which Chromium ignores). chromiumoxide's defaults
/// (puppeteer's) are written out here without `disable-popup-blocking`: a page that opens windows
/// in a loop is refused by the popup blocker.
const CHROMIUM_ARGS: &[&str] = &[
    "disable-background-networking",
    "disable-background-timer-throttling",
    "disable-backgrounding-occluded-windows",
    "disable-breakpad",
    "disable-client-side-phishing-detection",
    "disable-component-extensions-with-background-pages",
    "disable-default-apps",
    "disable-dev-shm-usage",
    "disable-features=TranslateUI",
    "disable-hang-monitor",
    "disable-ipc-flooding-protection",
    "disable-prompt-on-repost",
    "disable-renderer-backgrounding",
    "disable-sync",
    "force-color-profile=srgb",
    "metrics-recording-only",
    "no-first-run",
    "enable-automation",
    "password-store=basic",
    "use-mock-keychain",
    "lang=en_US",
    "disable-gpu",
    "disable-component-update",
    "disable-quic",
    "disable-domain-reliability",
    "no-default-browser-check",
    // Without this, loopback skips even the per-context proxies the jobs use, and with
    // it the SSRF policy (the contexts' `proxyBypassList` alone is not enough).
    "proxy-bypass-list=<-loopback>",
    // WebRTC may open UDP sockets that bypass the context's proxy.
    "force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "webrtc-ip-handling-policy=disable_non_proxied_udp",
];

/// The viewport and colour scheme every tab is opened with: a job that wants these (the default
/// request) skips setting them, which costs about 100 ms on the critical path.
pub const TAB_VIEWPORT: (i64, i64, f64) = (1920, 1080, 1.0);

/// A fresh, isolated browser context with one blank page, behind its own egress proxy.
pub struct Tab {
    pub egress: Egress,
    pub context: BrowserContextId,
    pub page: Page,
    /// Dismisses the page's dialogs and reports its renderer's crash, for as long as the page lives.
    guard: JoinHandle<()>,
    crashed: tokio::sync::watch::Receiver<bool>,
}

impl Tab {
    /// Resolves when the page's renderer process crashes (the browser and other pages live on).
    pub async fn crashed(&self) {
        let _ = self.crashed.clone().wait_for(|c| *c).await;
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        self.guard.abort();
    }
}

/// A running Chromium and the task that drives its DevTools connection.
pub struct Chrome {
    browser: Mutex<Option<Browser>>,
    /// The browser process (started by the worker, not by chromiumoxide: see devtools_pipe).
    child: Mutex<Option<tokio::process::Child>>,
    bridge: JoinHandle<()>,
    handler: JoinHandle<()>,
    /// Not to be given new jobs: it exited, or a call went unanswered.
    dead: Arc<AtomicBool>,
    /// Set when the worker closes the browser itself: its connection ending then is no death.
    closing: Arc<AtomicBool>,
    /// Set once Chromium's process or its DevTools connection is gone: renders in it cannot finish.
    exited: tokio::sync::watch::Sender<bool>,
    exit_watch: JoinHandle<()>,
    renders: AtomicU32,
    user_data_dir: PathBuf,
    /// Tabs opened ahead of the jobs that will use them, so that a job does not wait for its
    /// context and page to be created.
    spares: std::sync::Mutex<Vec<Tab>>,
    spare_target: usize,
    replenishing: AtomicBool,
}

impl Chrome {
    async fn launch(
        launcher: &Launcher,
        generation: u32,
        spare_target: usize,
        page_heap_mb: u32,
    ) -> Result<Chrome, String> {
        let user_data_dir = profile_dir(generation, launcher.render_as)?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|switch| format!("--{switch}")).collect();
        args.extend(
            [
                format!("--js-flags=--max-old-space-size={page_heap_mb}"),
                "--headless".into(),
                "--hide-scrollbars".into(),
                "--mute-audio".into(),
                "--disable-extensions".into(),
                format!("--user-data-dir={}", user_data_dir.display()),
            ]
            .into_iter()
            .chain((!launcher.sandbox).then(|| "--no-sandbox".to_string())),
        );
        // Whatever Chromium keeps in its home (the font cache) goes in its own profile.
        let home = [("HOME", user_data_dir.display().to_string())];
        let piped = devtools_pipe::launch(&launcher.executable, &args, &home).await?;
        let pid = piped.child.id();
        let handler_config = HandlerConfig {
            // A certificate error fails the navigation (chromiumoxide ignores them by default).
            ignore_https_errors: false,
            ignore_invalid_messages: true,
            viewport: None,
            context_ids: Vec::new(),
            request_timeout: Duration::from_secs(30),
            request_intercept: false,
            cache_enabled: true,
        };
        let connected =
            tokio::time::timeout(LAUNCH_TIMEOUT, Browser::connect_with_config(piped.ws_url.clone(), handler_config));
        let (browser, mut handler) = match connected.await {
            Ok(Ok(connected)) => connected,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no DevTools answer within {LAUNCH_TIMEOUT:?}"),
                };
                piped.bridge.abort();
                let _ = std::fs::remove_dir_all(&user_data_dir);
                return Err(format!("cannot start {}: {why}", launcher.executable.display()));
            }
        };
        let child = piped.child;
        let dead = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let exited = tokio::sync::watch::Sender::new(false);
        let gone = {
            let (dead, exited, closing) = (dead.clone(), exited.clone(), closing.clone());
            move |why: &str| {
                dead.store(true, Ordering::SeqCst);
                if !exited.send_replace(true) && !closing.load(Ordering::SeqCst) {
                    tracing::warn!(why, "chromium is gone");
                }
            }
        };
        let on_handler_end = gone.clone();
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                match event {
                    // A broken WebSocket does not end the handler's stream, and commands already
                    // sent would wait for their own timeouts: the connection is gone now.
                    Err(e @ chromiumoxide::error::CdpError::Ws(_)) => {
                        on_handler_end(&format!("devtools connection: {e}"))
                    }
                    Err(e) => tracing::debug!(error = %e, "chromium handler error"),
                    Ok(()) => {}
                }
            }
            on_handler_end("devtools connection closed");
        });
        // A killed Chromium may leave its socket looking open for a while; its process says at once.
        let exit_watch = tokio::spawn(async move {
            let Some(pid) = pid else { return };
            loop {
                tokio::time::sleep(EXIT_POLL).await;
                if process_exited(pid) {
                    gone("the chromium process exited");
                    return;
                }
            }
        });
        tracing::info!(generation, "chromium started");
        Ok(Chrome {
            browser: Mutex::new(Some(browser)),
            child: Mutex::new(Some(child)),
            bridge: piped.bridge,
            handler,
            dead,
            closing,
            exited,
            exit_watch,
            renders: AtomicU32::new(0),
            user_data_dir,
            spares: std::sync::Mutex::new(Vec::new()),
            spare_target,
            replenishing: AtomicBool::new(false),
        })
    }

    /// A tab for one job, with the job's egress rules: a spare one if there is one. The spare it
    /// leaves behind is replaced when a render ends ([`Chrome::replenish`]), not now: opening a
    /// context and page costs CPU that the render just starting needs more.
    pub async fn take_tab(self: &Arc<Self>, rules: Rules) -> Result<Tab, String> {
        let spare = self.spares.lock().unwrap().pop();
        let tab = match spare {
            Some(tab) => tab,
            None => {
                self.replenish();
                self.open_tab(rules.clone()).await?
            }
        };
        tab.egress.set_rules(rules);
        Ok(tab)
    }

    /// Opens spare tabs in the background until there is one per render slot and one more (for
    /// the job that arrives while the last render's tab is replaced).
    pub fn replenish(self: &Arc<Self>) {
        if self.replenishing.swap(true, Ordering::SeqCst) {
            return;
        }
        let chrome = self.clone();
        tokio::spawn(async move {
            while chrome.is_alive() && chrome.spares.lock().unwrap().len() < chrome.spare_target {
                match chrome.open_tab(Rules::default()).await {
                    Ok(tab) => chrome.spares.lock().unwrap().push(tab),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not open a spare tab");
                        break;
                    }
                }
            }
            chrome.replenishing.store(false, Ordering::SeqCst);
        });
    }

    async fn open_tab(&self, rules: Rules) -> Result<Tab, String> {
        let egress = Egress::start(rules).await.map_err(|e| format!("cannot start the egress proxy: {e}"))?;
        let params = CreateBrowserContextParams::builder()
            .dispose_on_detach(true)
            .proxy_server(egress.proxy_server())
            .proxy_bypass_list("<-loopback>")
            .build();
        let context = self.timed("create a browser context", async |b| b.create_browser_context(params).await).await?;
        let target = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .build()
            .expect("url is set");
        let deny = SetDownloadBehaviorParams::builder()
            .behavior(SetDownloadBehaviorBehavior::Deny)
            .browser_context_id(context.clone())
            .build()
            .expect("behavior is set");
        let opened = async {
            // Downloads are refused in this context: a page cannot write files on the worker's disk.
            self.timed("deny downloads", async |b| b.execute(deny).await).await?;
            let page = self.timed("open a page", async |b| b.new_page(target).await).await?;
            let (width, height, scale) = TAB_VIEWPORT;
            let preset = async {
                let dialogs = page.event_listener::<EventJavascriptDialogOpening>().await?;
                let crashes = page.event_listener::<EventTargetCrashed>().await?;
                page.execute(inspector::EnableParams::default()).await?;
                page.execute(SetDeviceMetricsOverrideParams::new(width, height, scale, false)).await?;
                page.execute(
                    SetEmulatedMediaParams::builder()
                        .feature(MediaFeature::new("prefers-color-scheme", "light"))
                        .build(),
                )
                .await?;
                Ok::<_, chromiumoxide::error::CdpError>((dialogs, crashes))
            };
            match tokio::time::timeout(TAB_TIMEOUT, preset).await {
                Ok(Ok((dialogs, crashes))) => Ok((page, dialogs, crashes)),
                Ok(Err(e)) => Err(format!("prepare the tab: {e}")),
                Err(_) => Err("prepare the tab: no answer".to_string()),
            }
        };
        match opened.await {
            Ok((page, dialogs, crashes)) => {
                let (crash_tx, crashed) = tokio::sync::watch::channel(false);
                let guard = tokio::spawn(guard_page(page.clone(), dialogs, crashes, crash_tx));
                Ok(Tab { egress, context, page, guard, crashed })
            }
            Err(e) => {
                let id = context.clone();
                let _ = self.timed("dispose a browser context", async |b| b.dispose_browser_context(id).await).await;
                Err(e)
            }
        }
    }

    /// One browser-level DevTools call under [`TAB_TIMEOUT`]; no answer marks the browser dead.
    async fn timed<T>(
        &self,
        what: &str,
        f: impl AsyncFnOnce(&Browser) -> Result<T, chromiumoxide::error::CdpError>,
    ) -> Result<T, String> {
        match tokio::time::timeout(TAB_TIMEOUT, self.with(f)).await {
            Ok(Some(Ok(v))) => Ok(v),
            Ok(Some(Err(e))) => Err(format!("{what}: {e}")),
            Ok(None) => Err(format!("{what}: the browser was closed")),
            Err(_) => {
                self.mark_dead();
                Err(format!("{what}: Chromium did not answer within {TAB_TIMEOUT:?}"))
            }
        }
    }

    /// Whether the browser process itself still answers: a page that stopped answering is the
    /// page's problem, not the browser's, unless the browser is silent too.
    pub async fn answers(&self) -> bool {
        let probe = self.with(async |b| b.execute(GetVersionParams::default()).await);
        matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Some(Ok(_))))
    }

    /// Closes the tab Chromium opens at start: chromiumoxide gives it no URL, so it is the New Tab
    /// Page, whose WebUI renderers hold memory and keep loading for as long as it is open.
    async fn close_start_page(&self) {
        let targets = self.with(async |b| b.execute(GetTargetsParams::default()).await).await;
        let Some(Ok(targets)) = targets else { return };
        for info in &targets.result.target_infos {
            if info.r#type == "page" && info.url.starts_with("chrome://") {
                self.close_target(info.target_id.clone()).await;
            }
        }
    }

    /// Closes one tab or popup, giving up after [`PROBE_TIMEOUT`].
    async fn close_target(&self, id: TargetId) {
        let close = self.with(async |b| b.execute(CloseTargetParams::new(id)).await);
        let _ = tokio::time::timeout(PROBE_TIMEOUT, close).await;
    }

    /// Closes every popup a page opens (the popup blocker stops most; a page may still open one
    /// from a user gesture that an action simulates), for as long as the browser lives.
    fn close_popups(self: &Arc<Self>) {
        let chrome = Arc::downgrade(self);
        tokio::spawn(async move {
            let listen = match chrome.upgrade() {
                Some(c) => c.with(async |b| b.event_listener::<EventTargetCreated>().await).await,
                None => return,
            };
            let Some(Ok(mut created)) = listen else { return };
            while let Some(event) = created.next().await {
                let info = &event.target_info;
                if info.r#type != "page" || info.opener_id.is_none() {
                    continue;
                }
                let Some(c) = chrome.upgrade() else { return };
                let id = info.target_id.clone();
                tracing::debug!(url = %info.url, "closing a popup");
                tokio::spawn(async move { c.close_target(id).await });
            }
        });
    }

    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst) && !self.handler.is_finished()
    }

    /// Marks the browser as unusable (a CDP call timed out): the next job gets a new one.
    pub fn mark_dead(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    /// Resolves when Chromium's process or its DevTools connection is gone, which a render
    /// waiting on a page event would otherwise notice only at its own timeout.
    pub async fn exited(&self) {
        let _ = self.exited.subscribe().wait_for(|gone| *gone).await;
    }

    /// Runs `f` with the browser, unless it was closed.
    pub async fn with<T>(&self, f: impl AsyncFnOnce(&Browser) -> T) -> Option<T> {
        let guard = self.browser.lock().await;
        match guard.as_ref() {
            Some(browser) => Some(f(browser).await),
            None => None,
        }
    }

    /// Closes Chromium and reaps it (and so its children), killing it if it does not close.
    pub async fn close(&self) {
        self.spares.lock().unwrap().clear();
        // Held until the browser is gone, so that a second close (shutdown racing a retired
        // browser's own close) waits for the first instead of returning while it is half done.
        let mut guard = self.browser.lock().await;
        let Some(mut browser) = guard.take() else { return };
        // A close asked for is not a crash to report.
        self.exit_watch.abort();
        self.closing.store(true, Ordering::SeqCst);
        // Chromium's helpers (zygote, renderers, GPU) are its children, not ours: a hung or stopped
        // browser would leave them behind, so they are noted now and killed after it.
        let mut child = self.child.lock().await.take();
        let helpers = child.as_ref().and_then(|c| c.id()).map(descendants).unwrap_or_default();
        let closed = tokio::time::timeout(CLOSE_TIMEOUT, browser.close()).await;
        if let Some(child) = child.as_mut() {
            let exited = closed.is_ok_and(|c| c.is_ok())
                && tokio::time::timeout(CLOSE_TIMEOUT, child.wait()).await.is_ok_and(|w| w.is_ok());
            if !exited {
                let _ = child.kill().await;
                let _ = child.wait().await;
            }
        }
        for pid in helpers {
            // SIGKILL reaches stopped processes too; one that already exited is simply not found.
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).output();
        }
        self.handler.abort();
        self.bridge.abort();
        let _ = std::fs::remove_dir_all(&self.user_data_dir);
        drop(guard);
        tracing::info!("chromium closed");
    }
}

/// Answers the page's dialogs (alert, confirm and prompt dismissed; beforeunload accepted, so
/// the page can be left) and reports its renderer's crash.
async fn guard_page(
    page: Page,
    mut dialogs: chromiumoxide::listeners::EventStream<EventJavascriptDialogOpening>,
    mut crashes: chromiumoxide::listeners::EventStream<EventTargetCrashed>,
    crashed: tokio::sync::watch::Sender<bool>,
) {
    loop {
        tokio::select! {
            Some(dialog) = dialogs.next() => {
                let accept = dialog.r#type == DialogType::Beforeunload;
                tracing::debug!(kind = ?dialog.r#type, "dismissing a dialog");
                let answer = page.execute(HandleJavaScriptDialogParams::new(accept));
                let _ = tokio::time::timeout(PROBE_TIMEOUT, answer).await;
            }
            Some(_) = crashes.next() => {
                crashed.send_replace(true);
            }
            else => return,
        }
    }
}

/// Whether `pid` is gone or a zombie: Chromium is our child, and stays a zombie until reaped.
fn process_exited(pid: u32) -> bool {
    proc_stat(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}

/// Every running process's pid, from /proc.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
}

/// A process's state letter and parent pid, from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every process whose parent chain leads to `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = pids().filter_map(|p| Some((p, proc_stat(p)?.1))).collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents.iter().filter(|(p, pp)| *pp == parent && !found.contains(p)).map(|(p, _)| *p).collect::<Vec<_>>(),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A Chromium user-data-dir, `pgshot-chromium-<worker pid>-<generation>-<random>` in the temp
/// dir: the pid in its name is how [`kill_orphans`] tells whose browser a process is.
fn chromium_dir(suffix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pgshot-chromium-{suffix}"))
}

/// A new browser profile directory. Unpredictable (16 characters from the CSPRNG) and made here
/// with mode 0700, failing if anything is already there: no other local user can plant a
/// directory or a link for the browser to use, nor read the profile (the cookies of `session`,
/// the page cache).
fn profile_dir(generation: u32, owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let dir = chromium_dir(&format!("{}-{generation}-{}", std::process::id(), pgshot_job::new_job_id()));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create the browser profile {}: {e}", dir.display()))?;
    // The render user's own, and nobody else's (not even readable by the group).
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give the browser profile {} to uid {uid}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Kills Chromium processes left behind by pgshot workers that no longer run. A worker killed
/// with SIGKILL (or by the OOM killer) cannot close its browser, whose processes then live on,
/// holding memory, until a worker on this machine starts again and finds them: their
/// user-data-dir names the pid of the worker that started them. Returns how many were killed.
pub fn kill_orphans(render_uid: Option<u32>) -> usize {
    let prefix = format!("--user-data-dir={}", chromium_dir("").display());
    let is_worker =
        |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "pgshot-worker");
    let me = uid_of("self");
    let mut killed = 0;
    let mut dirs = std::collections::BTreeSet::new();
    for pid in pids() {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let Some(suffix) = cmdline.split('\0').find_map(|arg| arg.strip_prefix(&prefix)) else { continue };
        // Only a name this worker could have made (see `orphan_suffix`): anything else, a path
        // with `/` or `..` above all, is somebody else's process, and its directory somebody
        // else's, whatever its arguments say.
        let Some((owner, _)) = orphan_suffix(suffix) else { continue };
        // Only processes of this worker's own user or its render user: another user's are not
        // ours to kill.
        let uid = uid_of(&pid.to_string());
        let ours = uid.is_some() && (uid == me || uid == render_uid);
        if is_worker(owner) || !ours {
            continue;
        }
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).output();
        dirs.insert(chromium_dir(suffix));
        killed += 1;
    }
    for dir in dirs {
        // A real directory (not a link to elsewhere) that this user or the render user owns.
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| {
            let uid = Some(std::os::unix::fs::MetadataExt::uid(&m));
            m.is_dir() && (uid == me || uid == render_uid)
        });
        if ours {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    killed
}

/// `<pid>-<generation>-<random>`, decimal, decimal and 16 of `[0-9a-z]`: the only user-data-dir
/// suffix a worker makes. Returns the pid and the generation.
fn orphan_suffix(suffix: &str) -> Option<(&str, &str)> {
    let mut parts = suffix.split('-');
    let (pid, generation, random) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    let random_ok = random.len() == 16 && random.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    (parts.next().is_none() && digits(pid) && digits(generation) && random_ok).then_some((pid, generation))
}

/// The real user id of a process (`self` for this one).
fn uid_of(pid: &str) -> Option<u32> {
    status_uid(pid, 1)
}

/// Whether this process runs with the effective user id 0.
pub fn is_root() -> bool {
    status_uid("self", 2) == Some(0)
}

/// Field `n` of the `Uid:` line of /proc/<pid>/status (1 real, 2 effective).
fn status_uid(pid: &str, n: usize) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(n)?.parse().ok()
}

/// The worker's browser: handed to jobs, replaced when it dies or has rendered `recycle_after` pages.
pub struct Browsers {
    launcher: Launcher,
    page_heap_mb: u32,
    recycle_after: u32,
    spare_tabs: usize,
    current: Mutex<Option<Arc<Chrome>>>,
    /// Browsers replaced while jobs may still use them: closed when those finish, or at shutdown.
    retired: Mutex<Vec<std::sync::Weak<Chrome>>>,
    generation: AtomicU32,
}

impl Browsers {
    /// `spare_tabs`: how many tabs to keep open ahead of the jobs (one per render slot, and one more).
    pub fn new(launcher: Launcher, recycle_after: u32, spare_tabs: usize, page_heap_mb: u32) -> Browsers {
        Browsers {
            launcher,
            page_heap_mb,
            recycle_after: recycle_after.max(1),
            spare_tabs,
            current: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            generation: AtomicU32::new(0),
        }
    }

    /// Browsers started after the first: after a crash, a hang or `recycle_after` renders.
    pub fn restarts(&self) -> u32 {
        self.generation.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// The uid Chromium runs as, when it is not the worker's own.
    pub fn render_uid(&self) -> Option<u32> {
        self.launcher.render_as.map(|(uid, _)| uid)
    }

    /// Starts Chromium and its spare tabs before the first job needs them.
    pub async fn warm_up(&self) -> Result<(), String> {
        let chrome = self.get().await?;
        chrome.renders.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    /// A live browser for one more render.
    pub async fn get(&self) -> Result<Arc<Chrome>, String> {
        let mut current = self.current.lock().await;
        if let Some(chrome) = current.as_ref() {
            let used = chrome.renders.load(Ordering::SeqCst);
            if chrome.is_alive() && used < self.recycle_after {
                chrome.renders.fetch_add(1, Ordering::SeqCst);
                return Ok(chrome.clone());
            }
            let old = current.take().expect("checked above");
            // Jobs still rendering in the old browser hold their own Arc; it closes after them.
            let mut retired = self.retired.lock().await;
            retired.retain(|w| w.strong_count() > 0);
            retired.push(Arc::downgrade(&old));
            drop(retired);
            tokio::spawn(async move { close_when_unused(old).await });
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let chrome = Arc::new(Chrome::launch(&self.launcher, generation, self.spare_tabs, self.page_heap_mb).await?);
        chrome.close_popups();
        chrome.close_start_page().await;
        chrome.replenish();
        chrome.renders.fetch_add(1, Ordering::SeqCst);
        *current = Some(chrome.clone());
        Ok(chrome)
    }

    pub async fn shutdown(&self) {
        let retired: Vec<Arc<Chrome>> =
            std::mem::take(&mut *self.retired.lock().await).iter().filter_map(std::sync::Weak::upgrade).collect();
        for chrome in self.current.lock().await.take().into_iter().chain(retired) {
            chrome.close().await;
        }
    }
}

async fn close_when_unused(chrome: Arc<Chrome>) {
    // A dead browser is closed at once; a recycled one once its last job lets go of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while chrome.is_alive() && Arc::strong_count(&chrome) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    chrome.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_a_worker_makes_are_orphans() {
        assert_eq!(orphan_suffix("4242-0-0123456789abcdef"), Some(("4242", "0")));
        for hostile in [
            "x/../../var/lib/postgresql",
            "1/../victim",
            "1-2/..",
            "1-2-0123456789abcdef/..",
            "1-2-../../../../etc/x",
            "1-2-0123456789ABCDEF",
            "1-2-0123456789abcdef-3",
            "4242-0",
            "-1",
            "1-",
            "a-1",
            "",
        ] {
            assert_eq!(orphan_suffix(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn a_profile_is_private_unpredictable_and_one_the_sweep_recognises() {
        use std::os::unix::fs::PermissionsExt;
        let (a, b) = (profile_dir(7, None).unwrap(), profile_dir(7, None).unwrap());
        assert_ne!(a, b);
        for dir in [&a, &b] {
            let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let suffix = name.strip_prefix("pgshot-chromium-").unwrap();
            assert_eq!(orphan_suffix(suffix), Some((std::process::id().to_string().as_str(), "7")));
            std::fs::remove_dir(dir).unwrap();
        }
    }

    /// A process whose arguments claim a user-data-dir that climbs out of the temp dir (the
    /// security review's exploit) is neither killed nor followed: its target directory stays.
    #[test]
    fn a_hostile_user_data_dir_is_neither_killed_nor_removed() {
        let victim = std::env::temp_dir().join(format!("pgshot-victim-{}", std::process::id()));
        std::fs::create_dir_all(victim.join("data")).unwrap();
        // The step the path climbs out through exists, as an attacker would make it.
        let step = chromium_dir(&format!("x{}", std::process::id()));
        std::fs::create_dir_all(&step).unwrap();
        let arg = format!("--user-data-dir={}/../{}", step.display(), victim.file_name().unwrap().to_string_lossy());
        let mut hostile = std::process::Command::new("sh").args(["-c", "sleep 30", &arg]).spawn().unwrap();
        // Give the kernel a moment to show its command line in /proc.
        std::thread::sleep(Duration::from_millis(200));
        kill_orphans(None);
        let still_running = hostile.try_wait().unwrap().is_none();
        let _ = hostile.kill();
        let _ = hostile.wait();
        let victim_kept = victim.join("data").exists();
        let _ = std::fs::remove_dir_all(&victim);
        let _ = std::fs::remove_dir_all(&step);
        assert!(still_running, "a process that is not ours was killed");
        assert!(victim_kept, "a directory outside the worker's own was removed");
    }
}
