//! The block lists shipped in `worker/assets` (see `scripts/update-blocklists.py`): ad and tracker
//! hosts for `blockAds`, and consent pop-up selectors for `blockCookieBanners`/`blockPopups`.

use std::collections::HashSet;
use std::sync::OnceLock;

const AD_HOSTS: &str = include_str!("../assets/ad-hosts.txt");
const COOKIE_BANNER_SELECTORS: &str = include_str!("../assets/cookie-banner-selectors.txt");

pub struct Blocklists {
    ad_hosts: HashSet<&'static str>,
    /// One rule per selector, so that a selector this Chromium cannot parse drops only itself.
    pub cookie_banner_css: String,
}

/// The list's entries: comment lines start with "# " (an id selector starts with "#" alone).
fn entries(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("# "))
}

pub fn blocklists() -> &'static Blocklists {
    static LISTS: OnceLock<Blocklists> = OnceLock::new();
    LISTS.get_or_init(|| {
        let ad_hosts = entries(AD_HOSTS).collect();
        let mut css = String::new();
        for selector in entries(COOKIE_BANNER_SELECTORS) {
            css.push_str(selector);
            css.push_str(" { display: none !important; visibility: hidden !important; }\n");
        }
        // Consent walls often freeze scrolling on the page behind them.
        css.push_str("html, body { overflow: auto !important; }\n");
        Blocklists { ad_hosts, cookie_banner_css: css }
    })
}

impl Blocklists {
    /// True when `host` or one of its parent domains is a listed ad or tracker host.
    pub fn is_ad_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        let mut rest = host;
        loop {
            if self.ad_hosts.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return false,
            }
        }
    }

    #[cfg(test)]
    pub fn ad_host_count(&self) -> usize {
        self.ad_hosts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_loaded_and_match_subdomains() {
        let lists = blocklists();
        assert!(lists.ad_host_count() > 10_000, "{}", lists.ad_host_count());
        assert!(lists.is_ad_host("g.doubleclick.net"));
        assert!(lists.is_ad_host("stats.g.doubleclick.net."));
        assert!(!lists.is_ad_host("example.com"));
        assert!(!lists.is_ad_host("net"));
        assert!(lists.cookie_banner_css.contains("#onetrust-banner-sdk { display: none"));
        assert!(!lists.cookie_banner_css.contains("# Cookie"), "comments are not selectors");
    }
}
