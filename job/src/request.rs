//! A validated job request, split into what the queue stores in its own columns and the render
//! options the worker reads back.

use serde_json::Value;

use crate::{check_url, InvalidOption, NetworkPolicy, ScreenshotOptions};

/// The most jobs one bulk request may enqueue.
pub const MAX_BULK: usize = 1000;
/// The largest options document accepted, in bytes of JSON.
const MAX_OPTIONS_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// As given (trimmed), so the job reports the URL the user asked for.
    pub url: String,
    /// Render options without the queue fields below; `{}` when none were given.
    pub options: ScreenshotOptions,
    pub priority: i32,
    /// RFC 3339; `None` means now.
    pub run_at: Option<String>,
    pub max_attempts: i32,
    pub idempotency_key: Option<String>,
    pub webhook_url: Option<String>,
    /// Kept out of `options` so that nothing that returns options can leak it.
    pub webhook_secret: Option<String>,
}

impl JobRequest {
    /// Validates `url` with `options` (a JSON object of DESIGN §4 fields).
    pub fn parse(url: &str, options: &Value, policy: NetworkPolicy) -> Result<JobRequest, InvalidOption> {
        let mut opts = ScreenshotOptions::from_json(options)?;
        if let Some(inner) = opts.url.take() {
            if inner.trim() != url.trim() {
                return Err(InvalidOption::new("url", "url is given twice with different values")
                    .with_hint("pass the URL as the first argument and leave it out of the options"));
            }
        }
        JobRequest::from_options(url, opts, policy)
    }

    fn from_options(
        url: &str,
        mut opts: ScreenshotOptions,
        policy: NetworkPolicy,
    ) -> Result<JobRequest, InvalidOption> {
        check_url("url", url, policy)?;
        opts.validate(policy)?;
        let request = JobRequest {
            url: url.trim().to_string(),
            priority: opts.priority.take().map_or(0, |p| p as i32),
            run_at: opts.run_at.take(),
            max_attempts: opts.max_attempts.take().map_or(DEFAULT_MAX_ATTEMPTS, |n| n as i32),
            idempotency_key: opts.idempotency_key.take(),
            webhook_url: opts.webhook_url.take(),
            webhook_secret: opts.webhook_secret.take(),
            options: opts,
        };
        let size = request.options_json().to_string().len();
        if size > MAX_OPTIONS_BYTES {
            return Err(InvalidOption::new(
                "options",
                format!("options must be at most {MAX_OPTIONS_BYTES} bytes of JSON"),
            )
            .with_detail(format!("got {size} bytes")));
        }
        Ok(request)
    }

    /// The canonical render options stored with the job.
    pub fn options_json(&self) -> Value {
        serde_json::to_value(&self.options).expect("options serialise to JSON")
    }
}

/// Validates a bulk request: a JSON array (named `field`) of at most `max` objects, each a `url`
/// with its options beside it. An error names the item, as in `requests[3].viewport.width`.
pub fn parse_bulk(
    requests: &Value,
    field: &str,
    max: usize,
    policy: NetworkPolicy,
) -> Result<Vec<JobRequest>, InvalidOption> {
    let items = requests.as_array().ok_or_else(|| {
        InvalidOption::new(field, format!("{field} must be a JSON array"))
            .with_hint("for example [{\"url\": \"https://example.com\", \"fullPage\": true}]")
    })?;
    if items.is_empty() {
        return Err(InvalidOption::new(field, format!("{field} must not be empty")));
    }
    if items.len() > max {
        return Err(InvalidOption::new(field, format!("{field} must have at most {max} entries"))
            .with_code("BULK_TOO_LARGE")
            .with_detail(format!("got {}", items.len())));
    }
    let requests: Vec<JobRequest> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = format!("{field}[{i}]");
            let mut opts = ScreenshotOptions::from_json(item).map_err(|e| e.under(&prefix))?;
            let url = opts.url.take().ok_or_else(|| InvalidOption::new("url", "url is required").under(&prefix))?;
            JobRequest::from_options(&url, opts, policy).map_err(|e| e.under(&prefix))
        })
        .collect::<Result<_, _>>()?;
    // An idempotency key names one job: two items of one request cannot share it (a key in a
    // bulk request's `defaults` would give it to every URL).
    let mut keys = std::collections::HashMap::new();
    for (i, request) in requests.iter().enumerate() {
        if let Some(key) = &request.idempotency_key {
            if let Some(first) = keys.insert(key.as_str(), i) {
                return Err(InvalidOption::new(
                    format!("{field}[{i}].idempotencyKey"),
                    format!("{field}[{i}].idempotencyKey is the key of {field}[{first}] too"),
                )
                .with_hint("each job needs its own key; do not put idempotencyKey in defaults"));
            }
        }
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DENY: NetworkPolicy = NetworkPolicy { allow_private_networks: false };

    fn err(options: Value) -> InvalidOption {
        JobRequest::parse("https://example.com", &options, DENY).expect_err(&options.to_string())
    }

    #[test]
    fn accepts_what_the_official_sdks_send_and_canonicalises_it() {
        let req = JobRequest::parse(
            "https://example.com",
            &json!({
                "url": "https://example.com",
                "viewport": {"width": 1280, "height": 720, "deviceScaleFactor": 2},
                "device": "iphone 14",
                "format": "jpg",
                "quality": 70,
                "fullPage": true,
                "waitUntil": "commit",
                "blockLevel": "pro_plus",
                "blockPopups": true,
                "responseType": "JSON",
                "webhookUrl": "https://hooks.example.com/x",
                "webhookSecret": "whsec_s3cret-s3cret",
                "priority": -5,
                "maxAttempts": 5,
                "runAt": "2030-01-15T12:30:00+02:00",
                "idempotencyKey": "order-42"
            }),
            DENY,
        )
        .unwrap();
        let stored = req.options_json();
        assert_eq!(stored["format"], "jpeg");
        assert_eq!(stored["responseType"], "BASE64");
        assert_eq!(stored["device"], "iPhone 14");
        assert_eq!(stored["waitUntil"], "commit");
        for moved in ["url", "webhookUrl", "webhookSecret", "priority", "maxAttempts", "runAt", "idempotencyKey"] {
            assert!(stored.get(moved).is_none(), "{moved} stays out of the stored options");
        }
        assert_eq!(req.priority, -5);
        assert_eq!(req.max_attempts, 5);
        assert_eq!(req.run_at.as_deref(), Some("2030-01-15T12:30:00+02:00"));
        assert_eq!(req.webhook_secret.as_deref(), Some("whsec_s3cret-s3cret"));
    }

    #[test]
    fn names_the_field_of_every_bad_option() {
        let cases = [
            (json!({"viewport": {"width": 5000}}), "viewport.width", "viewport.width must be between 100 and 2560"),
            (json!({"viewport": {"height": 50}}), "viewport.height", "viewport.height must be between 100 and 2160"),
            (
                json!({"viewport": {"deviceScaleFactor": 4}}),
                "viewport.deviceScaleFactor",
                "viewport.deviceScaleFactor must be between 1 and 3",
            ),
            (json!({"viewport": {"width": "wide"}}), "viewport.width", "invalid value for viewport.width"),
            (json!({"viewport": {"depth": 3}}), "viewport.depth", "viewport.depth is not a known option"),
            (json!({"colour": "red"}), "colour", "colour is not a known option"),
            (json!({"format": "gif"}), "format", "invalid value for format"),
            (json!({"quality": 0}), "quality", "quality must be between 1 and 100"),
            (json!({"maxHeight": 999}), "maxHeight", "maxHeight must be between 1000 and 30000"),
            (json!({"delay": 30001}), "delay", "delay must be between 0 and 30000"),
            (json!({"timeout": 500}), "timeout", "timeout must be between 1000 and 60000"),
            (json!({"waitUntil": "idle"}), "waitUntil", "invalid value for waitUntil"),
            (
                json!({"device": "Nokia 3310"}),
                "device",
                "device must be one of Desktop HD, Desktop, Laptop, iPhone 14, iPhone 14 Pro Max, iPad, iPad Pro",
            ),
            (json!({"customCss": "a".repeat(10_001)}), "customCss", "customCss must be at most 10000 characters"),
            (json!({"hideSelectors": vec![".x"; 51]}), "hideSelectors", "hideSelectors must have at most 50 entries"),
            (json!({"hideSelectors": [".a", ""]}), "hideSelectors[1]", "hideSelectors[1] must not be empty"),
            (json!({"selector": "a".repeat(501)}), "selector", "selector must be at most 500 characters"),
            (json!({"responseType": "XML"}), "responseType", "invalid value for responseType"),
            (json!({"blockLevel": "max"}), "blockLevel", "invalid value for blockLevel"),
            (json!({"fullPage": "yes"}), "fullPage", "invalid value for fullPage"),
            (
                json!({"session": {"headers": [{"name": "X-A", "value": "a\r\nHost: evil"}]}}),
                "session.headers[0].value",
                "session.headers[0].value must not contain CR, LF or NUL",
            ),
            (
                json!({"session": {"headers": [{"name": "Host", "value": "evil"}]}}),
                "session.headers[0].name",
                "session.headers[0].name \"Host\" cannot be set",
            ),
            (
                json!({"session": {"headers": [{"name": "X A", "value": "b"}]}}),
                "session.headers[0].name",
                "session.headers[0].name is not a valid header name",
            ),
            (
                json!({"session": {"headers": [{"name": "X-A", "value": "b", "origin": "https://a.example/path"}]}}),
                "session.headers[0].origin",
                "session.headers[0].origin must be an origin without a path",
            ),
            (
                json!({"session": {"cookies": [{"name": "", "value": "b"}]}}),
                "session.cookies[0].name",
                "session.cookies[0].name must not be empty",
            ),
            (json!({"actions": [{"type": "dance"}]}), "actions[0].type", "invalid value for actions[0].type"),
            (json!({"actions": [{"type": "click"}]}), "actions[0]", "invalid value for actions[0]"),
            (
                json!({"actions": [{"type": "wait"}]}),
                "actions[0]",
                "actions[0] needs a duration, a selector or networkIdle",
            ),
            (
                json!({"actions": vec![json!({"type": "press", "key": "Enter"}); 26]}),
                "actions",
                "actions must have at most 25 entries",
            ),
            (json!({"outputs": []}), "outputs", "outputs must not be empty"),
            (json!({"outputs": [{"type": "video"}]}), "outputs[0].type", "invalid value for outputs[0].type"),
            (
                json!({"outputs": [{"type": "html"}, {"type": "html"}]}),
                "outputs[1].id",
                "outputs[1].id \"html\" is used twice",
            ),
            (
                json!({"outputs": [{"type": "html", "format": "png"}]}),
                "outputs[0].format",
                "outputs[0].format applies only to screenshot and pdf outputs",
            ),
            (
                json!({"outputs": [{"type": "screenshot", "id": "a b"}]}),
                "outputs[0].id",
                "outputs[0].id must be 1 to 64 letters, digits, - or _",
            ),
            (json!({"webhookUrl": "ftp://example.com"}), "webhookUrl", "webhookUrl must use http or https"),
            (
                json!({"webhookUrl": "http://127.0.0.1:9000/hook"}),
                "webhookUrl",
                "webhookUrl points to a non-public address",
            ),
            (
                json!({"webhookUrl": "https://h.example.com", "webhookSecret": "s".repeat(256)}),
                "webhookSecret",
                "webhookSecret must be at most 255 characters",
            ),
            (json!({"webhookSecret": "s".repeat(16)}), "webhookSecret", "webhookSecret is set but webhookUrl is not"),
            (
                json!({"webhookUrl": "https://h.example.com", "webhookSecret": "s3cret"}),
                "webhookSecret",
                "webhookSecret must be at least 16 characters",
            ),
            (json!({"priority": 101}), "priority", "priority must be between -100 and 100"),
            (json!({"maxAttempts": 0}), "maxAttempts", "maxAttempts must be between 1 and 25"),
            (json!({"runAt": "tomorrow"}), "runAt", "runAt must be an RFC 3339 timestamp"),
            (json!({"idempotencyKey": ""}), "idempotencyKey", "idempotencyKey must not be empty"),
            (json!({"url": "https://other.example.com"}), "url", "url is given twice with different values"),
            (json!([1, 2]), "options", "options must be a JSON object"),
        ];
        for (options, field, message) in cases {
            let e = err(options.clone());
            assert_eq!((e.field.as_str(), e.message.as_str()), (field, message), "{options}");
        }
    }

    #[test]
    fn refuses_non_public_page_urls_unless_allowed() {
        let e = JobRequest::parse("http://0x7f000001:8080/", &json!({}), DENY).unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("url", "BLOCKED_URL"));
        let allow = NetworkPolicy { allow_private_networks: true };
        assert!(JobRequest::parse("http://127.0.0.1:8080/", &json!({}), allow).is_ok());
    }

    #[test]
    fn bulk_errors_name_the_item() {
        let e = parse_bulk(
            &json!([{"url": "https://a.example"}, {"url": "https://b.example", "quality": 0}]),
            "requests",
            MAX_BULK,
            DENY,
        )
        .unwrap_err();
        assert_eq!(e.field, "requests[1].quality");
        assert_eq!(e.message, "requests[1].quality must be between 1 and 100");
        let twice = json!([{"url": "https://a.example", "idempotencyKey": "k"}, {"url": "https://b.example", "idempotencyKey": "k"}]);
        let e = parse_bulk(&twice, "requests", MAX_BULK, DENY).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("requests[1].idempotencyKey", "requests[1].idempotencyKey is the key of requests[0] too")
        );
        let e = parse_bulk(&json!([{"fullPage": true}]), "requests", MAX_BULK, DENY).unwrap_err();
        assert_eq!(e.message, "requests[0].url is required");
        let e = parse_bulk(&json!([{"url": "https://a.example", "bogus": 1}]), "requests", MAX_BULK, DENY).unwrap_err();
        assert_eq!(e.field, "requests[0].bogus");
        assert_eq!(
            parse_bulk(&json!([]), "requests", MAX_BULK, DENY).unwrap_err().message,
            "requests must not be empty"
        );
        let ok = parse_bulk(
            &json!([{"url": "https://a.example"}, {"url": "https://b.example", "fullPage": true}]),
            "requests",
            MAX_BULK,
            DENY,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].options_json(), json!({"fullPage": true}));
    }
}
