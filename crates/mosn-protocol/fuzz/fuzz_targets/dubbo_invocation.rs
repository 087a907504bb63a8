//! Reading a Dubbo request body (hessian2 strings, skipped arguments of any type, attachments)
//! from arbitrary bytes: never panics, never overflows the stack (nesting is bounded), and always
//! ends within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mosn_protocol::dubbo::hessian::Reader;
use mosn_protocol::dubbo::Invocation;

fuzz_target!(|data: &[u8]| {
    let _ = Invocation::read(data);
    let mut r = Reader::new(data);
    while r.skip().is_ok() {
        assert!(r.position() <= data.len());
        if r.at_end() {
            break;
        }
    }
});
