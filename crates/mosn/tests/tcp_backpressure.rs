//! Back-pressure through `tcp_proxy`, on the real binary: a client that reads nothing stalls the
//! upstream's writes within a few MiB (socket buffers plus one pipe), the proxy's memory stays
//! small, and every byte still arrives once the client reads.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_slow_reader_stalls_the_upstream_instead_of_filling_the_proxy() {
    const TOTAL: u64 = 256 << 20;
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let w2 = written.clone();
    std::thread::spawn(move || {
        let (mut s, _) = up.accept().unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while w2.load(Ordering::SeqCst) < TOTAL {
            if s.write_all(&chunk).is_err() {
                return;
            }
            w2.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "listeners": [{"name": "t", "address": "127.0.0.1:0", "bind_port": true,
            "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "up"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "hosts": [{"address": up_addr.to_string()}]}]}
    });
    let p = write_temp("backpressure.json", &cfg.to_string());
    let m = spawn(&p);
    let addr = m.listener("t");
    let mut c = TcpStream::connect(addr).unwrap();
    // Wait until the upstream's writes stop advancing (they block on full buffers).
    let mut last = 0;
    assert!(
        eventually(Duration::from_secs(10), || {
            let now = written.load(Ordering::SeqCst);
            let settled = now > 0 && now == last;
            last = now;
            std::thread::sleep(Duration::from_millis(100));
            settled
        }),
        "the upstream never stalled"
    );
    let stalled_at = written.load(Ordering::SeqCst);
    assert!(
        stalled_at < 64 << 20,
        "{} MiB left the upstream with nobody reading",
        stalled_at >> 20
    );
    assert!(
        m.rss_peak_kib() < 32 * 1024,
        "proxy peak RSS {} KiB",
        m.rss_peak_kib()
    );
    // Now read everything.
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    while got < TOTAL {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got, TOTAL);
}
