//! A data dir's catalog file as `fibers run` and `fibers serve` read it at
//! start: every definition, its job record, and its SQL parsed again.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use fibers_catalog::Catalog;
use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let base = std::env::var_os("FIBERS_FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("fibers-fuzz-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    dir
});

fuzz_target!(|data: &[u8]| {
    let path = DIR.join("catalog.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(DIR.join(format!("catalog.db{suffix}")));
    }
    std::fs::write(&path, data).expect("the scratch file");
    let Ok(catalog) = Catalog::open(&path) else {
        return;
    };
    let Ok(definitions) = catalog.list(None) else {
        return;
    };
    for definition in definitions {
        let _ = catalog.job(&definition.name);
        let _ = fibers_sql::parse_script(&definition.sql);
    }
});
