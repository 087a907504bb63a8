//! HTTP/1 heads. The bytes of a head stay in one shared buffer as received; fields point into it
//! by offset, so parsing copies nothing. A field changed by a filter or header mutation gets bytes
//! of its own. Names keep the client's spelling, so they reach the upstream as written (as nginx
//! does); lookups ignore case.

use bytes::Bytes;
use mosn_api::Headers;

/// Bytes of a head: a range of the received buffer, or bytes of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text {
    /// `raw[start..end]`.
    Raw(u32, u32),
    /// Set after parsing.
    Own(Bytes),
}

impl Text {
    #[inline]
    pub(crate) fn get<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        match self {
            Text::Raw(a, b) => raw.get(*a as usize..*b as usize).unwrap_or(&[]),
            Text::Own(b) => b,
        }
    }
}

/// How a field takes part in proxying (RFC 9110 §7.6.1, RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// End to end: forwarded.
    Forward,
    /// Hop by hop, framing, or named by `Connection`: not forwarded; the proxy writes its own.
    Hop,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) name: Text,
    pub(crate) value: Text,
    pub(crate) role: Role,
}

/// The header fields of a head, in order.
#[derive(Debug, Clone, Default)]
pub struct FieldList {
    pub(crate) raw: Bytes,
    pub(crate) fields: Vec<Field>,
}

/// Fields that never cross a proxy (RFC 9110 §7.6.1) plus the framing fields, which the proxy
/// writes itself, and `Expect`, which the proxy answers itself.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 11] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"expect",
        b"content-length",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

impl FieldList {
    /// The first value of `name` (any case), forwarded or not.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.name.get(&self.raw).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value.get(&self.raw))
    }

    /// Every value of `name` (any case).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.get(&self.raw).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |f| f.value.get(&self.raw))
    }

    /// Forwarded fields as `(name as sent, value)`.
    pub fn forwarded(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .filter(|f| f.role == Role::Forward)
            .map(move |f| (f.name.get(&self.raw), f.value.get(&self.raw)))
    }

    /// Number of fields, forwarded or not.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there is no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(crate) fn set(&mut self, name: &str, value: &[u8]) {
        let v = Text::Own(Bytes::copy_from_slice(value));
        let raw = &self.raw;
        let mut first = None;
        let mut i = 0;
        self.fields.retain(|f| {
            let hit = f.name.get(raw).eq_ignore_ascii_case(name.as_bytes());
            let keep = !hit || first.is_none();
            if hit && first.is_none() {
                first = Some(i);
            }
            i += usize::from(keep);
            keep
        });
        match first {
            Some(i) => {
                self.fields[i].value = v;
                self.fields[i].role = Role::Forward;
            }
            None => self.push(name, v),
        }
    }

    pub(crate) fn append(&mut self, name: &str, value: &[u8]) {
        self.push(name, Text::Own(Bytes::copy_from_slice(value)));
    }

    fn push(&mut self, name: &str, value: Text) {
        let role = if is_hop_by_hop(name.as_bytes()) {
            Role::Hop
        } else {
            Role::Forward
        };
        self.fields.push(Field {
            name: Text::Own(Bytes::copy_from_slice(name.as_bytes())),
            value,
            role,
        });
    }

    /// Appends a field with its own copy of `name` and `value`.
    pub(crate) fn push_bytes(&mut self, name: &[u8], value: &[u8]) {
        let role = if is_hop_by_hop(name) {
            Role::Hop
        } else {
            Role::Forward
        };
        self.fields.push(Field {
            name: Text::Own(Bytes::copy_from_slice(name)),
            value: Text::Own(Bytes::copy_from_slice(value)),
            role,
        });
    }

    pub(crate) fn remove(&mut self, name: &str) {
        let raw = &self.raw;
        self.fields
            .retain(|f| !f.name.get(raw).eq_ignore_ascii_case(name.as_bytes()));
    }

    pub(crate) fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for x in &self.fields {
            f(x.name.get(&self.raw), x.value.get(&self.raw));
        }
    }
}

/// The [`Headers`] methods both heads share: a pseudo-header appended is set; pseudo-headers are
/// never removed or visited; the rest goes to the field list.
macro_rules! field_ops {
    () => {
        fn append(&mut self, key: &str, value: &[u8]) {
            if key.starts_with(':') {
                self.set(key, value)
            } else {
                self.fields.append(key, value)
            }
        }
        fn remove(&mut self, key: &str) {
            if !key.starts_with(':') {
                self.fields.remove(key)
            }
        }
        fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
            self.fields.visit(f)
        }
    };
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub(crate) method: Text,
    pub(crate) target: Text,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The header fields.
    pub fields: FieldList,
    /// The authority of an absolute-form target (`http://host/path`), which takes the place of Host.
    pub(crate) authority: Option<Text>,
    /// True when the client asked to keep the connection open after this request (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// True when the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Why the request is valid but could be framed differently by another parser (see
    /// [`crate::http1::parse`]); such a request is the last on its downstream and upstream
    /// connections. `None` for ordinary requests.
    pub ambiguous: Option<&'static str>,
    /// The transfer codings applied before `chunked` (`gzip, deflate`), which must reach the
    /// upstream with the body.
    pub(crate) codings: Option<Bytes>,
}

impl RequestHead {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &[u8] {
        self.method.get(&self.fields.raw)
    }

    /// True for `HEAD`, whose response has no body.
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// The target in origin form: path and query (`/a?b`).
    pub fn path_and_query(&self) -> &[u8] {
        self.target.get(&self.fields.raw)
    }

    /// The path without the query.
    pub fn path(&self) -> &[u8] {
        let t = self.path_and_query();
        match t.iter().position(|b| *b == b'?') {
            Some(i) => &t[..i],
            None => t,
        }
    }

    /// The Host: the `Host` field, else the authority of an absolute-form target.
    pub fn host(&self) -> Option<&[u8]> {
        self.fields
            .get("host")
            .or_else(|| self.authority.as_ref().map(|a| a.get(&self.fields.raw)))
    }

    /// Replaces the path and query.
    pub fn set_path_and_query(&mut self, v: &[u8]) {
        self.target = Text::Own(Bytes::copy_from_slice(v));
    }
}

impl RequestHead {
    /// A head built by the proxy from another protocol's request (HTTP/2 to HTTP/1): HTTP/1.1,
    /// keep-alive, `fields` as `(lower-case name, value)` in order. A `host` field or
    /// `authority` gives the Host; hop-by-hop names are kept out of the forwarded set.
    pub fn synthetic<'a>(
        method: &[u8],
        target: &[u8],
        authority: Option<&[u8]>,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Self {
        let mut list = FieldList::default();
        for (n, v) in fields {
            list.push_bytes(n, v);
        }
        RequestHead {
            method: Text::Own(Bytes::copy_from_slice(method)),
            target: Text::Own(Bytes::copy_from_slice(target)),
            minor: 1,
            fields: list,
            authority: authority.map(|a| Text::Own(Bytes::copy_from_slice(a))),
            keep_alive: true,
            expect_continue: false,
            ambiguous: None,
            codings: None,
        }
    }
}

impl Headers for RequestHead {
    fn get(&self, key: &str) -> Option<&[u8]> {
        match key {
            ":method" => Some(self.method()),
            ":path" => Some(self.path_and_query()),
            ":authority" => self.host(),
            ":scheme" => Some(b"http"),
            _ => self.fields.get(key),
        }
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        match key {
            ":method" => self.method = Text::Own(Bytes::copy_from_slice(value)),
            ":path" => self.set_path_and_query(value),
            ":authority" => self.fields.set("host", value),
            ":scheme" => {}
            _ => self.fields.set(key, value),
        }
    }
    field_ops!();
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code, 100..=999.
    pub status: u16,
    status_text: [u8; 3],
    pub(crate) reason: Text,
    /// Minor version of the upstream's response.
    pub minor: u8,
    /// The header fields.
    pub fields: FieldList,
    /// True when the upstream will keep the connection open after this response.
    pub keep_alive: bool,
    /// The transfer codings other than `chunked` (`gzip`), which must reach the client with the
    /// body.
    pub(crate) codings: Option<Bytes>,
}

impl ResponseHead {
    /// A head made by the proxy (a local reply): no fields yet.
    pub fn local(status: u16) -> Self {
        ResponseHead {
            status,
            status_text: status_text(status),
            reason: Text::Own(Bytes::new()),
            minor: 1,
            fields: FieldList::default(),
            keep_alive: true,
            codings: None,
        }
    }

    pub(crate) fn new(status: u16, reason: Text, minor: u8, fields: FieldList) -> Self {
        ResponseHead {
            status,
            status_text: status_text(status),
            reason,
            minor,
            fields,
            keep_alive: true,
            codings: None,
        }
    }

    /// A head built by the proxy from another protocol's response (HTTP/2 to HTTP/1): `fields`
    /// as `(lower-case name, value)` in order, hop-by-hop names kept out of the forwarded set.
    pub fn synthetic<'a>(
        status: u16,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Self {
        let mut head = ResponseHead::local(status);
        for (n, v) in fields {
            head.fields.push_bytes(n, v);
        }
        head
    }

    /// Changes the status (the reason phrase is dropped: the encoder writes the standard one).
    pub fn set_status(&mut self, status: u16) {
        if status != self.status && (100..=999).contains(&status) {
            self.status = status;
            self.status_text = status_text(status);
            self.reason = Text::Own(Bytes::new());
        }
    }

    /// The reason phrase as received (may be empty).
    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.fields.raw)
    }
}

impl Headers for ResponseHead {
    fn get(&self, key: &str) -> Option<&[u8]> {
        match key {
            ":status" => Some(&self.status_text),
            _ => self.fields.get(key),
        }
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        if key == ":status" {
            if let Some(s) = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                self.set_status(s);
            }
        } else if !key.starts_with(':') {
            self.fields.set(key, value)
        }
    }
    field_ops!();
}

fn status_text(s: u16) -> [u8; 3] {
    let s = s.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}
