//! Strict parsing of `--since` / `--until`: an instant must carry `Z` or an offset.
//!
//! The official CLI reads a naive timestamp as local time, which silently shifts the
//! window by the machine's UTC offset and leaves gaps or duplicates between runs. This
//! one refuses it and shows the fix.

use jiff::Timestamp;

/// Parses an RFC 3339 instant with an offset; a naive one is refused with a message
/// that shows the corrected value.
pub(crate) fn parse_instant(flag: &str, input: &str) -> Result<Timestamp, String> {
    let text = input.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(pieces) = jiff::fmt::temporal::Pieces::parse(text)
        && pieces.time().is_some()
        && pieces.offset().is_some()
    {
        let whole = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
        return Err(format!(
            "{flag} {text:?} is out of range: instants must lie between {} and {}.",
            whole(Timestamp::MIN),
            whole(Timestamp::MAX),
        ));
    }
    if let Ok(naive) = text.parse::<jiff::civil::DateTime>() {
        let fixed = naive.strftime("%Y-%m-%dT%H:%M:%S").to_string();
        return Err(format!(
            "{flag} {text:?} has no time zone offset, so it does not name a single instant. \
             Add Z for UTC (e.g. {flag} {fixed}Z) or an explicit offset \
             (e.g. {flag} {fixed}+02:00)."
        ));
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return Err(format!(
            "{flag} {text:?} is a date without a time and offset. \
             Write a full instant, e.g. {flag} {date}T00:00:00Z."
        ));
    }
    Err(format!(
        "{flag} {text:?} is not an RFC 3339 timestamp. \
         Examples: {flag} 2024-01-01T00:00:00Z or {flag} 2024-01-01T09:30:00+02:00."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_utc_and_offsets() {
        let z = parse_instant("--since", "2024-01-01T00:00:00Z").unwrap();
        let o = parse_instant("--since", "2024-01-01T02:00:00+02:00").unwrap();
        assert_eq!(z, o);
        assert!(parse_instant("--since", " 2024-01-01T00:00:00.123Z ").is_ok());
    }

    #[test]
    fn refuses_naive_with_the_fix() {
        let e = parse_instant("--since", "2024-01-01T00:00:00").unwrap_err();
        assert!(e.contains("--since 2024-01-01T00:00:00Z"), "{e}");
        let e = parse_instant("--until", "2024-01-01").unwrap_err();
        assert!(e.contains("--until 2024-01-01T00:00:00Z"), "{e}");
        let e = parse_instant("--since", "yesterday").unwrap_err();
        assert!(e.contains("2024-01-01T00:00:00Z"), "{e}");
    }

    #[test]
    fn far_future_and_far_past_instants_are_out_of_range() {
        for text in [
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59+05:00",
            "-009999-01-01T00:00:00Z",
        ] {
            let e = parse_instant("--since", text).unwrap_err();
            assert!(e.contains("out of range"), "{e}");
            assert!(!e.contains("not an RFC 3339"), "{e}");
        }
        assert!(parse_instant("--until", "9999-12-30T22:00:00Z").is_ok());
    }
}
