//! Config input never panics the parser: every config of MOSN's corpus and of examples/, truncated
//! at many points and with bytes replaced, must give `Ok` or an error, never a panic.
//! (A deterministic stand-in for fuzzing: cargo fuzz needs a nightly toolchain.)

use std::path::{Path, PathBuf};

fn configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    let mut stack = vec![root.join("examples"), root.join("tests/data/mosn-configs")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out
}

fn must_not_panic(text: &str, what: &str) {
    let t = text.to_string();
    let r = std::panic::catch_unwind(move || {
        let _ = mosn_config::from_str(&t);
    });
    assert!(r.is_ok(), "the parser panicked on {what}");
}

#[test]
fn mutated_configs_never_panic_the_parser() {
    let files = configs();
    assert!(files.len() > 40, "found {} configs", files.len());
    // Bytes that change JSON types and structure.
    let swaps: &[&[u8]] = &[
        b"0",
        b"\"",
        b"{",
        b"[",
        b"-1",
        b"true",
        b"null",
        b"1e999",
        b"\"\\u0000\"",
        b"99999999999999999999",
    ];
    let mut cases = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let bytes = text.as_bytes();
        let step = (bytes.len() / 64).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            must_not_panic(
                &String::from_utf8_lossy(&bytes[..cut]),
                &format!("{} cut at {cut}", f.display()),
            );
            // Replace the value-ish byte at `cut` with each swap.
            for s in swaps {
                let mut m = bytes[..cut].to_vec();
                m.extend_from_slice(s);
                m.extend_from_slice(&bytes[(cut + 1).min(bytes.len())..]);
                must_not_panic(
                    &String::from_utf8_lossy(&m),
                    &format!(
                        "{} with {:?} at {cut}",
                        f.display(),
                        String::from_utf8_lossy(s)
                    ),
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 10_000, "{cases} cases");
}
