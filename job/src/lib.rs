//! The screenshot job request, shared by the pgshot extension, worker and API.
//!
//! One definition of the request shape (DESIGN §4) and of its validation, so that a request the
//! API accepts is exactly a request `screenshot_enqueue` accepts and the worker can render.

mod backoff;
mod destination;
mod device;
mod error_code;
mod invalid;
mod job_id;
mod options;
mod request;
mod row_rules;
mod schedule;
mod status;

pub use backoff::{
    parse_webhook_schedule, random_unit, retry_delay_ms, webhook_retry_delay_ms, DEFAULT_WEBHOOK_SCHEDULE,
};
pub use destination::{check_url, is_public_ip, non_public_reason, Destination, NetworkPolicy};
pub use device::{Device, DEVICES};
pub use error_code::ErrorCode;
pub use invalid::InvalidOption;
pub use job_id::new_job_id;
pub use options::{
    check_bulk_webhook, Action, BlockLevel, ClickAction, Cookie, Format, FullPageMode, Header, HoverAction, JsonField,
    JsonFieldType, OutputSpec, OutputType, PaperFormat, PressAction, ResponseType, SameSite, ScreenshotOptions,
    ScrollAction, SelectAction, Session, StorageItem, TypeAction, Viewport, WaitAction, WaitUntil,
};
pub use request::{parse_bulk, JobRequest, DEFAULT_MAX_ATTEMPTS, MAX_BULK};
pub use row_rules::{broken_output_rule, broken_rule, JobRow, OutputRow, Rule, OUTPUT_RULES, RULES};
pub use schedule::{next_run, DestinationRequest, ScheduleRequest};
pub use status::JobStatus;
