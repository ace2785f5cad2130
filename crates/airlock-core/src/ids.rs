//! Ids of the things Airlock creates: runs (`run_…`), promotion requests (`req_…`),
//! releases (`rel_…`), tokens (`tok_…`).
//!
//! An id is a UUIDv7 built from a time and random bits that the caller supplies, so ids
//! sort by creation and a simulation that injects its clock and its randomness gets the
//! same ids from the same seed. Nothing here reads a clock or an entropy source.

use crate::run::Timestamp;

/// A new id with `prefix`: the UUIDv7 of `at` (milliseconds since the epoch) and 80 bits
/// of `random`, in its 32-digit hex form.
pub fn new_id(prefix: &str, at: Timestamp, random: u128) -> String {
    let millis = u64::try_from(at).unwrap_or(0);
    let bytes = random.to_be_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&bytes[6..]);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
    format!("{prefix}_{}", uuid.simple())
}

/// A new run id (`run_…`).
pub fn run_id(at: Timestamp, random: u128) -> String {
    new_id("run", at, random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ_by_randomness() {
        let early = run_id(1_700_000_000_000, 7);
        let late = run_id(1_700_000_000_001, 1);
        assert!(early < late, "{early} sorts before {late}");
        assert_ne!(run_id(5, 1), run_id(5, 2));
        assert_eq!(run_id(5, 1), run_id(5, 1), "same inputs, same id");
        assert!(early.starts_with("run_") && early.len() == 4 + 32);
    }
}
