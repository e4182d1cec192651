// SPDX-License-Identifier: MPL-2.0

//! Points in time given as properties or request parameters: milliseconds since the Unix epoch, or
//! an ISO 8601 date-time with a time zone such as `2026-11-25T13:00:00Z` or
//! `2026-11-25T14:00:00.250+01:00`, read by GLib's ISO 8601 parser.

use gst::glib;

/// Parses `text` into milliseconds since the Unix epoch.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text:?} is out of range"));
    }
    // Parsed with two different default zones: a text naming its own zone
    // gives the same instant both times.
    let parse = |zone: &glib::TimeZone| {
        glib::DateTime::from_iso8601(text, Some(zone)).map_err(|_| {
            format!(
                "{text:?} is neither milliseconds since the epoch nor a valid ISO 8601 date-time like 2026-11-25T13:00:00Z"
            )
        })
    };
    let utc = parse(&glib::TimeZone::utc())?;
    let ahead = parse(&glib::TimeZone::from_offset(3600))?;
    if utc != ahead {
        return Err(format!(
            "{text:?} has no time zone: end it with Z or an offset like +01:00"
        ));
    }
    Ok(utc.to_unix() * 1000 + i64::from(utc.microsecond() / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoch_millis_and_iso_8601() {
        assert_eq!(parse_time_ms("1795611398227"), Ok(1_795_611_398_227));
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time_ms("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        assert_eq!(parse_time_ms("2028-02-29T00:00:00Z"), Ok(1_835_395_200_000));
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
        assert_eq!(
            parse_time_ms(" 2026-11-25T13:00:00Z "),
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
            "2026-02-31T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2026-11-25T24:00:01Z",
            "2026-11-25T13:00:00+0é00",
            "2026-11-25T13:00:00+01:é0",
            "２０２６-11-25T13:00:00Z",
            "-5",
            "99999999999999999999",
        ] {
            assert!(parse_time_ms(text).is_err(), "{text:?} accepted");
        }
        assert_eq!(
            parse_time_ms("2026-02-31T00:00:00Z"),
            Err("\"2026-02-31T00:00:00Z\" is neither milliseconds since the epoch nor a valid ISO 8601 date-time like 2026-11-25T13:00:00Z".into())
        );
        assert!(
            parse_time_ms("2026-11-25T13:00:00")
                .unwrap_err()
                .contains("has no time zone")
        );
    }
}
