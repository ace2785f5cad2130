//! Times as people and templates read them: RFC 3339 in UTC with milliseconds
//! (`2026-11-30T07:00:00.250Z`). Inside Airlock a time is a [`Timestamp`], milliseconds
//! since the Unix epoch; these turn one into the other, and read no clock.

use crate::run::Timestamp;

/// `1796605958079` → `2026-12-06T10:32:38.079Z`.
pub fn rfc3339(at: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `2026-11-30T07:00:00Z`, `2026-11-30T07:00:00.250+01:00` → milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_to_the_same_millisecond() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00.250+01:00"), Some(250));
        assert_eq!(
            parse_rfc3339(&rfc3339(1_796_605_958_079)),
            Some(1_796_605_958_079)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }
}
