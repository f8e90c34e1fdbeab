//! `fibers serve` settings: the command-line flags, the optional TOML file
//! named by `--config`, and how they combine.
//!
//! Precedence, highest first: command-line flags (and the environment
//! variables that stand for them: `FIBERS_DATA_DIR`, `FIBERS_PASSWORD`),
//! then the file, then the defaults. Relative paths in the file are
//! relative to the file's directory.

use std::env::VarError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fibers_flight::{AuthConfig, TlsConfig};
use serde::{Deserialize, Deserializer};

use crate::{CheckpointArgs, DataDir};

/// The environment variable holding the password of `--user`. A password
/// is never a command-line argument: other users of the machine can read
/// those in the process list.
pub const PASSWORD_ENV: &str = "FIBERS_PASSWORD";

/// Where the server listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// The flags of `fibers serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML settings file (keys: listen, data_dir, [auth] user, password or
    /// password_env, token_ttl, [tls] cert, key, [checkpoint] interval, url,
    /// retained, [access] allowed_paths, allowed_brokers). Flags override its
    /// values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port); anything but
    /// loopback requires a user [default: 127.0.0.1:50051]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    data_dir: DataDir,
    /// Require clients to authenticate as this user (Flight handshake with
    /// Basic user:password, then bearer tokens). The password is read from
    /// the FIBERS_PASSWORD environment variable, else from the config file.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Serve TLS with this PEM certificate chain (needs a key too).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// A directory whose files statements may read and write, besides the
    /// data dir (repeatable; adds to `allowed_paths` under [access])
    #[arg(long = "allowed-path", value_name = "DIR")]
    allowed_paths: Vec<PathBuf>,
}

/// Everything `fibers serve` needs, validated.
#[derive(Debug)]
pub struct ServeSettings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The engine's data dir.
    pub data_dir: PathBuf,
    /// Who may call; `None` lets everyone in (loopback only).
    pub auth: Option<AuthConfig>,
    /// The certificate and key to serve TLS with; `None` for plain text.
    pub tls: Option<TlsConfig>,
    /// How often jobs checkpoint, and where.
    pub checkpoints: fibers_engine::CheckpointConfig,
    /// Where statements may read, write and connect besides the data dir
    /// and loopback brokers.
    pub confinement: fibers_engine::Confinement,
}

/// The settings file. Every key is optional; unknown keys are errors, so a
/// misspelt key cannot be silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    auth: Option<AuthSection>,
    tls: Option<TlsSection>,
    checkpoint: Option<CheckpointSection>,
    access: Option<AccessSection>,
}

/// `[access]`: what statements may reach besides the data dir and brokers
/// on loopback addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessSection {
    /// Directories whose files statements may read and write.
    #[serde(default)]
    allowed_paths: Vec<PathBuf>,
    /// Kafka brokers (`host:port`) statements may connect to; `"*"` for any.
    #[serde(default)]
    allowed_brokers: Vec<String>,
}

/// `[checkpoint]`: how often jobs checkpoint, and where.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointSection {
    /// A duration such as "10s", or "off".
    interval: Option<String>,
    url: Option<String>,
    retained: Option<usize>,
}

/// `[auth]`: the user clients must authenticate as.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    user: Option<String>,
    /// The password itself; `password_env` keeps it out of the file.
    password: Option<String>,
    /// The name of an environment variable holding the password.
    password_env: Option<String>,
    /// How long a bearer token stays valid, such as "12h" or "30m".
    #[serde(default, deserialize_with = "duration")]
    token_ttl: Option<Duration>,
}

/// `[tls]`: the certificate chain and key files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

impl ServeSettings {
    /// Reads the `--config` file, if any, and combines it with `args`.
    /// `env` looks up environment variables (`std::env::var` outside
    /// tests).
    pub fn resolve(
        mut args: ServeArgs,
        env: &dyn Fn(&str) -> Result<String, VarError>,
    ) -> anyhow::Result<Self> {
        let file = match args.config.take() {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Some((path, text))
            }
            None => None,
        };
        ServeSettings::combine(args, file, env)
    }

    /// Combines `args` with the contents of the settings file `file`
    /// (its path and text).
    fn combine(
        args: ServeArgs,
        file: Option<(PathBuf, String)>,
        env: &dyn Fn(&str) -> Result<String, VarError>,
    ) -> anyhow::Result<Self> {
        let (source, parsed) = match &file {
            Some((path, text)) => {
                let parsed: SettingsFile = toml::from_str(text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                (format!("config file {}", path.display()), parsed)
            }
            None => (String::new(), SettingsFile::default()),
        };
        // Paths in the file are relative to it, not to where fibers runs.
        let base = file
            .as_ref()
            .and_then(|(path, _)| path.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let in_file = |path: PathBuf| base.join(path);

        let listen = match args.listen.or(parsed.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN
                .parse()
                .context("the default listen address")?,
        };
        let data_dir = args
            .data_dir
            .path
            .or(parsed.data_dir.map(in_file))
            .unwrap_or_else(DataDir::default_path);
        let auth = auth(args.user, parsed.auth.unwrap_or_default(), &source, env)?;
        let tls_file = parsed.tls.unwrap_or_default();
        let tls = match (
            args.tls_cert.or(tls_file.cert.map(in_file)),
            args.tls_key.or(tls_file.key.map(in_file)),
        ) {
            (Some(cert), Some(key)) => Some(TlsConfig::new(cert, key)),
            (None, None) => None,
            (Some(cert), None) => bail!(
                "TLS needs a private key for the certificate {}: pass --tls-key FILE or set \
                 `key` under [tls] in the config file",
                cert.display()
            ),
            (None, Some(key)) => bail!(
                "TLS needs a certificate for the key {}: pass --tls-cert FILE or set `cert` \
                 under [tls] in the config file",
                key.display()
            ),
        };

        let section = parsed.checkpoint.unwrap_or_default();
        let mut from_file = fibers_engine::CheckpointConfig::default();
        if let Some(interval) = section.interval {
            from_file.interval = fibers_engine::checkpoint::parse_interval(&interval)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("[checkpoint] interval in {source}"))?;
        }
        from_file.url = section.url;
        if let Some(retained) = section.retained {
            if retained == 0 {
                bail!("[checkpoint] retained in {source} must be at least 1");
            }
            from_file.retained = retained;
        }
        let checkpoints = args.checkpoints.resolve(from_file);

        if auth.is_none() && !listen.ip().to_canonical().is_loopback() {
            bail!(
                "refusing to listen on {listen} without authentication: anyone who can reach \
                 it could run statements. Configure a user (--user NAME with the password in \
                 {PASSWORD_ENV}, or [auth] in the --config file), or listen on a loopback \
                 address (such as 127.0.0.1 or [::1])"
            );
        }
        let access = parsed.access.unwrap_or_default();
        let confinement = fibers_engine::Confinement {
            allowed_paths: args
                .allowed_paths
                .into_iter()
                .chain(access.allowed_paths.into_iter().map(in_file))
                .collect(),
            allowed_brokers: access.allowed_brokers,
        };
        Ok(ServeSettings {
            listen,
            data_dir,
            auth,
            tls,
            checkpoints,
            confinement,
        })
    }

    /// The engine's configuration.
    pub fn engine_config(&self) -> fibers_engine::EngineConfig {
        let mut config = fibers_engine::EngineConfig::new(&self.data_dir);
        config.checkpoints = self.checkpoints.clone();
        // Clients are not the machine's users: keep what their statements
        // touch under the data dir and the allowed paths and brokers.
        config.access = fibers_engine::Access::Confined(self.confinement.clone());
        config
    }

    /// Whether clients on other machines can reach the server.
    pub fn beyond_loopback(&self) -> bool {
        !self.listen.ip().to_canonical().is_loopback()
    }
}

/// The authentication settings from the `--user` flag, `FIBERS_PASSWORD`
/// and the file's `[auth]` section (read from `source`).
fn auth(
    flag_user: Option<String>,
    section: AuthSection,
    source: &str,
    env: &dyn Fn(&str) -> Result<String, VarError>,
) -> anyhow::Result<Option<AuthConfig>> {
    let from_env = match env(PASSWORD_ENV) {
        Ok(password) => Some(password),
        Err(VarError::NotPresent) => None,
        Err(VarError::NotUnicode(_)) => bail!("{PASSWORD_ENV} is not valid UTF-8"),
    };
    if section.password.is_some() && section.password_env.is_some() {
        bail!("{source}: [auth] sets both `password` and `password_env`; keep one");
    }
    let user = match flag_user.or(section.user) {
        Some(user) => user,
        None => {
            if from_env.is_some() {
                bail!(
                    "{PASSWORD_ENV} is set but no user is configured: pass --user NAME or set \
                     `user` under [auth] in the config file (or unset {PASSWORD_ENV})"
                );
            }
            if section.password.is_some()
                || section.password_env.is_some()
                || section.token_ttl.is_some()
            {
                bail!("{source}: [auth] has no `user`, so its other keys would be ignored");
            }
            return Ok(None);
        }
    };
    // The environment overrides the file; the file's variable is read only
    // when it is needed.
    let password = match (from_env, section.password, section.password_env) {
        (Some(password), _, _) => password,
        (None, Some(password), None) => password,
        (None, None, Some(var)) => match env(&var) {
            Ok(password) => password,
            Err(VarError::NotPresent) => bail!(
                "{source}: [auth] password_env names the environment variable {var}, which is \
                 not set"
            ),
            Err(VarError::NotUnicode(_)) => {
                bail!("{source}: [auth] password_env: {var} is not valid UTF-8")
            }
        },
        _ => bail!(
            "user '{user}' has no password: set the {PASSWORD_ENV} environment variable, or \
             `password_env` (or `password`) under [auth] in the config file"
        ),
    };
    let mut config = AuthConfig::new(user, password)?;
    if let Some(ttl) = section.token_ttl {
        config = config
            .with_token_ttl(ttl)
            .with_context(|| format!("{source}: [auth] token_ttl"))?;
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .unwrap()
            .args
    }

    struct Env(HashMap<&'static str, &'static str>);

    impl Env {
        fn new(vars: &[(&'static str, &'static str)]) -> Self {
            Env(vars.iter().copied().collect())
        }

        fn get(&self, name: &str) -> Result<String, VarError> {
            self.0
                .get(name)
                .map(|v| v.to_string())
                .ok_or(VarError::NotPresent)
        }
    }

    fn settings(flags: &[&str], file: Option<&str>, env: &Env) -> anyhow::Result<ServeSettings> {
        ServeSettings::combine(
            args(flags),
            file.map(|text| (PathBuf::from("/etc/fibers/serve.toml"), text.to_string())),
            &|name| env.get(name),
        )
    }

    fn error(flags: &[&str], file: Option<&str>, env: &Env) -> String {
        format!("{:#}", settings(flags, file, env).unwrap_err())
    }

    const FILE: &str = r#"
        listen = "0.0.0.0:6000"
        data_dir = "data"

        [auth]
        user = "alice"
        password_env = "ALICE_PW"
        token_ttl = "30m"

        [tls]
        cert = "tls/cert.pem"
        key = "/keys/key.pem"
    "#;

    #[test]
    fn defaults_without_flags_or_file() {
        let settings = settings(&[], None, &Env::new(&[])).unwrap();
        assert_eq!(settings.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("fibers-data"));
        assert!(settings.auth.is_none() && settings.tls.is_none());
        assert!(!settings.beyond_loopback());
    }

    #[test]
    fn the_file_sets_everything_relative_to_itself() {
        let env = Env::new(&[("ALICE_PW", "from-file-var")]);
        let settings = settings(&["--config", "x"], Some(FILE), &env).unwrap();
        assert_eq!(settings.listen, "0.0.0.0:6000".parse().unwrap());
        assert!(settings.beyond_loopback());
        assert_eq!(settings.data_dir, PathBuf::from("/etc/fibers/data"));
        let auth = settings.auth.unwrap();
        assert_eq!(auth.user(), "alice");
        assert_eq!(auth.token_ttl(), Duration::from_secs(30 * 60));
        let tls = settings.tls.unwrap();
        assert_eq!(tls.cert(), Path::new("/etc/fibers/tls/cert.pem"));
        assert_eq!(tls.key(), Path::new("/keys/key.pem"));
    }

    #[test]
    fn flags_override_the_file() {
        let env = Env::new(&[("ALICE_PW", "x"), (PASSWORD_ENV, "bobs")]);
        let settings = settings(
            &[
                "--listen",
                "127.0.0.1:7000",
                "--data-dir",
                "here",
                "--user",
                "bob",
                "--tls-cert",
                "c.pem",
            ],
            Some(FILE),
            &env,
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("here"));
        let auth = settings.auth.unwrap();
        assert_eq!(auth.user(), "bob");
        // The file's token lifetime still applies: flags override key by key.
        assert_eq!(auth.token_ttl(), Duration::from_secs(30 * 60));
        let tls = settings.tls.unwrap();
        assert_eq!(tls.cert(), Path::new("c.pem"));
        assert_eq!(tls.key(), Path::new("/keys/key.pem"));
    }

    #[test]
    fn checkpoint_settings_come_from_flags_over_the_file() {
        let env = Env::new(&[("ALICE_PW", "x")]);
        let file = format!(
            "{FILE}\n[checkpoint]\ninterval = \"2s\"\nurl = \"file:///cp\"\nretained = 5\n"
        );
        let from_file = settings(&["--config", "x"], Some(&file), &env).unwrap();
        assert_eq!(from_file.checkpoints.interval, Some(Duration::from_secs(2)));
        assert_eq!(from_file.checkpoints.url.as_deref(), Some("file:///cp"));
        assert_eq!(from_file.checkpoints.retained, 5);
        let flagged = settings(
            &[
                "--checkpoint-interval",
                "off",
                "--checkpoints-retained",
                "1",
            ],
            Some(&file),
            &env,
        )
        .unwrap();
        assert_eq!(flagged.checkpoints.interval, None);
        assert_eq!(flagged.checkpoints.retained, 1);
        assert_eq!(flagged.checkpoints.url.as_deref(), Some("file:///cp"));
        let defaults = settings(&[], None, &Env::new(&[])).unwrap().checkpoints;
        assert_eq!(defaults.interval, Some(Duration::from_secs(10)));
        assert_eq!((defaults.url, defaults.retained), (None, 3));

        let bad = format!("{FILE}\n[checkpoint]\ninterval = \"often\"\n");
        let e = error(&["--config", "x"], Some(&bad), &env);
        assert!(
            e.contains("[checkpoint] interval") && e.contains("'often'"),
            "{e}"
        );
        let bad = format!("{FILE}\n[checkpoint]\nretained = 0\n");
        let e = error(&["--config", "x"], Some(&bad), &env);
        assert!(e.contains("must be at least 1"), "{e}");
    }

    #[test]
    fn the_password_comes_from_the_environment_or_the_file() {
        // FIBERS_PASSWORD wins over the file and makes its variable unneeded.
        let env = Env::new(&[(PASSWORD_ENV, "pw")]);
        assert!(settings(&["--config", "x"], Some(FILE), &env).is_ok());
        // password_env naming an unset variable.
        let unset = error(&["--config", "x"], Some(FILE), &Env::new(&[]));
        assert_eq!(
            unset,
            "config file /etc/fibers/serve.toml: [auth] password_env names the environment \
             variable ALICE_PW, which is not set"
        );
        // A password in the file itself.
        let inline = "[auth]\nuser = \"alice\"\npassword = \"pw\"\n";
        assert!(settings(&[], Some(inline), &Env::new(&[])).is_ok());
        let both = "[auth]\nuser = \"a\"\npassword = \"pw\"\npassword_env = \"V\"\n";
        assert!(
            error(&[], Some(both), &Env::new(&[]))
                .contains("sets both `password` and `password_env`")
        );
    }

    #[test]
    fn a_user_without_a_password_is_an_error() {
        let missing = error(&["--user", "alice"], None, &Env::new(&[]));
        assert_eq!(
            missing,
            "user 'alice' has no password: set the FIBERS_PASSWORD environment variable, or \
             `password_env` (or `password`) under [auth] in the config file"
        );
        let empty = error(&["--user", "alice"], None, &Env::new(&[(PASSWORD_ENV, "")]));
        assert!(
            empty.contains("password of user 'alice' is empty"),
            "{empty}"
        );
        let no_user = error(&[], None, &Env::new(&[(PASSWORD_ENV, "pw")]));
        assert!(
            no_user.contains("FIBERS_PASSWORD is set but no user"),
            "{no_user}"
        );
        let ignored = error(&[], Some("[auth]\ntoken_ttl = \"1h\"\n"), &Env::new(&[]));
        assert!(ignored.contains("[auth] has no `user`"), "{ignored}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let env = Env::new(&[]);
        let unknown = error(
            &[],
            Some("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n"),
            &env,
        );
        assert!(
            unknown.starts_with("invalid config file /etc/fibers/serve.toml:")
                && unknown.contains("unknown field `listen_addr`"),
            "{unknown}"
        );
        let nested = error(&[], Some("[auth]\nusername = \"a\"\n"), &env);
        assert!(nested.contains("unknown field `username`"), "{nested}");
        let ttl = error(
            &[],
            Some("[auth]\nuser = \"a\"\ntoken_ttl = \"12x\"\n"),
            &env,
        );
        assert!(ttl.contains("invalid duration \"12x\""), "{ttl}");
        let short = error(
            &["--user", "a"],
            Some("[auth]\ntoken_ttl = \"10ms\"\n"),
            &Env::new(&[(PASSWORD_ENV, "pw")]),
        );
        assert!(
            short.contains("[auth] token_ttl") && short.contains("minimum"),
            "{short}"
        );
        let listen = error(&[], Some("listen = \"localhost\"\n"), &env);
        assert!(listen.contains("invalid socket address"), "{listen}");
    }

    #[test]
    fn tls_needs_both_files() {
        let env = Env::new(&[]);
        let no_key = error(&["--tls-cert", "c.pem"], None, &env);
        assert!(
            no_key.starts_with("TLS needs a private key for the certificate c.pem"),
            "{no_key}"
        );
        let no_cert = error(&[], Some("[tls]\nkey = \"k.pem\"\n"), &env);
        assert!(
            no_cert.starts_with("TLS needs a certificate for the key /etc/fibers/k.pem"),
            "{no_cert}"
        );
    }

    #[test]
    fn beyond_loopback_needs_a_user() {
        let refused = error(&["--listen", "0.0.0.0:0"], None, &Env::new(&[]));
        assert!(
            refused.starts_with("refusing to listen on 0.0.0.0:0 without authentication"),
            "{refused}"
        );
        let env = Env::new(&[(PASSWORD_ENV, "pw")]);
        assert!(settings(&["--listen", "0.0.0.0:0", "--user", "a"], None, &env).is_ok());
        // Loopback in any spelling needs none.
        for loopback in ["127.0.0.2:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(
                settings(&["--listen", loopback], None, &Env::new(&[])).is_ok(),
                "{loopback}"
            );
        }
    }
}
