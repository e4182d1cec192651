// SPDX-License-Identifier: MPL-2.0

//! Points in time given as properties: milliseconds since the Unix epoch, or
//! an ISO 8601 / RFC 3339 date-time such as `2026-11-25T13:00:00Z` or
//! `2026-11-25T14:00:00.250+01:00`.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())
        .flatten()
}

/// Parses `text` into milliseconds since the Unix epoch.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text:?} is out of range"));
    }
    let invalid = || {
        format!(
            "{text:?} is neither milliseconds since the epoch nor an ISO 8601 date-time like 2026-11-25T13:00:00Z"
        )
    };
    let bytes = text.as_bytes();
    if bytes.len() < 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(invalid());
    }
    let field = |range| digits(text, range).ok_or_else(invalid);
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(invalid());
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return Err(invalid());
        }
        let padded = format!("{:0<3}", &fraction[..len.min(3)]);
        millis = padded.parse::<i64>().map_err(|_| invalid())?;
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (digits(rest, 1..3).ok_or_else(invalid)? * 60
                + digits(rest, 4..6).ok_or_else(invalid)?)
        }
        _ => {
            return Err(format!(
                "{text:?} has no time zone: end it with Z or an offset like +01:00"
            ));
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoch_millis_and_iso_8601() {
        assert_eq!(parse_time_ms("1795611398227"), Ok(1_795_611_398_227));
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time_ms("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        assert_eq!(
            parse_time_ms("2026-11-25T13:00:00.25Z"),
            Ok(1_795_611_600_250)
        );
        assert_eq!(
            parse_time_ms("2026-11-25T14:00:00.250+01:00"),
            Ok(1_795_611_600_250)
        );
        assert_eq!(
            parse_time_ms("2026-11-25T08:30:00-04:30"),
            Ok(1_795_611_600_000)
        );
    }

    #[test]
    fn rejects_what_it_cannot_place() {
        for text in [
            "",
            "yesterday",
            "2026-11-25",
            "2026-11-25T13:00:00",
            "2026-13-01T00:00:00Z",
            "-5",
        ] {
            assert!(parse_time_ms(text).is_err(), "{text:?} accepted");
        }
    }
}
