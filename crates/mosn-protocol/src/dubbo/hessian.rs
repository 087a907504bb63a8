//! Just enough Hessian 2.0 to route Dubbo: read strings, skip any value (the call's arguments stay
//! opaque), and read a map of string attachments. Every read is bounded by the input; malformed
//! input is an error, never a panic.
//!
//! Source: the Hessian 2.0 serialization grammar (hessian.caucho.com/doc/hessian-serialization.html).

/// Bytes that are not the Hessian 2.0 the reader expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HessianError {
    /// The input ended inside a value.
    #[error("hessian: input ends inside a value")]
    Eof,
    /// A tag that cannot start the expected value (`0x..`).
    #[error("hessian: unexpected tag {0:#04x}")]
    Tag(u8),
    /// A string that is not UTF-8 as Hessian encodes it.
    #[error("hessian: malformed string")]
    Utf8,
    /// A reference to a class definition that was not given.
    #[error("hessian: unknown class definition {0}")]
    Class(usize),
    /// Values nested deeper than [`MAX_DEPTH`].
    #[error("hessian: values nested too deep")]
    Depth,
}

/// Deepest nesting of lists, maps and objects the skipper follows.
pub const MAX_DEPTH: usize = 64;

/// A cursor over Hessian 2.0 bytes, with the class definitions seen so far.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Field counts of the class definitions (`C`), in order.
    classes: Vec<usize>,
}

type Result<T> = std::result::Result<T, HessianError>;

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            classes: Vec::new(),
        }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte was read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn peek(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or(HessianError::Eof)
    }

    fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(HessianError::Eof)?;
        let s = self.buf.get(self.pos..end).ok_or(HessianError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// Reads `chars` UTF-16 code units of Hessian's UTF-8 (a 4-byte sequence counts as two).
    /// The lengths are walked byte by byte; the text is checked and copied once at the end.
    fn chars(&mut self, chars: usize, out: &mut Option<&mut String>) -> Result<()> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        // The common case, ASCII text: one byte per unit, checked at once.
        if let Some(ascii) = rest.get(..chars).filter(|b| b.is_ascii()) {
            if let Some(s) = out.as_deref_mut() {
                s.push_str(std::str::from_utf8(ascii).map_err(|_| HessianError::Utf8)?);
            }
            self.pos += chars;
            return Ok(());
        }
        let mut left = chars;
        let mut i = 0;
        while left > 0 {
            let Some(&lead) = rest.get(i) else {
                return Err(HessianError::Eof);
            };
            let (len, units) = match lead {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                0xf0..=0xf7 => (4, 2),
                _ => return Err(HessianError::Utf8),
            };
            i += len;
            left = left.saturating_sub(units);
        }
        let bytes = rest.get(..i).ok_or(HessianError::Eof)?;
        if let Some(s) = out.as_deref_mut() {
            s.push_str(std::str::from_utf8(bytes).map_err(|_| HessianError::Utf8)?);
        }
        self.pos += i;
        Ok(())
    }

    /// Reads a string, or `None` for `N` (null).
    ///
    /// Errors: the next value is not a string or null, or is malformed.
    pub fn string(&mut self) -> Result<Option<String>> {
        let mut s = String::new();
        if self.peek()? == b'N' {
            self.pos += 1;
            return Ok(None);
        }
        self.string_into(&mut Some(&mut s))?;
        Ok(Some(s))
    }

    fn string_into(&mut self, out: &mut Option<&mut String>) -> Result<()> {
        loop {
            let tag = self.byte()?;
            match tag {
                0x00..=0x1f => return self.chars(usize::from(tag), out),
                0x30..=0x33 => {
                    let n = (usize::from(tag - 0x30) << 8) | usize::from(self.byte()?);
                    return self.chars(n, out);
                }
                b'S' => {
                    let n = self.u16()?;
                    return self.chars(n, out);
                }
                b'R' => {
                    let n = self.u16()?;
                    self.chars(n, out)?;
                }
                t => return Err(HessianError::Tag(t)),
            }
        }
    }

    /// An int (for class field counts, lengths and references).
    fn int(&mut self) -> Result<i64> {
        let tag = self.byte()?;
        Ok(match tag {
            0x80..=0xbf => i64::from(tag) - 0x90,
            0xc0..=0xcf => ((i64::from(tag) - 0xc8) << 8) | i64::from(self.byte()?),
            0xd0..=0xd7 => {
                let b = self.take(2)?;
                ((i64::from(tag) - 0xd4) << 16) | (i64::from(b[0]) << 8) | i64::from(b[1])
            }
            b'I' => {
                let b = self.take(4)?;
                i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            t => return Err(HessianError::Tag(t)),
        })
    }

    fn count(&mut self) -> Result<usize> {
        usize::try_from(self.int()?).map_err(|_| HessianError::Eof)
    }

    /// A list or map type: a string, or an int reference to an earlier type.
    fn skip_type(&mut self) -> Result<()> {
        match self.peek()? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => self.string_into(&mut None),
            _ => self.int().map(|_| ()),
        }
    }

    /// Skips one value of any type.
    ///
    /// Errors: malformed or truncated input, an unknown class reference, or nesting deeper than
    /// [`MAX_DEPTH`].
    pub fn skip(&mut self) -> Result<()> {
        self.skip_at(0)
    }

    fn skip_until_end(&mut self, depth: usize) -> Result<()> {
        while self.peek()? != b'Z' {
            self.skip_at(depth)?;
        }
        self.pos += 1;
        Ok(())
    }

    fn skip_n(&mut self, n: usize, depth: usize) -> Result<()> {
        for _ in 0..n {
            self.skip_at(depth)?;
        }
        Ok(())
    }

    fn skip_at(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(HessianError::Depth);
        }
        let d = depth + 1;
        let tag = self.peek()?;
        match tag {
            // strings
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => self.string_into(&mut None),
            // ints
            0x80..=0xbf | 0xc0..=0xcf | 0xd0..=0xd7 | b'I' => self.int().map(|_| ()),
            _ => {
                self.pos += 1;
                match tag {
                    b'N' | b'T' | b'F' | 0x5b | 0x5c | 0xd8..=0xef => Ok(()),
                    0x20..=0x2f => self.take(usize::from(tag - 0x20)).map(|_| ()),
                    0x34..=0x37 => {
                        let n = (usize::from(tag - 0x34) << 8) | usize::from(self.byte()?);
                        self.take(n).map(|_| ())
                    }
                    0x38..=0x3f | 0x5e => self.take(2).map(|_| ()),
                    0xf0..=0xff | 0x5d => self.take(1).map(|_| ()),
                    b'A' | b'B' => {
                        // binary chunks: non-final `A`, final `B`
                        let mut t = tag;
                        loop {
                            let n = self.u16()?;
                            self.take(n)?;
                            if t == b'B' {
                                return Ok(());
                            }
                            t = self.byte()?;
                            if t != b'A' && t != b'B' {
                                return Err(HessianError::Tag(t));
                            }
                        }
                    }
                    b'D' | b'J' | b'L' => self.take(8).map(|_| ()),
                    b'K' | b'Y' | 0x5f => self.take(4).map(|_| ()),
                    b'C' => {
                        // class definition: name, field count, field names; then a value follows
                        // (a definition is not a value by itself)
                        self.string_into(&mut None)?;
                        let n = self.count()?;
                        for _ in 0..n {
                            self.string_into(&mut None)?;
                        }
                        self.classes.push(n);
                        self.skip_at(d)
                    }
                    b'O' | 0x60..=0x6f => {
                        let class = if tag == b'O' {
                            self.count()?
                        } else {
                            usize::from(tag - 0x60)
                        };
                        let fields = *self.classes.get(class).ok_or(HessianError::Class(class))?;
                        self.skip_n(fields, d)
                    }
                    b'Q' => self.int().map(|_| ()),
                    b'H' | b'W' => self.skip_until_end(d),
                    b'M' | b'U' => {
                        self.skip_type()?;
                        self.skip_until_end(d)
                    }
                    b'V' => {
                        self.skip_type()?;
                        let n = self.count()?;
                        self.skip_n(n, d)
                    }
                    b'X' => {
                        let n = self.count()?;
                        self.skip_n(n, d)
                    }
                    0x70..=0x77 => {
                        self.skip_type()?;
                        self.skip_n(usize::from(tag - 0x70), d)
                    }
                    0x78..=0x7f => self.skip_n(usize::from(tag - 0x78), d),
                    t => Err(HessianError::Tag(t)),
                }
            }
        }
    }

    /// Reads a map (`H`, or `M` with its type) into its string entries; entries whose key or
    /// value is not a string are skipped. `N` reads as an empty map.
    ///
    /// Errors: the next value is not a map, or is malformed.
    pub fn string_map(&mut self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        match self.byte()? {
            b'N' => return Ok(out),
            b'H' => {}
            b'M' => self.skip_type()?,
            t => return Err(HessianError::Tag(t)),
        }
        while self.peek()? != b'Z' {
            let k = self.string_or_skip()?;
            let v = self.string_or_skip()?;
            if let (Some(k), Some(v)) = (k, v) {
                out.push((k, v));
            }
        }
        self.pos += 1;
        Ok(out)
    }

    fn string_or_skip(&mut self) -> Result<Option<String>> {
        match self.peek()? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => self.string(),
            _ => self.skip().map(|_| None),
        }
    }
}

/// Appends `s` as a Hessian 2.0 string: compact for up to 31 characters, `0x30`–`0x33` up to
/// 1023, `S` chunks above (preceded by non-final `R` chunks past 65535). Lengths count UTF-16 code
/// units and characters outside the BMP go as surrogate pairs, as Java writes them.
pub fn write_string(out: &mut bytes::BytesMut, s: &str) {
    use bytes::BufMut;
    let units: Vec<u16> = s.encode_utf16().collect();
    let mut chunks = units.chunks(0xffff).peekable();
    if units.is_empty() {
        out.put_u8(0);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let n = chunk.len();
        match (chunks.peek().is_some(), n) {
            (true, _) => {
                out.put_u8(b'R');
                out.put_u16(n as u16);
            }
            (false, 0..=31) => out.put_u8(n as u8),
            (false, 32..=1023) => {
                out.put_u8(0x30 + (n >> 8) as u8);
                out.put_u8(n as u8);
            }
            (false, _) => {
                out.put_u8(b'S');
                out.put_u16(n as u16);
            }
        }
        for &u in chunk {
            // Each unit as UTF-8 would encode it on its own (surrogates as 3 bytes: CESU-8).
            let u = u32::from(u);
            match u {
                0..=0x7f => out.put_u8(u as u8),
                0x80..=0x7ff => {
                    out.put_u8(0xc0 | (u >> 6) as u8);
                    out.put_u8(0x80 | (u & 0x3f) as u8);
                }
                _ => {
                    out.put_u8(0xe0 | (u >> 12) as u8);
                    out.put_u8(0x80 | ((u >> 6) & 0x3f) as u8);
                    out.put_u8(0x80 | (u & 0x3f) as u8);
                }
            }
        }
    }
}

/// How many arguments a JVM parameter descriptor (`IZLjava/util/Date;[B`) declares.
///
/// Errors: a malformed descriptor ([`HessianError::Utf8`] stands for it).
pub fn descriptor_count(desc: &str) -> Result<usize> {
    let b = desc.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        while b.get(i) == Some(&b'[') {
            i += 1;
        }
        match b.get(i) {
            Some(b'L') => {
                let end = b[i..]
                    .iter()
                    .position(|c| *c == b';')
                    .ok_or(HessianError::Utf8)?;
                i += end + 1;
            }
            Some(b'Z' | b'B' | b'C' | b'S' | b'I' | b'J' | b'F' | b'D') => i += 1,
            _ => return Err(HessianError::Utf8),
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_strings_and_ints() {
        let mut r = Reader::new(b"\x05hello\x30\x03abcS\x00\x02hiN");
        assert_eq!(r.string().unwrap().as_deref(), Some("hello"));
        assert_eq!(r.string().unwrap().as_deref(), Some("abc"));
        assert_eq!(r.string().unwrap().as_deref(), Some("hi"));
        assert_eq!(r.string().unwrap(), None);
        assert!(r.at_end());
        // Two chars, the second a 2-byte UTF-8 sequence; lengths count characters.
        let mut r = Reader::new(b"\x02a\xc3\xa9");
        assert_eq!(r.string().unwrap().as_deref(), Some("aé"));
        for (bytes, want) in [
            (&b"\x90"[..], 0i64),
            (b"\xbf", 47),
            (b"\xc8\x30", 48),
            (b"\xd4\x10\x00", 4096),
            (b"I\x00\x01\x00\x00", 65536),
        ] {
            assert_eq!(Reader::new(bytes).int().unwrap(), want);
        }
    }

    #[test]
    fn written_strings_read_back() {
        for s in [
            String::new(),
            "404|router unavailable".to_string(),
            "é".repeat(40),
            "x".repeat(5000),
            "y".repeat(70_000),
        ] {
            let mut out = bytes::BytesMut::new();
            write_string(&mut out, &s);
            let mut r = Reader::new(&out);
            assert_eq!(r.string().unwrap().as_deref(), Some(s.as_str()));
            assert!(r.at_end());
        }
        let mut out = bytes::BytesMut::new();
        write_string(&mut out, "ok");
        assert_eq!(&out[..], b"\x02ok");
    }

    #[test]
    fn descriptors_count_their_parameters() {
        assert_eq!(descriptor_count("").unwrap(), 0);
        assert_eq!(
            descriptor_count("IZDLjava/util/Date;[BLjava/util/ArrayList;Ljava/util/HashMap;")
                .unwrap(),
            7
        );
        assert_eq!(descriptor_count("[[Ljava/lang/String;J").unwrap(), 2);
        assert!(descriptor_count("Ljava/lang/String").is_err());
        assert!(descriptor_count("Q").is_err());
    }

    #[test]
    fn truncated_or_bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"\x05hel"[..],
            b"S\x00",
            b"H\x01a",
            b"O\x90",
            b"\x60",
            b"X\x95\x91",
            b"\x40",
        ] {
            let mut r = Reader::new(bad);
            assert!(r.skip().is_err(), "{bad:?}");
        }
        let deep = vec![b'W'; MAX_DEPTH + 5];
        assert_eq!(Reader::new(&deep).skip(), Err(HessianError::Depth));
    }
}
