//! The librdkafka settings a statement may pass through as `properties.*`.
//!
//! librdkafka's configuration can load shared libraries
//! (`plugin.library.paths`, `ssl.engine.location`) and run commands
//! (`sasl.kerberos.kinit.cmd`), and statements come from clients of
//! `fibers serve`. So only client settings pass: security, timeouts, sizes,
//! batching and the like. Settings naming files (certificates, keys, a
//! keytab) pass too, and the engine checks their paths like any other path
//! a statement names.

use crate::{Error, Result};

/// Settings that load code or run commands, with why they are refused.
const REFUSED: &[(&str, &str)] = &[
    (
        "plugin.library.paths",
        "it loads shared libraries into the server",
    ),
    (
        "ssl.engine.location",
        "it loads an OpenSSL engine (a shared library) into the server",
    ),
    ("ssl.engine.id", "it selects an OpenSSL engine to load"),
    (
        "ssl_engine_callback_data",
        "it passes data to an OpenSSL engine",
    ),
    ("sasl.kerberos.kinit.cmd", "it runs a shell command"),
    (
        "oauthbearer_token_refresh_cb",
        "it is a callback only code can set",
    ),
    ("interceptors", "it loads code into the client"),
];

/// Settings naming a file the client reads.
pub(crate) const FILE_SETTINGS: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
    "sasl.kerberos.keytab",
];

/// Client settings that are passed through.
const ALLOWED: &[&str] = &[
    // Security.
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.kerberos.service.name",
    "sasl.kerberos.principal",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions",
    "sasl.oauthbearer.token.endpoint.url",
    "enable.sasl.oauthbearer.unsecure.jwt",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.sigalgs.list",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
    "ssl.ca.certificate.stores",
    // Connections and timeouts.
    "client.id",
    "client.rack",
    "broker.address.family",
    "broker.address.ttl",
    "socket.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "socket.max.fails",
    "connections.max.idle.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "request.timeout.ms",
    "metadata.max.age.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.propagation.max.ms",
    "api.version.request",
    "api.version.request.timeout.ms",
    "api.version.fallback.ms",
    "broker.version.fallback",
    "allow.auto.create.topics",
    "client.dns.lookup",
    // Consuming.
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.error.backoff.ms",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "receive.message.max.bytes",
    "message.max.bytes",
    "isolation.level",
    "check.crcs",
    "group.instance.id",
    "partition.assignment.strategy",
    "group.protocol",
    "group.remote.assignor",
    // Producing.
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "compression.type",
    "compression.codec",
    "compression.level",
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "batch.num.messages",
    "batch.size",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.send.max.retries",
    "retries",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "partitioner",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    // Diagnostics.
    "debug",
    "log_level",
    "log.connection.close",
    "statistics.interval.ms",
];

/// Checks that `key` (without `properties.`) may be passed to librdkafka.
pub(crate) fn check(key: &str) -> Result<()> {
    let lower = key.to_ascii_lowercase();
    if let Some((_, why)) = REFUSED.iter().find(|(k, _)| *k == lower) {
        return Err(Error::invalid(format!(
            "property 'properties.{key}' is not allowed: {why}"
        )));
    }
    if ALLOWED.contains(&lower.as_str()) || FILE_SETTINGS.contains(&lower.as_str()) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "property 'properties.{key}' is not among the Kafka client settings DataFibers passes \
         through (security, connection, timeout, size and batching settings, such as \
         properties.security.protocol or properties.fetch.max.bytes)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_load_code_or_run_commands_are_refused_by_name() {
        for key in [
            "plugin.library.paths",
            "ssl.engine.location",
            "sasl.kerberos.kinit.cmd",
        ] {
            let e = check(key).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'properties.{key}' is not allowed")),
                "{e}"
            );
        }
        let e = check("PLUGIN.LIBRARY.PATHS").unwrap_err().to_string();
        assert!(e.contains("not allowed"), "{e}");
        let e = check("made.up.setting").unwrap_err().to_string();
        assert!(e.contains("not among the Kafka client settings"), "{e}");
        check("security.protocol").unwrap();
        check("ssl.ca.location").unwrap();
    }
}
