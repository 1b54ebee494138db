/// Job ids: 16 characters of `[0-9a-z]` from the operating system's CSPRNG (about 82 bits),
/// short and URL-safe like the hosted API's `abc123xyz0`, and not guessable from another id.
pub fn new_job_id() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const LEN: usize = 16;
    let mut id = String::with_capacity(LEN);
    let mut buf = [0u8; 32];
    while id.len() < LEN {
        getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
        // 252 = 7 × 36: dropping bytes above it keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if id.len() == LEN {
                break;
            }
            id.push(ALPHABET[usize::from(b % 36)] as char);
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_short_url_safe_and_distinct() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_job_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.len(), 16);
            assert!(id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()), "{id}");
        }
    }
}
