//! Flight `DoGet` tickets and prepared statement handles, as a client may
//! forge them, read down to their SQL and bound parameter values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fibers_fuzz::tolerate_caught_panics();
    // Errors are answers to the client; only a panic or a hang is a find.
    let _ = fibers_flight::fuzzing::read_ticket(data);
});
