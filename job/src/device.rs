/// A device preset for the `device` option: viewport, pixel ratio, touch and user agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub device_scale_factor: f64,
    pub mobile: bool,
    pub touch: bool,
    /// `None` keeps Chromium's own (headless) user agent.
    pub user_agent: Option<&'static str>,
}

const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1";
const IPAD_UA: &str = "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1";

pub const DEVICES: &[Device] = &[
    Device {
        name: "Desktop HD",
        width: 1920,
        height: 1080,
        device_scale_factor: 1.0,
        mobile: false,
        touch: false,
        user_agent: None,
    },
    Device {
        name: "Desktop",
        width: 1440,
        height: 900,
        device_scale_factor: 1.0,
        mobile: false,
        touch: false,
        user_agent: None,
    },
    Device {
        name: "Laptop",
        width: 1366,
        height: 768,
        device_scale_factor: 1.0,
        mobile: false,
        touch: false,
        user_agent: None,
    },
    Device {
        name: "iPhone 14",
        width: 390,
        height: 844,
        device_scale_factor: 3.0,
        mobile: true,
        touch: true,
        user_agent: Some(IPHONE_UA),
    },
    Device {
        name: "iPhone 14 Pro Max",
        width: 430,
        height: 932,
        device_scale_factor: 3.0,
        mobile: true,
        touch: true,
        user_agent: Some(IPHONE_UA),
    },
    Device {
        name: "iPad",
        width: 820,
        height: 1180,
        device_scale_factor: 2.0,
        mobile: true,
        touch: true,
        user_agent: Some(IPAD_UA),
    },
    Device {
        name: "iPad Pro",
        width: 1024,
        height: 1366,
        device_scale_factor: 2.0,
        mobile: true,
        touch: true,
        user_agent: Some(IPAD_UA),
    },
];

impl Device {
    /// Looks a preset up by name, ignoring case and spacing (`"iphone-14"` is `"iPhone 14"`).
    pub fn find(name: &str) -> Option<&'static Device> {
        let key = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        let wanted = key(name);
        DEVICES.iter().find(|d| key(d.name) == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_presets_loosely() {
        assert_eq!(Device::find("iPhone 14").unwrap().width, 390);
        assert_eq!(Device::find("iphone-14-pro-max").unwrap().name, "iPhone 14 Pro Max");
        assert_eq!(Device::find("desktop hd").unwrap().height, 1080);
        assert!(Device::find("Nokia 3310").is_none());
    }
}
