//! puppeteer-core driving the system Chromium (`bench/puppeteer/render.js`): the bare browser that
//! pgshot's rendering is measured against, in the same run, on the same pages.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// How puppeteer-core isolates one shot from the next (see render.js).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One tab reused for every page: no isolation, the ceiling.
    Warm,
    /// A fresh incognito context and page per shot, opened before the clock starts: the isolation
    /// pgshot promises, prepared ahead as pgshot prepares its tabs.
    Ahead,
    /// The context and page created and closed on the clock.
    Clock,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Warm => "warm",
            Mode::Ahead => "ahead",
            Mode::Clock => "clock",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mode::Warm => "puppeteer-core, one warm reused tab",
            Mode::Ahead => "puppeteer-core, fresh incognito context opened ahead",
            Mode::Clock => "puppeteer-core, fresh incognito context created on the clock",
        }
    }
}

/// One shot: the page, its time (navigation to domcontentloaded, a PNG of the viewport and the
/// body's HTML), and its PNG, or why it failed.
pub struct Shot {
    pub url: String,
    pub result: Result<(f64, PathBuf), String>,
    /// The shot plus, in `Ahead` mode, closing its context and opening the next one.
    pub cycle: f64,
}

/// Renders each of `urls` `repeat` times (after one unmeasured warm-up shot of the first) at
/// `width` x `height`, one at a time; PNGs go to `out`.
pub fn shots(mode: Mode, width: u32, height: u32, repeat: usize, urls: &[String], out: &Path) -> Vec<Shot> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("puppeteer/render.js");
    assert!(
        script.with_file_name("node_modules").join("puppeteer-core").exists(),
        "puppeteer-core is not installed: run `npm ci` in bench/puppeteer (make bench does)"
    );
    std::fs::create_dir_all(out).expect("create the puppeteer output directory");
    let mut args = vec![mode.as_str().to_string(), width.to_string(), height.to_string(), repeat.to_string()];
    args.push(out.display().to_string());
    // The warm-up: Chromium's first page pays for its caches and processes.
    args.push(urls[0].clone());
    args.extend(urls.iter().cloned());
    let output = Command::new("node").arg(&script).args(&args).output().expect("run node");
    assert!(
        output.status.success(),
        "puppeteer-core failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut shots: Vec<Shot> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Shot {
            url: v["url"].as_str().unwrap_or_default().to_string(),
            cycle: v["cycle"].as_f64().unwrap_or(f64::NAN),
            result: match v["error"].as_str() {
                Some(e) => Err(e.to_string()),
                None => {
                    Ok((v["ms"].as_f64().unwrap_or(f64::NAN), PathBuf::from(v["png"].as_str().unwrap_or_default())))
                }
            },
        })
        .collect();
    // render.js repeats the whole list, warm-up included: drop the warm-up of each round.
    let per_round = urls.len() + 1;
    let mut i = 0;
    shots.retain(|_| {
        i += 1;
        (i - 1) % per_round != 0
    });
    shots
}
