//! A schedule request (the vendor's `create_schedule_request` and `update_schedule_request`): its
//! shape, its validation, and the cron arithmetic the queue runs on.
//!
//! One definition for the extension (which stores the canonical form and computes each next run
//! with [`next_run`]) and the API (which describes the request in the spec and validates it before
//! the extension does, for its error codes).

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{check_bulk_webhook, check_url, InvalidOption, JobRequest, NetworkPolicy, ScreenshotOptions};

const DEFAULT_DIFF_THRESHOLD: f64 = 0.01;
const DEFAULT_RETENTION_DAYS: i64 = 30;
const MAX_DESTINATIONS: usize = 10;
const MAX_NAME: usize = 255;

/// Everything a schedule request may carry. Creating one needs `name`, `url` and `schedule`; an
/// update carries only what changes (a `null` clears a field, or gives it back its default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none))]
pub struct ScheduleRequest {
    /// A name for people, 1 to 255 characters.
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 255)))]
    #[serde(default)]
    pub name: Option<String>,
    /// The page to capture at every run: http or https.
    #[cfg_attr(feature = "openapi", oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$")))]
    #[serde(default)]
    pub url: Option<String>,
    /// When to run: a 5-field cron pattern (minute hour day-of-month month day-of-week, as
    /// `0 9 * * 1-5`), a 6-field one whose first field is one second (`0 0 9 * * *`), or an
    /// alias: @hourly, @daily, @weekly, @monthly, @yearly. At most once a minute.
    #[cfg_attr(feature = "openapi", oai(validator(min_length = 1, max_length = 200)))]
    #[serde(default)]
    pub schedule: Option<String>,
    /// The IANA time zone the pattern is read in (default UTC): `0 9 * * *` in America/New_York
    /// runs at 9:00 there, in summer and winter. A time skipped by a DST change runs at the first
    /// minute after the gap; a time repeated by one runs once.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The capture options of every run, as in POST /v1/screenshots/async (without url,
    /// idempotencyKey, runAt, webhookUrl or webhookSecret).
    #[serde(default)]
    pub options: Option<ScreenshotOptions>,
    /// Where each capture is delivered, at most 10: `{"type": "webhook", "url", "secret"}`.
    /// Email destinations are refused: pgshot sends no email.
    #[serde(default)]
    pub destinations: Option<Vec<DestinationRequest>>,
    /// A webhook for every capture (SCHEDULE_CAPTURED) and, with alertOnFailure, every failed run
    /// (SCHEDULE_FAILED), signed as job webhooks are.
    #[cfg_attr(feature = "openapi", oai(validator(max_length = 8192)))]
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The webhook's signing secret (16 to 256 characters).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Deliver a capture only when it differs from the previous run's by more than diffThreshold
    /// (default false).
    #[serde(default)]
    pub only_on_change: Option<bool>,
    /// The fraction of changed pixels, 0 to 1, that counts as a change (default 0.01).
    #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "0"), maximum(value = "1"))))]
    #[serde(default)]
    pub diff_threshold: Option<f64>,
    /// Deliver SCHEDULE_FAILED to the destinations when a run fails (default false).
    #[serde(default)]
    pub alert_on_failure: Option<bool>,
    /// Pause the schedule after this many failed runs in a row, 1 to 100 (default: never).
    #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "100"))))]
    #[serde(default)]
    pub auto_pause_after_failures: Option<i64>,
    /// Days a run's capture and history are kept, 1 to 365 (default 30).
    #[cfg_attr(feature = "openapi", oai(validator(minimum(value = "1"), maximum(value = "365"))))]
    #[serde(default)]
    pub retention_days: Option<i64>,
    /// No run before this time (RFC 3339).
    #[serde(default)]
    pub starts_at: Option<String>,
    /// No run after this time (RFC 3339): the schedule is then COMPLETED.
    #[serde(default)]
    pub ends_at: Option<String>,
}

/// One delivery destination. Only `webhook` is delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(
    feature = "openapi",
    oai(rename = "ScheduleDestination", rename_all = "camelCase", deny_unknown_fields, skip_serializing_if_is_none)
)]
pub struct DestinationRequest {
    /// `webhook` (`email` is refused).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", oai(rename = "type"))]
    pub kind: String,
    /// Your name for it.
    #[serde(default)]
    pub id: Option<String>,
    /// webhook: where to POST.
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: the signing secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// Overrides the schedule's onlyOnChange for this destination.
    #[serde(default)]
    pub only_on_change: Option<bool>,
    /// email only (refused).
    #[serde(default)]
    pub to: Option<Vec<String>>,
    /// email only (refused).
    #[serde(default)]
    pub subject: Option<String>,
}

impl ScheduleRequest {
    pub fn from_json(value: &Value) -> Result<ScheduleRequest, InvalidOption> {
        if !value.is_object() {
            return Err(InvalidOption::new("request", "a schedule request must be a JSON object"));
        }
        serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner().to_string();
            let field = if path == "." { "request".to_string() } else { path };
            if inner.starts_with("unknown field `") {
                return InvalidOption::new(&field, format!("{field} is not a known field")).with_detail(inner.clone());
            }
            InvalidOption::new(&field, format!("invalid value for {field}")).with_detail(inner)
        })
    }

    /// An update: `changes` (an update request) over `stored` (a schedule's canonical request).
    /// A field given replaces the stored one; a `null` removes it (its default again).
    pub fn merged(stored: &Value, changes: &Value) -> Result<ScheduleRequest, InvalidOption> {
        ScheduleRequest::from_json(changes)?;
        let mut merged = stored.as_object().cloned().unwrap_or_default();
        merged.remove("scheduleDescription");
        for (k, v) in changes.as_object().into_iter().flatten() {
            merged.insert(k.clone(), v.clone());
        }
        merged.retain(|_, v| !v.is_null());
        ScheduleRequest::from_json(&Value::Object(merged))
    }

    /// Validates a complete request (a create, or an update merged onto the schedule it changes)
    /// and returns its canonical JSON: defaults filled in, the time zone's and the times' canonical
    /// spellings, the options as the worker reads them.
    pub fn canonical(self, policy: NetworkPolicy) -> Result<Value, InvalidOption> {
        let name = required("name", self.name)?;
        crate::options::text("name", Some(&name), 1, MAX_NAME)?;
        let url = required("url", self.url)?;
        check_url("url", &url, policy)?;
        let pattern = required("schedule", self.schedule)?;
        let timezone = self.timezone.unwrap_or_else(|| "UTC".into());
        let tz = parse_timezone(&timezone)?;
        let cron = parse_cron(&pattern)?;
        let options = match self.options {
            Some(options) => canonical_options(&url, options, policy)?,
            None => json!({}),
        };
        check_bulk_webhook(self.webhook_url.as_deref(), self.webhook_secret.as_deref(), policy)?;
        let diff_threshold = self.diff_threshold.unwrap_or(DEFAULT_DIFF_THRESHOLD);
        if !(0.0..=1.0).contains(&diff_threshold) || diff_threshold.is_nan() {
            return Err(InvalidOption::out_of_range("diffThreshold", 0, 1, diff_threshold));
        }
        if let Some(n) = self.auto_pause_after_failures {
            if !(1..=100).contains(&n) {
                return Err(InvalidOption::out_of_range("autoPauseAfterFailures", 1, 100, n));
            }
        }
        let retention_days = self.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if !(1..=365).contains(&retention_days) {
            return Err(InvalidOption::out_of_range("retentionDays", 1, 365, retention_days));
        }
        let starts_at = self.starts_at.as_deref().map(|t| parse_time("startsAt", t)).transpose()?;
        let ends_at = self.ends_at.as_deref().map(|t| parse_time("endsAt", t)).transpose()?;
        if let (Some(s), Some(e)) = (starts_at, ends_at) {
            if e <= s {
                return Err(InvalidOption::new("endsAt", "endsAt must be after startsAt"));
            }
        }
        let destinations = self.destinations.unwrap_or_default();
        if destinations.len() > MAX_DESTINATIONS {
            return Err(InvalidOption::new(
                "destinations",
                format!("destinations must have at most {MAX_DESTINATIONS} entries"),
            )
            .with_detail(format!("got {}", destinations.len())));
        }
        let destinations = destinations
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.canonical(policy).map_err(|e| e.under(&format!("destinations[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({
            "name": name,
            "url": url.trim(),
            "schedule": pattern.trim(),
            "scheduleDescription": cron.describe(),
            "timezone": tz.name(),
            "options": options,
            "destinations": destinations,
            "webhookUrl": self.webhook_url,
            "webhookSecret": self.webhook_secret,
            "onlyOnChange": self.only_on_change.unwrap_or(false),
            "diffThreshold": diff_threshold,
            "alertOnFailure": self.alert_on_failure.unwrap_or(false),
            "autoPauseAfterFailures": self.auto_pause_after_failures,
            "retentionDays": retention_days,
            "startsAt": starts_at.map(rfc3339),
            "endsAt": ends_at.map(rfc3339),
        }))
    }
}

impl DestinationRequest {
    fn canonical(self, policy: NetworkPolicy) -> Result<Value, InvalidOption> {
        match self.kind.as_str() {
            "webhook" => {
                let url = self.url.ok_or_else(|| InvalidOption::new("url", "url is required for a webhook"))?;
                check_bulk_webhook(Some(&url), self.secret.as_deref(), policy).map_err(|e| {
                    // check_bulk_webhook names the fields of a request's own webhook.
                    let field = if e.field == "webhookUrl" { "url" } else { "secret" };
                    InvalidOption { field: field.into(), message: e.message.replace(&e.field, field), ..e }
                })?;
                if self.to.is_some() || self.subject.is_some() {
                    return Err(InvalidOption::new("to", "to and subject are for email destinations"));
                }
                Ok(json!({"type": "webhook", "id": self.id, "url": url, "secret": self.secret,
                          "onlyOnChange": self.only_on_change}))
            }
            "email" => Err(InvalidOption::new("type", "email destinations are not supported: pgshot sends no email")
                .with_hint("use a webhook destination, or webhookUrl")),
            other => Err(InvalidOption::not_one_of("type", &["webhook"], other)),
        }
    }
}

fn required(field: &str, value: Option<String>) -> Result<String, InvalidOption> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(InvalidOption::new(field, format!("{field} must not be empty"))),
        None => Err(InvalidOption::new(field, format!("{field} is required"))),
    }
}

/// A schedule's options are a capture's, less what belongs to one job.
fn canonical_options(url: &str, options: ScreenshotOptions, policy: NetworkPolicy) -> Result<Value, InvalidOption> {
    let one_job = [
        ("url", options.url.is_some()),
        ("idempotencyKey", options.idempotency_key.is_some()),
        ("runAt", options.run_at.is_some()),
        ("webhookUrl", options.webhook_url.is_some()),
        ("webhookSecret", options.webhook_secret.is_some()),
    ];
    if let Some((field, _)) = one_job.iter().find(|(_, set)| *set) {
        let field = format!("options.{field}");
        return Err(InvalidOption::new(&field, format!("{field} is not an option of a schedule"))
            .with_hint("a schedule's url and webhook are fields of the schedule itself"));
    }
    let value = serde_json::to_value(&options).expect("options serialise to JSON");
    let request =
        JobRequest::parse(url, &value, policy).map_err(|e| if e.field == "url" { e } else { e.under("options") })?;
    let mut canonical = request.options_json();
    if let Some(fields) = canonical.as_object_mut() {
        if request.priority != 0 {
            fields.insert("priority".into(), request.priority.into());
        }
        if request.max_attempts != crate::DEFAULT_MAX_ATTEMPTS {
            fields.insert("maxAttempts".into(), request.max_attempts.into());
        }
    }
    Ok(canonical)
}

/// An IANA zone name (case as the tz database spells it, or any case).
fn parse_timezone(name: &str) -> Result<Tz, InvalidOption> {
    Tz::from_str(name.trim()).or_else(|_| Tz::from_str_insensitive(name.trim())).map_err(|_| {
        InvalidOption::new("timezone", "timezone is not a known IANA time zone")
            .with_detail(format!("got \"{name}\""))
            .with_hint("for example UTC, Europe/Paris or America/New_York")
    })
}

/// A cron pattern of 5 fields (or 6, the first one second), or an alias; never more than once a
/// minute.
fn parse_cron(pattern: &str) -> Result<Cron, InvalidOption> {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    let bad = |why: String| {
        InvalidOption::new("schedule", format!("schedule is not a valid cron pattern: {why}"))
            .with_detail(format!("got \"{pattern}\""))
            .with_hint("five fields (minute hour day-of-month month day-of-week), as \"0 9 * * *\", or @hourly, @daily, @weekly, @monthly")
    };
    let seconds = match fields.len() {
        1 if fields[0].starts_with('@') => Seconds::Disallowed,
        5 => Seconds::Disallowed,
        6 => {
            // The vendor's 6-field form leads with a second; one second a minute is still once a
            // minute, anything else would run more often.
            if fields[0].parse::<u8>().map_or(true, |s| s > 59) {
                return Err(bad("the seconds field of a 6-field pattern must be one second, 0 to 59".into()));
            }
            Seconds::Required
        }
        n => return Err(bad(format!("it has {n} fields"))),
    };
    let lower = pattern.trim().to_ascii_lowercase();
    if fields.len() == 1
        && !["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"].contains(&lower.as_str())
    {
        return Err(bad("unknown alias".into()));
    }
    CronParser::builder()
        .seconds(seconds)
        .year(Year::Disallowed)
        .build()
        .parse(if lower == "@midnight" { "@daily" } else { pattern.trim() })
        .map_err(|e| bad(e.to_string()))
}

/// The first run of `pattern` in `tz` strictly after `after`; None when there is none (a pattern
/// such as February 30th that never matches).
pub fn next_run(pattern: &str, tz: &str, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, InvalidOption> {
    let cron = parse_cron(pattern)?;
    let tz = parse_timezone(tz)?;
    Ok(cron.find_next_occurrence(&after.with_timezone(&tz), false).ok().map(|t| t.with_timezone(&Utc)))
}

/// RFC 3339 with an offset; a time without one is read as UTC.
fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, InvalidOption> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::from_str(raw.trim()).map(|t| t.and_utc()))
        .map_err(|e| {
            InvalidOption::new(field, format!("{field} must be an RFC 3339 time"))
                .with_detail(format!("got \"{raw}\": {e}"))
                .with_hint("for example 2026-01-31T09:00:00Z")
        })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy() -> NetworkPolicy {
        NetworkPolicy { allow_private_networks: false }
    }

    fn request(v: Value) -> Result<Value, InvalidOption> {
        ScheduleRequest::from_json(&v)?.canonical(policy())
    }

    #[test]
    fn a_daily_time_stays_local_across_daylight_saving_time() {
        // New York goes to EDT on 2026-03-08: 9:00 local is 14:00 UTC before, 13:00 after.
        let before = next_run("0 9 * * *", "America/New_York", at("2026-03-07T15:00:00Z")).unwrap().unwrap();
        assert_eq!(before, at("2026-03-08T13:00:00Z"));
        let winter = next_run("0 9 * * *", "America/New_York", at("2026-03-06T15:00:00Z")).unwrap().unwrap();
        assert_eq!(winter, at("2026-03-07T14:00:00Z"));
    }

    #[test]
    fn a_time_the_clocks_skip_runs_once_after_the_gap_and_a_repeated_one_once() {
        // 2:30 does not exist in New York on 2026-03-08 (2:00 -> 3:00).
        let gap = next_run("30 2 * * *", "America/New_York", at("2026-03-08T05:00:00Z")).unwrap().unwrap();
        assert_eq!(gap, at("2026-03-08T07:00:00Z"), "3:00 EDT, the first minute after the gap");
        // 1:30 happens twice on 2026-11-01 (EDT, then EST): one run, then the next day's.
        let first = next_run("30 1 * * *", "America/New_York", at("2026-11-01T04:00:00Z")).unwrap().unwrap();
        assert_eq!(first, at("2026-11-01T05:30:00Z"));
        let next = next_run("30 1 * * *", "America/New_York", first).unwrap().unwrap();
        assert_eq!(next, at("2026-11-02T06:30:00Z"));
    }

    #[test]
    fn every_minute_and_the_aliases() {
        let t = at("2026-05-01T10:00:30Z");
        assert_eq!(next_run("* * * * *", "UTC", t).unwrap(), Some(at("2026-05-01T10:01:00Z")));
        assert_eq!(next_run("@hourly", "UTC", t).unwrap(), Some(at("2026-05-01T11:00:00Z")));
        assert_eq!(next_run("@daily", "Europe/Paris", t).unwrap(), Some(at("2026-05-01T22:00:00Z")));
        assert_eq!(next_run("0 0 9 * * *", "UTC", t).unwrap(), Some(at("2026-05-02T09:00:00Z")));
    }

    #[test]
    fn bad_patterns_and_zones_name_their_field() {
        for bad in ["", "* * * *", "61 * * * *", "*/5 * * * * * *", "* * * * * *", "@sometimes", "0 9 * * 8"] {
            let e = parse_cron(bad).expect_err(bad);
            assert_eq!(e.field, "schedule", "{bad}");
        }
        assert_eq!(parse_timezone("Mars/Olympus").unwrap_err().field, "timezone");
        assert_eq!(parse_timezone("europe/paris").unwrap().name(), "Europe/Paris");
    }

    #[test]
    fn a_request_is_canonical_with_defaults_or_names_the_field_at_fault() {
        let ok = request(json!({"name": "Home", "url": "https://example.com", "schedule": "0 9 * * *",
                                "timezone": "america/new_york", "options": {"format": "jpg", "fullPage": true},
                                "startsAt": "2026-02-01T00:00:00+01:00", "endsAt": null}))
        .unwrap();
        assert_eq!(ok["timezone"], "America/New_York");
        assert_eq!(ok["options"]["format"], "jpeg");
        assert_eq!(ok["diffThreshold"], 0.01);
        assert_eq!(ok["retentionDays"], 30);
        assert_eq!(ok["startsAt"], "2026-01-31T23:00:00Z");
        assert!(ok["endsAt"].is_null());
        let base = json!({"name": "n", "url": "https://example.com", "schedule": "* * * * *"});
        let cases = [
            (json!({"diffThreshold": 1.5}), "diffThreshold"),
            (json!({"autoPauseAfterFailures": 0}), "autoPauseAfterFailures"),
            (json!({"retentionDays": 366}), "retentionDays"),
            (json!({"timezone": "Nowhere/Land"}), "timezone"),
            (json!({"schedule": "every day"}), "schedule"),
            (json!({"startsAt": "tomorrow"}), "startsAt"),
            (json!({"startsAt": "2026-02-01T00:00:00Z", "endsAt": "2026-01-01T00:00:00Z"}), "endsAt"),
            (json!({"options": {"viewport": {"width": 5}}}), "options.viewport.width"),
            (json!({"options": {"idempotencyKey": "k"}}), "options.idempotencyKey"),
            (json!({"destinations": [{"type": "email", "to": ["a@example.com"]}]}), "destinations[0].type"),
            (json!({"destinations": [{"type": "webhook"}]}), "destinations[0].url"),
            (json!({"url": "file:///etc/passwd"}), "url"),
            (json!({"name": "x".repeat(256)}), "name"),
            (json!({"frequency": "daily"}), "frequency"),
        ];
        for (change, field) in cases {
            let mut body = base.clone();
            body.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
            let e = request(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.field, field, "{body}: {e}");
        }
        let missing = request(json!({"url": "https://example.com", "schedule": "@daily"})).unwrap_err();
        assert_eq!(missing.field, "name");
    }

    #[test]
    fn an_update_replaces_what_it_gives_and_a_null_gives_back_the_default() {
        let stored = request(json!({"name": "n", "url": "https://example.com", "schedule": "@daily",
                                    "retentionDays": 7, "endsAt": "2030-01-01T00:00:00Z"}))
        .unwrap();
        let merged =
            ScheduleRequest::merged(&stored, &json!({"schedule": "@hourly", "retentionDays": null, "endsAt": null}))
                .unwrap()
                .canonical(policy())
                .unwrap();
        assert_eq!((merged["schedule"].as_str(), merged["retentionDays"].as_i64()), (Some("@hourly"), Some(30)));
        assert!(merged["endsAt"].is_null());
        assert_eq!(merged["name"], "n");
        let e = ScheduleRequest::merged(&stored, &json!({"cron": "@hourly"})).unwrap_err();
        assert_eq!(e.field, "cron");
    }
}
