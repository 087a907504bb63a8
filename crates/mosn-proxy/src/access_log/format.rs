//! MOSN's access-log format: text with `%variable%` placeholders, compiled once per listener.
//!
//! Source: MOSN `pkg/log/accesslog.go` and `pkg/proxy/var.go`. Variables: `start_time`
//! (`2006/01/02 15:04:05.000`, UTC), `request_received_duration`, `response_received_duration`,
//! `duration` (Go duration strings), `bytes_sent`, `bytes_received`, `protocol`, `response_code`,
//! `response_flag` (Envoy's short flags, `-` when none), `upstream_host`, `upstream_cluster`,
//! `upstream_local_address`, `downstream_local_address`, `downstream_remote_address`,
//! `request_header_<name>`, `response_header_<name>`, `connection_id`, `listener_name`.
//! Unknown names, and values that do not exist for a request, print `-`.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use mosn_api::{Headers, ResponseFlag};

/// MOSN's default access-log format (`pkg/types/accesslog.go`).
pub const DEFAULT_FORMAT: &str =
    "%start_time% %trace_id%  %connection_id% %upstream_connection_id% \
%request_received_duration% %response_received_duration% %bytes_sent% %bytes_received% %protocol% \
%response_code% %duration% %response_flag% %response_code% %upstream_local_address% \
%downstream_local_address% %downstream_remote_address% %upstream_host%";

#[derive(Debug, Clone, PartialEq)]
enum Var {
    StartTime,
    RequestReceivedDuration,
    ResponseReceivedDuration,
    Duration,
    BytesSent,
    BytesReceived,
    Protocol,
    ResponseCode,
    ResponseFlag,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    RequestHeader(usize),
    ResponseHeader(usize),
    ConnectionId,
    ListenerName,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Lit(String),
    Var(Var),
}

/// A compiled format.
#[derive(Debug, Clone)]
pub struct Format {
    segments: Vec<Segment>,
    /// Request headers the format prints (lower-case names).
    pub request_headers: Vec<String>,
    /// Response headers the format prints (lower-case names).
    pub response_headers: Vec<String>,
}

/// What one access-log line is made of.
pub struct Entry<'a> {
    /// Wall-clock time the request head arrived.
    pub start: SystemTime,
    /// Time from the request head until the request was handed to the upstream.
    pub request_received: Option<Duration>,
    /// Time from the request head until the upstream response head arrived.
    pub response_received: Option<Duration>,
    /// Time from the request head until the response was sent.
    pub duration: Duration,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// `HTTP/1.1`, `HTTP/1.0`, ...
    pub protocol: &'a str,
    /// Response status.
    pub status: u16,
    /// Response flag, if any.
    pub flag: Option<ResponseFlag>,
    /// Upstream host address.
    pub upstream_host: Option<&'a mosn_config::HostAddr>,
    /// Upstream cluster name.
    pub upstream_cluster: Option<&'a str>,
    /// Local address of the upstream connection.
    pub upstream_local: Option<SocketAddr>,
    /// Local address of the client connection.
    pub downstream_local: SocketAddr,
    /// Client address.
    pub downstream_remote: SocketAddr,
    /// The request head, read for `request_header_<name>`.
    pub request: Option<&'a dyn Headers>,
    /// The response head, read for `response_header_<name>`.
    pub response: Option<&'a dyn Headers>,
    /// Connection id, unique within the process.
    pub connection_id: u64,
    /// Listener name.
    pub listener_name: &'a str,
}

/// Appends an integer in decimal (itoa: no `core::fmt` on the per-request path).
fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends `ip:port` (`[ip]:port` for IPv6) as `SocketAddr`'s `Display` does, IPv4 without
/// `core::fmt`.
fn push_addr(out: &mut String, a: &SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_int(out, *o);
            }
            out.push(':');
            push_int(out, v4.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Appends `d` as [`go_duration`] formats it, without allocating for durations under a minute.
pub fn write_go_duration(out: &mut String, d: Duration) {
    let ns = d.as_nanos();
    // value in the unit, as integer part and 9-digit fraction, trailing zeros trimmed
    let mut frac = |whole: u128, rem: u128, digits: u32, unit: &str| {
        // Under a minute both parts fit in a u64.
        push_int(out, whole as u64);
        if rem > 0 {
            let mut r = rem as u64;
            let mut width = digits as usize;
            while r.is_multiple_of(10) {
                r /= 10;
                width -= 1;
            }
            out.push('.');
            let mut b = itoa::Buffer::new();
            let digits = b.format(r);
            for _ in digits.len()..width {
                out.push('0');
            }
            out.push_str(digits);
        }
        out.push_str(unit);
    };
    match ns {
        0 => out.push_str("0s"),
        1..=999 => frac(ns, 0, 0, "ns"),
        1_000..=999_999 => frac(ns / 1_000, ns % 1_000, 3, "µs"),
        1_000_000..=999_999_999 => frac(ns / 1_000_000, ns % 1_000_000, 6, "ms"),
        1_000_000_000..=59_999_999_999 => frac(ns / 1_000_000_000, ns % 1_000_000_000, 9, "s"),
        _ => out.push_str(&go_duration(d)),
    }
}

/// Formats a duration as Go's `time.Duration.String()` does for durations under a minute
/// (`"1.5ms"`, `"250µs"`, `"2.000123s"`), and `"1m30s"` style above.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let trim = |v: f64, unit: &str| {
        let s = format!("{v:.9}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}{unit}")
    };
    if ns == 0 {
        "0s".into()
    } else if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim(ns as f64 / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        trim(ns as f64 / 1e6, "ms")
    } else if ns < 60_000_000_000 {
        trim(ns as f64 / 1e9, "s")
    } else {
        let secs = d.as_secs();
        let (h, m) = (secs / 3600, (secs / 60) % 60);
        let s = trim((ns % 60_000_000_000) as f64 / 1e9, "s");
        if h > 0 {
            format!("{h}h{m}m{s}")
        } else {
            format!("{m}m{s}")
        }
    }
}

#[cfg(test)]
fn start_time(t: SystemTime) -> String {
    let mut s = String::new();
    write_start_time(&mut s, t);
    s
}

thread_local! {
    /// The last second formatted (`2006/01/02 15:04:05`), reused while it does not change.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Appends `t` as `2006/01/02 15:04:05.000` (UTC), formatting the date once per second.
fn write_start_time(out: &mut String, t: SystemTime) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let f =
                time::macros::format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");
            c.1 = time::OffsetDateTime::from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .format(&f)
                .unwrap_or_else(|_| "-".into());
            c.0 = secs;
        }
        out.push_str(&c.1);
    });
    let ms = since.subsec_millis();
    out.push('.');
    out.push(char::from(b'0' + (ms / 100) as u8));
    out.push(char::from(b'0' + (ms / 10 % 10) as u8));
    out.push(char::from(b'0' + (ms % 10) as u8));
}

impl Format {
    /// Compiles a format.
    ///
    /// Errors: an unterminated `%`, or a header name that is not valid HTTP.
    pub fn parse(text: &str) -> Result<Format, String> {
        let mut segments = Vec::new();
        let mut request_headers: Vec<String> = Vec::new();
        let mut response_headers: Vec<String> = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            if i > 0 {
                segments.push(Segment::Lit(rest[..i].to_string()));
            }
            let after = &rest[i + 1..];
            let j = after
                .find('%')
                .ok_or_else(|| format!("unterminated variable at {:?}", &rest[i..]))?;
            let name = &after[..j];
            let header = |prefix: &str, list: &mut Vec<String>| -> Result<Option<usize>, String> {
                match name.strip_prefix(prefix) {
                    None => Ok(None),
                    Some(h) => {
                        let n = h.to_ascii_lowercase();
                        if n.is_empty()
                            || !n.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            })
                        {
                            return Err(format!("{h:?} is not a header name"));
                        }
                        list.push(n);
                        Ok(Some(list.len() - 1))
                    }
                }
            };
            let var = if let Some(k) = header("request_header_", &mut request_headers)? {
                Var::RequestHeader(k)
            } else if let Some(k) = header("response_header_", &mut response_headers)? {
                Var::ResponseHeader(k)
            } else {
                match name {
                    "start_time" => Var::StartTime,
                    "request_received_duration" => Var::RequestReceivedDuration,
                    "response_received_duration" => Var::ResponseReceivedDuration,
                    "duration" | "request_finished_duration" => Var::Duration,
                    "bytes_sent" => Var::BytesSent,
                    "bytes_received" => Var::BytesReceived,
                    "protocol" => Var::Protocol,
                    "response_code" => Var::ResponseCode,
                    "response_flag" => Var::ResponseFlag,
                    "upstream_host" => Var::UpstreamHost,
                    "upstream_cluster" => Var::UpstreamCluster,
                    "upstream_local_address" => Var::UpstreamLocalAddress,
                    "downstream_local_address" => Var::DownstreamLocalAddress,
                    "downstream_remote_address" => Var::DownstreamRemoteAddress,
                    "connection_id" => Var::ConnectionId,
                    "listener_name" => Var::ListenerName,
                    _ => Var::Unknown,
                }
            };
            segments.push(Segment::Var(var));
            rest = &after[j + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Lit(rest.to_string()));
        }
        Ok(Format {
            segments,
            request_headers,
            response_headers,
        })
    }

    /// Appends one line (with its `\n`) for `e` to `out`.
    pub fn render(&self, e: &Entry<'_>, out: &mut String) {
        fn opt<T: std::fmt::Display>(out: &mut String, v: Option<T>) {
            match v {
                Some(v) => {
                    let _ = write!(out, "{v}");
                }
                None => out.push('-'),
            }
        }
        fn header(out: &mut String, h: Option<&dyn Headers>, name: Option<&String>) {
            match h.zip(name).and_then(|(h, n)| h.get_str(n)) {
                Some(s) => out.push_str(s),
                None => out.push('-'),
            }
        }
        for s in &self.segments {
            match s {
                Segment::Lit(l) => out.push_str(l),
                Segment::Var(v) => match v {
                    Var::StartTime => write_start_time(out, e.start),
                    Var::RequestReceivedDuration => match e.request_received {
                        Some(d) => write_go_duration(out, d),
                        None => out.push('-'),
                    },
                    Var::ResponseReceivedDuration => match e.response_received {
                        Some(d) => write_go_duration(out, d),
                        None => out.push('-'),
                    },
                    Var::Duration => write_go_duration(out, e.duration),
                    Var::BytesSent => push_int(out, e.bytes_sent),
                    Var::BytesReceived => push_int(out, e.bytes_received),
                    Var::Protocol => out.push_str(e.protocol),
                    Var::ResponseCode => push_int(out, e.status),
                    Var::ResponseFlag => opt(out, e.flag.map(|f| f.short())),
                    Var::UpstreamHost => match e.upstream_host {
                        Some(mosn_config::HostAddr::Tcp(a)) => push_addr(out, a),
                        other => opt(out, other),
                    },
                    Var::UpstreamCluster => opt(out, e.upstream_cluster),
                    Var::UpstreamLocalAddress => match &e.upstream_local {
                        Some(a) => push_addr(out, a),
                        None => out.push('-'),
                    },
                    Var::DownstreamLocalAddress => push_addr(out, &e.downstream_local),
                    Var::DownstreamRemoteAddress => push_addr(out, &e.downstream_remote),
                    Var::RequestHeader(i) => header(out, e.request, self.request_headers.get(*i)),
                    Var::ResponseHeader(i) => {
                        header(out, e.response, self.response_headers.get(*i))
                    }
                    Var::ConnectionId => push_int(out, e.connection_id),
                    Var::ListenerName => out.push_str(e.listener_name),
                    Var::Unknown => out.push('-'),
                },
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for d in [
            512,
            250_000,
            1_500_000,
            2_001_000_000,
            1_234_567,
            999_999_999,
            59_000_000_000u64,
            1_005_000,
            1_000_050,
            2_000_000_007,
            20_030,
        ] {
            let d = Duration::from_nanos(d);
            let mut s = String::new();
            write_go_duration(&mut s, d);
            assert_eq!(s, go_duration(d), "{d:?}");
        }
        assert_eq!(go_duration(Duration::from_nanos(512)), "512ns");
        assert_eq!(go_duration(Duration::from_micros(250)), "250µs");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_millis(2001)), "2.001s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn renders_variables_and_dashes() {
        let f = Format::parse("%protocol% %response_code% %response_flag% [%request_header_X-Id%] %nope% %listener_name%")
            .unwrap();
        assert_eq!(f.request_headers, vec!["x-id".to_string()]);
        let req = mosn_api::HeaderVec(vec![("x-id".into(), b"abc".to_vec())]);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = Entry {
            start: SystemTime::UNIX_EPOCH,
            request_received: None,
            response_received: None,
            duration: Duration::from_millis(1),
            bytes_sent: 0,
            bytes_received: 0,
            protocol: "HTTP/1.1",
            status: 502,
            flag: Some(ResponseFlag::UpstreamConnectionFailure),
            upstream_host: None,
            upstream_cluster: None,
            upstream_local: None,
            downstream_local: addr,
            downstream_remote: addr,
            request: Some(&req),
            response: None,
            connection_id: 7,
            listener_name: "l1",
        };
        let mut out = String::new();
        f.render(&e, &mut out);
        assert_eq!(out, "HTTP/1.1 502 UF [abc] - l1\n");
        assert!(Format::parse("%oops").is_err());
        assert_eq!(
            start_time(SystemTime::UNIX_EPOCH),
            "1970/01/01 00:00:00.000"
        );
    }
}
