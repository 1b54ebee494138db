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
