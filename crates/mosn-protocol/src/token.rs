//! Tokens of HTTP's grammar shared by the codecs and the protocol detector.

/// RFC 9110 §5.6.2 `tchar`: the bytes of a method, a field name or a transfer coding.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `(major, minor)` of a well-formed `HTTP/d.d` version token (RFC 9112 §2.3), else `None`.
pub fn http_version(v: &[u8]) -> Option<(u8, u8)> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some((major - b'0', minor - b'0'))
        }
        _ => None,
    }
}
