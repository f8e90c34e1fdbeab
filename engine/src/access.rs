//! What statements may reach outside the engine: files and Kafka brokers.
//!
//! `fibers run` executes its user's own script, so its statements may read
//! and write wherever that user can ([`Access::Unrestricted`]). `fibers
//! serve` runs statements from any client that can reach it, so there every
//! path a statement names (a `file` stream, an archive, a reference table,
//! a Kafka certificate) must lie under the data dir or another allowed
//! root, and every broker it connects to must be allowed
//! ([`Access::Confined`]).

use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Where statements may read, write and connect.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// Anywhere the process can.
    #[default]
    Unrestricted,
    /// Within these bounds.
    Confined(Confinement),
}

/// The bounds of [`Access::Confined`].
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    /// Directories statements may name paths under (the data dir is
    /// always one).
    pub allowed_paths: Vec<PathBuf>,
    /// Kafka brokers (`host:port`) statements may connect to, besides
    /// brokers on loopback addresses; `*` allows every broker.
    pub allowed_brokers: Vec<String>,
}

impl Access {
    /// Checks a path a statement named (`written`, as written; `resolved`,
    /// against the data dir). Confined, it may not hold `..` and must lie
    /// under the data dir or an allowed path, symbolic links resolved.
    pub fn check_path(
        &self,
        what: &str,
        written: &str,
        resolved: &Path,
        data_dir: &Path,
    ) -> Result<()> {
        let Access::Confined(bounds) = self else {
            return Ok(());
        };
        if Path::new(written)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(Error::invalid(format!(
                "{what} '{written}' climbs out with '..', which fibers serve does not allow; \
                 name a path under the data dir"
            )));
        }
        let inside = |root: &Path| {
            let root = real_path(root);
            real_path(resolved).starts_with(&root)
        };
        if inside(data_dir) || bounds.allowed_paths.iter().any(|p| inside(p)) {
            return Ok(());
        }
        let mut roots = vec![data_dir.display().to_string()];
        roots.extend(bounds.allowed_paths.iter().map(|p| p.display().to_string()));
        Err(Error::invalid(format!(
            "{what} '{written}' is outside the directories fibers serve may use ({}); use a \
             relative path under the data dir, or allow its directory (fibers serve \
             --allowed-path DIR, or allowed_paths under [access] in its config file)",
            roots.join(", ")
        )))
    }

    /// Checks every broker of a comma-separated bootstrap list.
    pub fn check_brokers(&self, brokers: &str) -> Result<()> {
        let Access::Confined(bounds) = self else {
            return Ok(());
        };
        if bounds.allowed_brokers.iter().any(|b| b == "*") {
            return Ok(());
        }
        for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            let allowed = is_loopback(broker)
                || bounds
                    .allowed_brokers
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(broker));
            if !allowed {
                return Err(Error::invalid(format!(
                    "Kafka broker '{broker}' is not among the brokers fibers serve may connect \
                     to; add it to allowed_brokers under [access] in the server's config file"
                )));
            }
        }
        Ok(())
    }
}

/// `path` with symbolic links resolved as far as it exists, and the rest
/// (not yet created) appended lexically.
fn real_path(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Whether `host:port` names this machine by a loopback address.
fn is_loopback(broker: &str) -> bool {
    let host = match broker.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => broker,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined(allowed_paths: Vec<PathBuf>, allowed_brokers: &[&str]) -> Access {
        Access::Confined(Confinement {
            allowed_paths,
            allowed_brokers: allowed_brokers.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn confined_paths_stay_under_the_data_dir_or_an_allowed_root() {
        let data = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let access = confined(vec![other.path().to_path_buf()], &[]);
        let check = |written: &str| {
            access.check_path("path", written, &data.path().join(written), data.path())
        };
        check("in/data.json").unwrap();
        let e = check("../../../../etc/hostname").unwrap_err().to_string();
        assert!(e.contains("'..'"), "{e}");
        let e = check("/etc/shadow").unwrap_err().to_string();
        assert!(e.contains("outside the directories"), "{e}");
        check(&other.path().join("x.csv").display().to_string()).unwrap();
        // A symbolic link out of the data dir does not lead out.
        std::os::unix::fs::symlink("/etc", data.path().join("etc")).unwrap();
        let e = check("etc/hostname").unwrap_err().to_string();
        assert!(e.contains("outside the directories"), "{e}");
        Access::Unrestricted
            .check_path(
                "path",
                "/etc/hostname",
                Path::new("/etc/hostname"),
                data.path(),
            )
            .unwrap();
    }

    #[test]
    fn confined_brokers_are_loopback_or_allowed() {
        let access = confined(vec![], &["kafka-1.internal:9092"]);
        access
            .check_brokers("127.0.0.1:9092,localhost:9093,[::1]:9094")
            .unwrap();
        access.check_brokers("KAFKA-1.internal:9092").unwrap();
        let e = access
            .check_brokers("127.0.0.1:9092, 10.0.0.7:22")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'10.0.0.7:22'"), "{e}");
        confined(vec![], &["*"])
            .check_brokers("anywhere:1")
            .unwrap();
    }
}
