//! Zero-copy forwarding between two sockets with `splice(2)` through a pipe (Linux).
//!
//! Bytes move socket → pipe → socket inside the kernel, never through user space. The pipe is
//! filled only when empty, so at most one pipe's worth ([`PIPE_BYTES`]) waits for a slow reader:
//! back-pressure reaches the sender through TCP flow control instead of proxy memory.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// A tokio stream socket `splice(2)` can move bytes to and from.
pub trait SpliceIo: AsFd {
    /// Waits until the socket may be readable.
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>>;
    /// Waits until the socket may be writable.
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>>;
    /// Runs `f`, clearing the readiness `interest` when it reports `WouldBlock`.
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! splice_io {
    ($t:ty) => {
        impl SpliceIo for $t {
            fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> {
                <$t>::writable(self)
            }
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
        }
    };
}
splice_io!(TcpStream);
splice_io!(UnixStream);

/// Pipe capacity asked for, in bytes (`F_SETPIPE_SZ`; the kernel's default is 64 KiB and its
/// unprivileged maximum 1 MiB): fewer, larger splices per megabyte.
pub const PIPE_BYTES: usize = 1 << 20;

/// Bytes asked of one `splice` call into the pipe.
pub const CHUNK: usize = PIPE_BYTES;

/// A pipe used as the in-kernel buffer between two sockets.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes [`Pipe::put`] there, for the next [`copy`] to write first.
    held: std::cell::Cell<usize>,
}

impl Pipe {
    /// A new non-blocking pipe.
    ///
    /// Errors: `pipe2(2)` failed (file descriptors exhausted).
    pub fn new() -> io::Result<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A smaller pipe still works: splice moves what fits.
        let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32));
        Ok(Pipe {
            r,
            w,
            held: std::cell::Cell::new(0),
        })
    }
}

fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    nix::fcntl::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE,
    )
    .map_err(io::Error::from)
}

/// Moves bytes from `from` to `to` until `from` reaches end of stream, then shuts down the write
/// side of `to` (the half-close reaches the other peer). `moved(n)` is called for every `n` bytes
/// delivered. Returns the total.
///
/// Cancel-safe at every await: the bytes read from `from` and not yet written to `to` are then
/// exactly those in `pipe` (see [`Pipe::take`]), so a hot upgrade can stop a copy anywhere and
/// carry them over.
///
/// Errors: a read or write error on either socket (a reset); the caller closes both.
pub async fn copy<A: SpliceIo, B: SpliceIo>(
    from: &A,
    to: &B,
    pipe: &Pipe,
    moved: &dyn Fn(usize),
) -> io::Result<u64> {
    let mut total = 0u64;
    // Bytes a previous process left in the pipe (see [`Pipe::put`]) go first.
    let mut left = pipe.held.replace(0);
    loop {
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(&pipe.r, to, left)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => {
                    let m = r?;
                    left -= m;
                    total += m as u64;
                    moved(m);
                }
            }
        }
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || splice(from, &pipe.w, CHUNK)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => break r?,
            }
        };
        if n == 0 {
            break;
        }
        left = n;
    }
    // The peer may already be gone; the copy itself is complete.
    let fd = to.as_fd();
    let _ = socket2::SockRef::from(&fd).shutdown(Shutdown::Write);
    Ok(total)
}

impl Pipe {
    /// Takes every byte in the pipe (read from one socket, not yet written to the other: a
    /// stopped [`copy`]'s). Never blocks.
    ///
    /// Errors: reading the pipe failed.
    pub fn take(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match nix::unistd::read(&self.r, &mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => return Ok(out),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Puts bytes into the empty pipe for the next [`copy`] through it to write first (a moved
    /// connection's bytes in flight).
    ///
    /// Errors: [`io::ErrorKind::StorageFull`] when the pipe cannot hold them all; a write error.
    pub fn put(&self, bytes: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < bytes.len() {
            match nix::unistd::write(&self.w, &bytes[at..]) {
                Ok(n) => at += n,
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "the pipe cannot hold the bytes in flight",
                    ))
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.held.set(self.held.get() + bytes.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes taken out of one pipe and put into another (a moved connection's bytes in flight)
    /// are written first, before what the copy reads after.
    #[tokio::test]
    async fn bytes_put_in_the_pipe_go_out_first() {
        let (mut client, from) = UnixStream::pair().unwrap();
        let (to, mut server) = UnixStream::pair().unwrap();
        let old = Pipe::new().unwrap();
        nix::unistd::write(&old.w, b"in flight, ").unwrap();
        let carried = old.take().unwrap();
        assert_eq!(carried, b"in flight, ");
        assert!(old.take().unwrap().is_empty(), "take empties the pipe");
        let pipe = Pipe::new().unwrap();
        pipe.put(&carried).unwrap();
        client.write_all(b"then the rest").await.unwrap();
        drop(client);
        let n = copy(&from, &to, &pipe, &|_| {}).await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"in flight, then the rest");
        assert_eq!(n, got.len() as u64);
    }
}
