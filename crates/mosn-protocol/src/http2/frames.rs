//! Frame boundaries of a client's HTTP/2 byte stream (RFC 9113 §4.1), read beside `h2` so the
//! proxy can police frames `h2` answers on its own (PING, SETTINGS) or accepts without a stream
//! (RST_STREAM, PRIORITY). Only the 9-byte frame headers are read; payloads are skipped.

/// Length of the client connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`), in bytes.
pub const PREFACE_LEN: usize = 24;

/// Frame types (RFC 9113 §6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0;
    /// HEADERS.
    pub const HEADERS: u8 = 1;
    /// PRIORITY.
    pub const PRIORITY: u8 = 2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 4;
    /// PING.
    pub const PING: u8 = 6;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 9;
}

/// The ACK flag of SETTINGS and PING.
const ACK: u8 = 0x1;

/// One frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length, in bytes (24 bits).
    pub len: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits).
    pub stream: u32,
}

impl FrameHeader {
    /// A frame the client sends that makes the server work without carrying a request or body:
    /// PING and SETTINGS that are not ACKs (each must be answered), RST_STREAM and PRIORITY.
    pub fn is_control(&self) -> bool {
        match self.kind {
            kind::PING | kind::SETTINGS => self.flags & ACK == 0,
            kind::RST_STREAM | kind::PRIORITY => true,
            _ => false,
        }
    }
}

/// Follows frame boundaries across reads of any size.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    /// Bytes still to skip: the preface, then the current frame's payload.
    skip: u64,
    header: [u8; 9],
    have: usize,
}

impl FrameScanner {
    /// A scanner for the bytes a server reads: the client preface first, then frames.
    pub fn server() -> Self {
        FrameScanner {
            skip: PREFACE_LEN as u64,
            header: [0; 9],
            have: 0,
        }
    }

    /// Reads `bytes`, the next bytes of the stream, calling `on_frame` for each frame header
    /// completed in them.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(FrameHeader)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                let h = &self.header;
                let f = FrameHeader {
                    len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                    kind: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                };
                self.have = 0;
                self.skip = u64::from(f.len);
                on_frame(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn finds_every_frame_whatever_the_read_sizes() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        wire.extend(frame(kind::HEADERS, 5, 1, &[0x82, 0x86, 0x84]));
        wire.extend(frame(kind::PING, 0, 0, &[7; 8]));
        wire.extend(frame(kind::PING, ACK, 0, &[7; 8]));
        wire.extend(frame(kind::DATA, 1, 1, &[0xaa; 300]));
        wire.extend(frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        for step in [1, 2, 7, 9, 10, 64, wire.len()] {
            let mut s = FrameScanner::server();
            let mut seen = Vec::new();
            for chunk in wire.chunks(step) {
                s.feed(chunk, |f| {
                    seen.push((f.kind, f.flags, f.len, f.is_control()))
                });
            }
            assert_eq!(
                seen,
                vec![
                    (kind::SETTINGS, 0, 6, true),
                    (kind::HEADERS, 5, 3, false),
                    (kind::PING, 0, 8, true),
                    (kind::PING, ACK, 8, false),
                    (kind::DATA, 1, 300, false),
                    (kind::RST_STREAM, 0, 4, true),
                ],
                "read in chunks of {step}"
            );
        }
    }
}
