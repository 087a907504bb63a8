//! MOSN's `global_log_roller` (`pkg/log/roller.go`): `"size=N age=D keep=K"` (rotate past N MB,
//! delete backups older than D days, keep at most K backups) or `"time=H"` (rotate every H hours).
//! Sizes may be fractional (`size=0.5`).

use std::time::Duration;

/// When to rotate a log file and which backups to keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roller {
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: Option<u64>,
    /// Rotate this often.
    pub every: Option<Duration>,
    /// Delete backups older than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many backups.
    pub keep: Option<usize>,
}

impl Roller {
    /// Parses MOSN's roller string.
    ///
    /// Errors: an unknown key or a value that is not a number.
    pub fn parse(s: &str) -> Result<Roller, String> {
        let mut r = Roller::default();
        for part in s.split_whitespace() {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            let num: f64 = v.parse().map_err(|_| format!("{k}={v:?}: not a number"))?;
            if !(num.is_finite() && num >= 0.0) {
                return Err(format!("{k}={v:?}: not a positive number"));
            }
            match k {
                "size" => r.max_bytes = Some((num * 1024.0 * 1024.0) as u64),
                "time" => r.every = Some(Duration::from_secs_f64(num * 3600.0)),
                "age" => r.max_age = Some(Duration::from_secs_f64(num * 86400.0)),
                "keep" => r.keep = Some(num as usize),
                "compress" | "localtime" => {}
                other => {
                    return Err(format!(
                        "unknown roller key {other:?} (size, time, age, keep)"
                    ))
                }
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roller_strings() {
        let r = Roller::parse("size=100 age=10 keep=5").unwrap();
        assert_eq!(r.max_bytes, Some(100 << 20));
        assert_eq!(r.keep, Some(5));
        assert_eq!(r.max_age, Some(Duration::from_secs(864_000)));
        assert_eq!(
            Roller::parse("time=24").unwrap().every,
            Some(Duration::from_secs(86_400))
        );
        assert!(Roller::parse("size=x").is_err());
        assert!(Roller::parse("bogus=1").is_err());
    }
}
