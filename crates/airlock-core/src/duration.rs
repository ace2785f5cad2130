//! Durations as users write them (`250ms`, `5s`, `1h 30m`), held as milliseconds.

/// Parses a duration into milliseconds, or says why it is not one.
pub fn parse(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    u64::try_from(duration.as_millis()).map_err(|_| "too long".to_owned())
}

/// Formats milliseconds the way users write them.
pub fn format(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_units_users_write() {
        assert_eq!(parse("250ms"), Ok(250));
        assert_eq!(parse("5s"), Ok(5_000));
        assert_eq!(parse("1h 30m"), Ok(5_400_000));
        assert_eq!(parse("2d"), Ok(172_800_000));
        assert_eq!(format(90_000), "1m 30s");
    }

    #[test]
    fn refuses_unknown_units_and_bare_numbers() {
        assert!(parse("5 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse("5").is_err());
    }
}
