//! Go duration strings (`"3s"`, `"250ms"`, `"1m30s"`), as MOSN's `api.DurationConfig` reads them.
//!
//! Source: Go's `time.ParseDuration`: an optional sign, then one or more decimal numbers each with a
//! unit among `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`; `"0"` alone is zero.

use std::time::Duration;

/// Parses a Go duration string. Negative durations are rejected (no MOSN timeout is negative).
///
/// Errors: a message naming what is wrong (missing unit, unknown unit, bad number, negative).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let t = match t.strip_prefix('+') {
        Some(r) => r,
        None => t,
    };
    if t.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = t;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number {:?}", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit (use ns, us, ms, s, m or h)".into()),
            other => {
                return Err(format!(
                    "unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total_ns += num * scale;
    }
    if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
        return Err("duration out of range".into());
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_go_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("10us").unwrap(),
            Duration::from_micros(10)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(parse_go_duration("3").unwrap_err().contains("missing unit"));
        assert!(parse_go_duration("3d")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("s").is_err());
    }
}
