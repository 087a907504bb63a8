//! A per-connection budget for the control frames a client sends (PING, SETTINGS, RST_STREAM,
//! PRIORITY): `h2` answers PING and SETTINGS by itself and bounds what it queues, but each frame
//! still costs the worker CPU. A client that sends more than [`BURST`] such frames at once, or
//! more than [`PER_SECOND`] per second sustained, gets GOAWAY `ENHANCE_YOUR_CALM` and is closed.
//!
//! The budget is a token bucket over frame headers read beside `h2`
//! ([`mosn_protocol::http2::frames::FrameScanner`]). Once tripped, the connection reads nothing
//! more. Real clients stay far below it: gRPC's BDP and keepalive PINGs come one at a time,
//! each waiting for its ACK.

use std::cell::Cell;
use std::rc::Rc;

use mosn_protocol::http2::frames::FrameScanner;
use tokio::time::Instant;

/// Control frames a client may send at once.
pub const BURST: f64 = 2000.0;
/// Control frames a client may send per second, sustained.
pub const PER_SECOND: f64 = 1000.0;

/// Shared between the guarded stream (inside `h2`) and the connection's driver.
#[derive(Default)]
pub struct Tripped {
    flag: Cell<bool>,
    notify: tokio::sync::Notify,
}

impl Tripped {
    /// Waits until the budget is exceeded.
    pub async fn wait(&self) {
        if !self.flag.get() {
            self.notify.notified().await;
        }
    }
}

/// The budget of one client connection, fed with the bytes read from it (see
/// [`crate::conn::Counted::guarded`]).
pub struct Budget {
    scanner: FrameScanner,
    tokens: f64,
    last: Instant,
    tripped: Rc<Tripped>,
}

impl Budget {
    /// A full budget for the server side of a connection (the client preface comes first), and
    /// the handle its driver waits on.
    pub fn new() -> (Self, Rc<Tripped>) {
        let tripped = Rc::new(Tripped::default());
        (
            Budget {
                scanner: FrameScanner::server(),
                tokens: BURST,
                last: Instant::now(),
                tripped: tripped.clone(),
            },
            tripped,
        )
    }

    /// True once the budget is exceeded: nothing more is to be read.
    pub fn is_tripped(&self) -> bool {
        self.tripped.flag.get()
    }

    /// Counts the control frames that start in `bytes`, the next bytes read.
    pub fn read(&mut self, bytes: &[u8]) {
        let mut control = 0u32;
        self.scanner.feed(bytes, |f| {
            if f.is_control() {
                control += 1;
            }
        });
        if control == 0 {
            return;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + refill).min(BURST) - f64::from(control);
        self.last = now;
        if self.tokens < 0.0 {
            self.tripped.flag.set(true);
            self.tripped.notify.notify_one();
        }
    }
}
