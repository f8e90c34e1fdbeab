//! A checkpoint as a recovery reads it: the manifest (JSON), a replay
//! record, and an operator state file (Arrow IPC).
//!
//! Input: a length-prefixed manifest, then the state file's bytes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    fibers_fuzz::tolerate_caught_panics();
    let (manifest, state) = match data.split_first_chunk::<2>() {
        Some((length, rest)) => {
            let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
            rest.split_at(length)
        }
        None => (data, &[][..]),
    };
    let _ = RUNTIME.block_on(fibers_engine::fuzzing::read_checkpoint(manifest, state));
});
