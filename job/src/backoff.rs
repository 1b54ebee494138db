/// Exponential backoff before a failed attempt runs again: `base × 4^(attempt − 1)`, at most an
/// hour, spread by ±20 % so that jobs that failed together do not come back together.
///
/// `unit` is a number in `[0, 1)` that picks where in the spread this delay lands.
pub fn retry_delay_ms(attempt: i32, base_ms: u64, unit: f64) -> u64 {
    const CAP_MS: u64 = 3_600_000;
    let exponent = attempt.clamp(1, 16) as u32 - 1;
    let nominal = base_ms.saturating_mul(4u64.saturating_pow(exponent)).min(CAP_MS);
    let spread = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
    (nominal as f64 * spread).round() as u64
}

/// The default webhook schedule, in seconds: the first attempt at once, then after 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h and 10 h.
pub const DEFAULT_WEBHOOK_SCHEDULE: &str = "0,5,300,1800,7200,18000,36000,36000";

/// Parses a webhook retry schedule: comma-separated delays in seconds, one per attempt.
pub fn parse_webhook_schedule(schedule: &str) -> Result<Vec<u64>, String> {
    let delays: Result<Vec<u64>, String> = schedule
        .split(',')
        .map(|d| d.trim().parse::<u64>().map_err(|_| format!("\"{}\" is not a number of seconds", d.trim())))
        .collect();
    let delays = delays?;
    if delays.is_empty() || delays.len() > 50 {
        return Err("the schedule needs 1 to 50 delays".into());
    }
    Ok(delays)
}

/// The delay before the next attempt after attempt `attempt` (1-based) failed, spread by ±10 %,
/// or `None` when the schedule has no more attempts. Attempt 0 gives the delay before the first.
pub fn webhook_retry_delay_ms(delays: &[u64], attempt: i32, unit: f64) -> Option<u64> {
    let next = usize::try_from(attempt).ok()?;
    let seconds = *delays.get(next)?;
    let spread = 0.9 + 0.2 * unit.clamp(0.0, 1.0);
    Some((seconds as f64 * 1000.0 * spread).round() as u64)
}

/// A uniformly distributed number in `[0, 1)` from the operating system's generator.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_schedule_runs_out_after_its_last_delay() {
        let delays = parse_webhook_schedule(DEFAULT_WEBHOOK_SCHEDULE).unwrap();
        assert_eq!(delays.len(), 8);
        assert_eq!(webhook_retry_delay_ms(&delays, 0, 0.5), Some(0), "the first attempt at once");
        assert_eq!(webhook_retry_delay_ms(&delays, 1, 0.5), Some(5000));
        assert_eq!(webhook_retry_delay_ms(&delays, 2, 0.5), Some(300_000));
        assert_eq!(webhook_retry_delay_ms(&delays, 2, 0.0), Some(270_000));
        assert_eq!(webhook_retry_delay_ms(&delays, 7, 0.5), Some(36_000_000));
        assert_eq!(webhook_retry_delay_ms(&delays, 8, 0.5), None, "eight attempts in all");
        assert!(parse_webhook_schedule("0, 1,x").is_err());
        assert!(parse_webhook_schedule("").is_err());
    }

    #[test]
    fn grows_by_four_with_bounded_jitter_and_a_cap() {
        assert_eq!(retry_delay_ms(1, 2000, 0.5), 2000);
        assert_eq!(retry_delay_ms(2, 2000, 0.5), 8000);
        assert_eq!(retry_delay_ms(3, 2000, 0.5), 32_000);
        assert_eq!(retry_delay_ms(3, 2000, 0.0), 25_600);
        assert_eq!(retry_delay_ms(3, 2000, 1.0), 38_400);
        assert_eq!(retry_delay_ms(25, 2000, 0.5), 3_600_000);
        assert_eq!(retry_delay_ms(1, 0, 0.9), 0);
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
