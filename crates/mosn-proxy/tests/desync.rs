//! Request smuggling (HTTP desync) through the proxy, on a corpus we did not write: the 159
//! requests of the crates.io package `http_desync_guardian = "=0.1.3"` (`tests/*.yaml`, Apache-2.0,
//! vendored unchanged under `tests/data/http_desync_guardian`), each labelled Compliant,
//! Acceptable, Ambiguous or Severe by that project.
//!
//! Each request is written as that project builds it (`{method} {uri} {version}\r\n`, then
//! `{name}: {value}\r\n` per header), with a `Host` added when it has none (each case gets its own
//! virtual host, cluster and recording upstream), the body its framing promises, and a canary
//! request right behind it on the same connection. The upstream is a raw TCP server that records
//! every request as a strict parser reads it.
//!
//! Expected:
//! - Severe: a 400, the connection closed, nothing reaches the upstream.
//! - Ambiguous: a 400 with nothing upstream, or the request forwarded with clean framing, one
//!   response, and the connection closed (so the canary is never read).
//! - Compliant and Acceptable: the request forwarded intact (method, target, every end-to-end
//!   field in order with its name spelled as sent, the body, the transfer codings), then the canary
//!   as a request of its own.
//! - Whatever the label: the canary arrives at most once and never inside another request.
//!
//! Where a Compliant or Acceptable request breaks a rule the proxy applies by RFC 9112 (whitespace
//! or a control character in a field name, a control character in a value, an invalid request
//! line: empty or space-containing target, HTTP/0.9), the expected answer is that rule's error
//! (400, or 505 for the version) with nothing forwarded; [`rule_broken`] names the rule, and the
//! report at the end lists every such case.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster, config, proxy};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yaml_rust2::{Yaml, YamlLoader};

const CANARY: &[u8] = b"GET /canary HTTP/1.1\r\nHost: HOST\r\n\r\n";

#[derive(Debug, Clone)]
struct Case {
    file: String,
    name: String,
    tier: String,
    method: String,
    uri: String,
    version: String,
    headers: Vec<(String, String)>,
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null | Yaml::BadValue => String::new(),
        other => panic!("unexpected YAML value {other:?}"),
    }
}

fn corpus() -> Vec<Case> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/http_desync_guardian"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        let Some(list) = docs.first().and_then(Yaml::as_vec) else {
            continue;
        };
        for c in list {
            cases.push(Case {
                file: f.file_name().unwrap().to_string_lossy().into_owned(),
                name: scalar(&c["name"]),
                tier: scalar(&c["expected"]["tier"]),
                method: scalar(&c["method"]),
                uri: scalar(&c["uri"]),
                version: scalar(&c["version"]),
                headers: c["headers"]
                    .as_vec()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (scalar(&h["name"]), scalar(&h["value"])))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    cases
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The RFC 9112 rule a request breaks, which the proxy enforces whatever the corpus's label, with
/// the status it answers.
fn rule_broken(c: &Case) -> Option<(&'static str, u16)> {
    if c.method.is_empty() || !c.method.bytes().all(is_tchar) {
        return Some(("method is not a token (RFC 9112 §3.1)", 400));
    }
    if c.uri.is_empty() || c.uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Some((
            "request target empty or with whitespace or control characters (RFC 9112 §3.2)",
            400,
        ));
    }
    // Written here independently of the proxy's parser: this is the test's own oracle.
    match c.version.as_bytes() {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => {}
        [b'H', b'T', b'T', b'P', b'/', d, b'.', e] if d.is_ascii_digit() && e.is_ascii_digit() => {
            return Some(("HTTP version other than 1.x (RFC 9110 §15.6.6)", 505))
        }
        _ => return Some(("malformed request line (RFC 9112 §3)", 400)),
    }
    for (n, v) in &c.headers {
        if n.is_empty() || !n.bytes().all(is_tchar) {
            return Some((
                "field name not a token: whitespace, control or non-ASCII (RFC 9112 §5.1)",
                400,
            ));
        }
        if v.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Some(("control character in a field value (RFC 9110 §5.5)", 400));
        }
    }
    None
}

fn has_header(c: &Case, name: &str) -> bool {
    c.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// The body the request's framing promises, as a sender that reads its own headers leniently
/// would write it, and its decoded content.
fn body_for(c: &Case) -> (Vec<u8>, Vec<u8>) {
    let te = c.headers.iter().any(|(n, v)| {
        n.trim().eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().contains("chunked")
    });
    if te {
        return (b"5\r\nhello\r\n0\r\n\r\n".to_vec(), b"hello".to_vec());
    }
    let cl = c.headers.iter().find_map(|(n, v)| {
        if !n.trim().eq_ignore_ascii_case("content-length") {
            return None;
        }
        let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().ok()
    });
    match cl {
        Some(n) if n <= 8 << 20 => (vec![b'b'; n], vec![b'b'; n]),
        _ => (Vec::new(), Vec::new()),
    }
}

fn request_bytes(c: &Case, host: &str) -> Vec<u8> {
    let mut r = format!("{} {} {}\r\n", c.method, c.uri, c.version).into_bytes();
    for (n, v) in &c.headers {
        r.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if !has_header(c, "host") {
        r.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(&body_for(c).0);
    r.extend_from_slice(
        &String::from_utf8_lossy(CANARY)
            .replace("HOST", host)
            .into_bytes(),
    );
    r
}

/// One request as the recording upstream read it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    /// Bytes a strict parser could not read as requests (unclean framing).
    garbage: Vec<String>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one chunked body strictly from `buf[at..]`: `Some((decoded, end))` when complete.
fn chunked(buf: &[u8], mut at: usize) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(line, 16).map_err(|_| format!("chunk size {line:?}"))?;
        at += eol + 2;
        if size == 0 {
            return match buf.get(at..at + 2) {
                Some(b"\r\n") => Ok(Some((out, at + 2))),
                Some(_) => Err("trailers or junk after the last chunk".into()),
                None => Ok(None),
            };
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk without CRLF".into());
        }
        at += size + 2;
    }
}

/// Parses one complete request at the start of `buf`: `Ok(Some((request, length, close)))`.
fn parse_one(buf: &[u8]) -> Result<Option<(Recorded, usize, bool)>, String> {
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Request::new(&mut hs);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("{e}")),
    };
    let headers: Vec<(Vec<u8>, Vec<u8>)> = r
        .headers
        .iter()
        .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    };
    let (cl, te) = (get("content-length"), get("transfer-encoding"));
    let close = get("connection")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("close"));
    let rec = |body: Vec<u8>| Recorded {
        method: r.method.unwrap_or_default().as_bytes().to_vec(),
        target: r.path.unwrap_or_default().as_bytes().to_vec(),
        headers: headers.clone(),
        body,
    };
    match (cl.as_slice(), te.as_slice()) {
        ([], []) => Ok(Some((rec(Vec::new()), n, close))),
        ([len], []) => {
            let len: usize = len.parse().map_err(|_| format!("content-length {len:?}"))?;
            if buf.len() < n + len {
                return Ok(None);
            }
            Ok(Some((rec(buf[n..n + len].to_vec()), n + len, close)))
        }
        ([], [te]) if te.to_ascii_lowercase().ends_with("chunked") => {
            Ok(chunked(buf, n)?.map(|(body, end)| (rec(body), end, close)))
        }
        _ => Err(format!("framing fields CL {cl:?} TE {te:?}")),
    }
}

/// A raw TCP upstream that records requests and answers each with `200 ok`.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = log.clone();
    let addr = common::tcp_server(move |mut s| {
        let log = log2.clone();
        async move {
            let mut buf = Vec::new();
            let mut tmp = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => {
                        if !buf.is_empty() {
                            log.lock().unwrap().garbage.push(format!(
                                "connection ended inside a request: {:?}",
                                String::from_utf8_lossy(&buf)
                            ));
                        }
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
                loop {
                    match parse_one(&buf) {
                        Ok(Some((r, len, close))) => {
                            let head = r.method == b"HEAD";
                            log.lock().unwrap().requests.push(r);
                            buf.drain(..len);
                            let mut resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
                            if close {
                                resp.extend_from_slice(b"connection: close\r\n");
                            }
                            resp.extend_from_slice(if head { b"\r\n" } else { b"\r\nok" });
                            if s.write_all(&resp).await.is_err() || close {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            log.lock()
                                .unwrap()
                                .garbage
                                .push(format!("{e}: {:?}", String::from_utf8_lossy(&buf)));
                            return;
                        }
                    }
                }
            }
        }
    })
    .await;
    (addr, log)
}

/// What the client saw: the statuses of complete responses, and whether the proxy closed. The
/// first response has no body when `head` (the request was HEAD).
async fn exchange(addr: SocketAddr, bytes: &[u8], head: bool) -> (Vec<u16>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The proxy may answer (400) and close before reading it all: a failed write is not an error.
    let _ = s.write_all(bytes).await;
    let until = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let mut statuses = Vec::new();
    loop {
        // Parse what we have.
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            let Ok(httparse::Status::Complete(n)) = r.parse(&buf) else {
                break;
            };
            let len = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            let len = if head && statuses.is_empty() { 0 } else { len };
            if buf.len() < n + len {
                break;
            }
            statuses.push(r.code.unwrap_or(0));
            buf.drain(..n + len);
        }
        if statuses.len() >= 2 {
            return (statuses, false);
        }
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (statuses, true),
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => return (statuses, false),
        }
    }
}

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "x-forwarded-for",
];

fn end_to_end(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .filter(|(n, _)| !HOP.iter().any(|h| n.eq_ignore_ascii_case(h.as_bytes())))
        .map(|(n, v)| (n.clone(), v.trim_ascii().to_vec()))
        .collect()
}

fn codings(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|e| {
                    e.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .filter(|e| !e.is_empty() && e != "chunked")
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Checks that `got` is `c` forwarded intact.
fn intact(c: &Case, host: &str, got: &Recorded) -> Result<(), String> {
    if got.method != c.method.as_bytes() || got.target != c.uri.as_bytes() {
        return Err(format!(
            "request line changed: {:?} {:?}",
            String::from_utf8_lossy(&got.method),
            String::from_utf8_lossy(&got.target)
        ));
    }
    let sent: Vec<(Vec<u8>, Vec<u8>)> = c
        .headers
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    if end_to_end(&sent) != end_to_end(&got.headers) {
        return Err(format!(
            "fields changed: sent {:?}, got {:?}",
            end_to_end(&sent),
            end_to_end(&got.headers)
        ));
    }
    let value = |hs: &[(Vec<u8>, Vec<u8>)], name: &str| {
        hs.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v.trim_ascii()).into_owned())
    };
    let want_xff = match value(&sent, "x-forwarded-for") {
        Some(x) => format!("{x}, 127.0.0.1"),
        None => "127.0.0.1".into(),
    };
    if value(&got.headers, "x-forwarded-for") != Some(want_xff.clone()) {
        return Err(format!(
            "x-forwarded-for: want {want_xff}, got {:?}",
            got.headers
        ));
    }
    let want_host = value(&sent, "host").unwrap_or_else(|| host.to_string());
    if value(&got.headers, "host") != Some(want_host) {
        return Err("host changed".into());
    }
    if codings(&sent) != codings(&got.headers) {
        return Err(format!(
            "transfer codings changed: {:?} -> {:?}",
            codings(&sent),
            codings(&got.headers)
        ));
    }
    if got.body != body_for(c).1 {
        return Err(format!("body changed: {} bytes", got.body.len()));
    }
    Ok(())
}

/// Runs one case; `Ok(outcome)` names what happened, `Err` what was wrong.
async fn run(
    c: Case,
    host: String,
    proxy: SocketAddr,
    log: Arc<Mutex<Log>>,
) -> Result<&'static str, String> {
    let (statuses, closed) = exchange(proxy, &request_bytes(&c, &host), c.method == "HEAD").await;
    let (requests, garbage) = {
        let l = log.lock().unwrap();
        (l.requests.clone(), l.garbage.clone())
    };
    if !garbage.is_empty() {
        return Err(format!("unclean framing upstream: {garbage:?}"));
    }
    let canaries = requests.iter().filter(|r| r.target == b"/canary").count();
    if canaries > 1 {
        return Err("the canary arrived twice".into());
    }
    if let Some(r) = requests
        .iter()
        .find(|r| find(&r.body, b"/canary").is_some())
    {
        return Err(format!(
            "the canary arrived inside the body of {:?}",
            String::from_utf8_lossy(&r.target)
        ));
    }
    let refused = |status: u16| -> Result<(), String> {
        if statuses.first() != Some(&status) || statuses.len() != 1 || !closed {
            return Err(format!(
                "want {status} and a close, got {statuses:?} closed={closed}"
            ));
        }
        if !requests.is_empty() {
            return Err(format!(
                "refused but {} request(s) reached the upstream",
                requests.len()
            ));
        }
        Ok(())
    };
    if let Some((_, status)) = rule_broken(&c) {
        return refused(status).map(|_| "refused by an RFC 9112 rule");
    }
    match c.tier.as_str() {
        "Severe" => refused(400).map(|_| "refused"),
        "Ambiguous" => {
            if statuses.first() == Some(&400) {
                return refused(400).map(|_| "refused");
            }
            if statuses != [200] || !closed || requests.len() != 1 || canaries != 0 {
                return Err(format!(
                    "ambiguous: want one forwarded request, one response and a close; got \
                     {statuses:?} closed={closed}, {} upstream request(s)",
                    requests.len()
                ));
            }
            if requests[0].target != c.uri.as_bytes() {
                return Err("ambiguous: forwarded request changed".into());
            }
            Ok("forwarded, then closed")
        }
        "Compliant" | "Acceptable" => {
            if statuses != [200, 200] || requests.len() != 2 || canaries != 1 {
                return Err(format!(
                    "want the request and the canary forwarded; got {statuses:?} closed={closed}, \
                     upstream saw {:?}",
                    requests
                        .iter()
                        .map(|r| String::from_utf8_lossy(&r.target).into_owned())
                        .collect::<Vec<_>>()
                ));
            }
            intact(&c, &host, &requests[0])?;
            if requests[1].target != b"/canary" {
                return Err("the canary is not the second request".into());
            }
            Ok("forwarded intact")
        }
        t => Err(format!("unknown tier {t}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desync_guardian_corpus() {
    let cases = corpus();
    assert_eq!(cases.len(), 159, "the corpus has 159 requests");
    let mut vhosts = Vec::new();
    let mut clusters = Vec::new();
    let mut logs = Vec::new();
    for i in 0..cases.len() {
        let (addr, log) = recording_upstream().await;
        vhosts.push(
            json!({"name": format!("v{i}"), "domains": [format!("case-{i}")],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": format!("c{i}")}}]}),
        );
        clusters.push(cluster(&format!("c{i}"), &[addr]));
        logs.push(log);
    }
    // Requests that bring their own Host land here; the case checks this upstream too.
    let (stray_addr, stray) = recording_upstream().await;
    vhosts.push(json!({"name": "stray", "domains": ["*"],
        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "stray"}}]}));
    clusters.push(cluster("stray", &[stray_addr]));
    let p = proxy(config(json!(vhosts), json!(clusters)));

    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().cloned().enumerate() {
        let log = if has_header(&c, "host") {
            stray.clone()
        } else {
            logs[i].clone()
        };
        let addr = p.addr;
        tasks.spawn(async move {
            let label = format!("{} / {} [{}]", c.file, c.name, c.tier);
            let rule = rule_broken(&c).map(|r| r.0);
            (i, label, rule, run(c, format!("case-{i}"), addr, log).await)
        });
    }
    let mut results = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (i, label, rule, outcome) = r.unwrap();
        results.insert(i, (label, rule, outcome));
    }
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (label, rule, outcome) in results.values() {
        match outcome {
            Ok(o) => {
                let tier = label.rsplit('[').next().unwrap_or("").trim_end_matches(']');
                *summary.entry(format!("{tier}: {o}")).or_default() += 1;
                if let Some(r) = rule {
                    eprintln!("{label}: {o}: {r}");
                }
            }
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    eprintln!("{summary:#?}");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
