//! A client of the Confluent schema registry API.
//!
//! Decoders run on blocking threads (sources are polled from
//! `spawn_blocking`), so the client blocks. It speaks just enough HTTP/1.1
//! over `std::net` for the registry's two calls we need: look a schema up
//! by id, and register a writer's schema under a subject. A blocking
//! `reqwest` client was the alternative, but enabling its `blocking`
//! feature recompiles reqwest and everything built on it (object_store,
//! DataFusion, delta-rs), and its client panics when created or dropped
//! inside an async runtime. Plain `http://` only; `https://` is refused
//! with a clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::{Error, Result};

/// How long to wait to connect, and for each read or write.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body accepted (registry answers are small JSON).
const MAX_BODY: u64 = 64 << 20;
/// The longest status or header line accepted.
const MAX_LINE: u64 = 64 << 10;
/// The media type of the registry's API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A schema registry, by its base URL.
#[derive(Debug, Clone)]
pub(crate) struct SchemaRegistry {
    base: Url,
    /// The URL as the user wrote it, for messages.
    shown: String,
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisteredSchema {
    /// The schema's text (Avro schema JSON for Avro schemas).
    pub schema: String,
    /// `AVRO`, `PROTOBUF` or `JSON` (the registry omits it for Avro).
    pub schema_type: String,
    /// Whether the schema refers to schemas of other subjects.
    pub has_references: bool,
}

impl SchemaRegistry {
    /// A client of the registry at `url` (`http://host:port[/path]`).
    pub fn new(url: &str) -> Result<Self> {
        let shown = url.trim_end_matches('/').to_string();
        let base = Url::parse(url).map_err(|e| {
            Error::invalid(format!(
                "option 'schema_registry' is not a URL: '{url}' ({e})"
            ))
        })?;
        match base.scheme() {
            "http" => {}
            "https" => {
                return Err(Error::invalid(format!(
                    "schema registry at {shown}: https is not supported yet; \
                     use an http:// URL (for example through a TLS-terminating proxy)"
                )));
            }
            other => {
                return Err(Error::invalid(format!(
                    "schema registry at {shown}: scheme '{other}' is not supported; use http://"
                )));
            }
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(Error::invalid(format!(
                "schema registry at {shown}: the URL names no host"
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::invalid(format!(
                "schema registry at {}: credentials in the URL are not supported",
                base.host_str().unwrap_or_default()
            )));
        }
        Ok(SchemaRegistry { base, shown })
    }

    /// The registry's URL, for messages.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The schema with registry id `id`, or `None` when the registry does
    /// not know it (HTTP 404).
    pub fn schema_by_id(&self, id: u32) -> Result<Option<RegisteredSchema>> {
        let url = self.endpoint(&["schemas", "ids", &id.to_string()])?;
        let response = self.request("GET", &url, None)?;
        if response.status == 404 {
            return Ok(None);
        }
        let body = self.expect_ok(&url, &response)?;
        let schema = body
            .get("schema")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error(&url, "the answer holds no 'schema' text"))?;
        let schema_type = body
            .get("schemaType")
            .and_then(Value::as_str)
            .unwrap_or("AVRO");
        let has_references = body
            .get("references")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        Ok(Some(RegisteredSchema {
            schema: schema.to_string(),
            schema_type: schema_type.to_string(),
            has_references,
        }))
    }

    /// Registers Avro `schema` under `subject` (or finds it registered
    /// already) and returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let url = self.endpoint(&["subjects", subject, "versions"])?;
        let request = serde_json::json!({ "schema": schema }).to_string();
        let response = self.request("POST", &url, Some(request.as_bytes()))?;
        let body = self.expect_ok(&url, &response)?;
        body.get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                self.error(
                    &url,
                    format!("the answer holds no schema id: {}", snippet(&response.body)),
                )
            })
    }

    /// The base URL with `segments` appended (each percent-encoded).
    fn endpoint(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                Error::invalid(format!("schema registry at {}: not a base URL", self.shown))
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn error(&self, url: &Url, message: impl std::fmt::Display) -> Error {
        Error::invalid(format!(
            "schema registry at {}: {url}: {message}",
            self.shown
        ))
    }

    /// The JSON body of a 2xx answer; any other status is an error that
    /// carries the registry's message.
    fn expect_ok(&self, url: &Url, response: &Response) -> Result<Value> {
        if !(200..300).contains(&response.status) {
            let message = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                .unwrap_or_else(|| snippet(&response.body));
            return Err(self.error(url, format!("HTTP {}: {message}", response.status)));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            self.error(
                url,
                format!("the answer is not JSON ({e}): {}", snippet(&response.body)),
            )
        })
    }

    fn request(&self, method: &str, url: &Url, body: Option<&[u8]>) -> Result<Response> {
        exchange(method, url, body).map_err(|e| self.error(url, e))
    }
}

/// The start of a body, as text, for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None if text.is_empty() => "(empty)".to_string(),
        None => text.to_string(),
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// Sends one request on a fresh connection and reads the answer.
fn exchange(method: &str, url: &Url, body: Option<&[u8]>) -> std::result::Result<Response, String> {
    let host = url.host_str().unwrap_or_default();
    let addrs = url
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last_error = format!("{host} resolves to no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    let stream = stream.ok_or(last_error)?;
    let io = |e: std::io::Error| format!("connection failed: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;

    let mut target = url.path().to_string();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n\
         Accept: {CONTENT_TYPE}, application/json\r\nUser-Agent: datafibers\r\n\
         Connection: close\r\n"
    );
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut writer = &stream;
    writer.write_all(request.as_bytes()).map_err(io)?;
    if let Some(body) = body {
        writer.write_all(body).map_err(io)?;
    }
    writer.flush().map_err(io)?;
    read_response(BufReader::new(&stream)).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {}s", TIMEOUT.as_secs())
        }
        _ => format!("bad answer: {e}"),
    })
}

fn invalid_data(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one line (CRLF or LF ended), without its line end.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(invalid_data(if line.len() as u64 >= MAX_LINE {
            "a header line is too long"
        } else {
            "the connection closed mid-answer"
        }));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid_data("a header line is not UTF-8"))
}

/// Reads a status line, headers and a body (by `Content-Length`, chunked,
/// or up to the end of the connection).
fn read_response(mut reader: impl BufRead) -> std::io::Result<Response> {
    loop {
        let status_line = read_line(&mut reader)?;
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid_data(format!("not an HTTP status line: '{status_line}'")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = read_line(&mut reader)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| invalid_data(format!("bad Content-Length '{value}'")))?;
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        // An interim answer (100 Continue) is followed by the real one.
        if (100..200).contains(&status) {
            continue;
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(invalid_data(format!("the answer is too large ({n} bytes)")));
            }
            let mut body = Vec::with_capacity(n as usize);
            reader.by_ref().take(n).read_to_end(&mut body)?;
            if body.len() as u64 != n {
                return Err(invalid_data("the connection closed mid-answer"));
            }
            body
        } else {
            let mut body = Vec::new();
            reader.by_ref().take(MAX_BODY).read_to_end(&mut body)?;
            body
        };
        return Ok(Response { status, body });
    }
}

/// Reads a chunked body up to its last (empty) chunk and trailers.
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| invalid_data(format!("bad chunk size '{size}'")))?;
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(invalid_data("the answer is too large"));
        }
        let before = body.len();
        reader.by_ref().take(size).read_to_end(&mut body)?;
        if (body.len() - before) as u64 != size {
            return Err(invalid_data("the connection closed mid-answer"));
        }
        read_line(reader)?;
    }
}

/// A schema registry for tests: an in-memory map behind a TCP listener
/// on `127.0.0.1:0`, speaking the registry API's two calls.
#[cfg(test)]
pub(crate) mod test_registry {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use serde_json::{Value, json};

    /// The URL of a port nobody listens on (bound, then freed).
    pub fn unreachable_url() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    }

    /// What the registry holds and has been asked.
    #[derive(Debug, Default)]
    pub struct State {
        /// Schemas by id.
        pub schemas: HashMap<u32, String>,
        /// Subjects and the ids registered under them, in order.
        pub subjects: HashMap<String, Vec<u32>>,
        /// Requests served, as `METHOD path`.
        pub requests: Vec<String>,
        /// Answer every request with HTTP 500.
        pub failing: bool,
    }

    /// A running test registry; stops when dropped.
    pub struct TestRegistry {
        /// Its base URL.
        pub url: String,
        /// What it holds.
        pub state: Arc<Mutex<State>>,
        stop: Arc<AtomicBool>,
        addr: std::net::SocketAddr,
        thread: Option<JoinHandle<()>>,
    }

    impl TestRegistry {
        pub fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let state = Arc::new(Mutex::new(State::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(stream) = stream {
                            serve(stream, &state);
                        }
                    }
                })
            };
            TestRegistry {
                url: format!("http://{addr}"),
                state,
                stop,
                addr,
                thread: Some(thread),
            }
        }

        /// Stores `schema` under `id`, as if another writer registered it.
        pub fn insert(&self, id: u32, schema: &str) {
            self.state
                .lock()
                .unwrap()
                .schemas
                .insert(id, schema.to_string());
        }

        /// How many requests were `METHOD path`.
        pub fn count(&self, request: &str) -> usize {
            let state = self.state.lock().unwrap();
            state.requests.iter().filter(|r| *r == request).count()
        }
    }

    impl Drop for TestRegistry {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wakes the accept loop so it sees the flag.
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn serve(stream: TcpStream, state: &Mutex<State>) {
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut state = state.lock().unwrap();
        state.requests.push(format!("{method} {path}"));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (status, answer, chunked) = if state.failing {
            (
                500,
                json!({"error_code": 50001, "message": "store is down"}),
                false,
            )
        } else {
            match (method, segments.as_slice()) {
                ("GET", ["schemas", "ids", id]) => {
                    match id.parse().ok().and_then(|id: u32| state.schemas.get(&id)) {
                        // Chunked, so both body framings are exercised.
                        Some(schema) => (200, json!({ "schema": schema }), true),
                        None => (
                            404,
                            json!({"error_code": 40403, "message": "Schema not found"}),
                            false,
                        ),
                    }
                }
                ("POST", ["subjects", subject, "versions"]) => {
                    let schema = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("schema").and_then(Value::as_str).map(String::from));
                    match schema {
                        Some(schema) => {
                            let existing = state
                                .schemas
                                .iter()
                                .find(|(_, s)| **s == schema)
                                .map(|(id, _)| *id);
                            let id = existing.unwrap_or_else(|| {
                                let id = state.schemas.keys().max().map_or(1, |m| m + 1);
                                state.schemas.insert(id, schema);
                                id
                            });
                            state
                                .subjects
                                .entry(subject.to_string())
                                .or_default()
                                .push(id);
                            (200, json!({ "id": id }), false)
                        }
                        None => (
                            422,
                            json!({"error_code": 42201, "message": "Invalid schema"}),
                            false,
                        ),
                    }
                }
                _ => (
                    404,
                    json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
                    false,
                ),
            }
        };
        drop(state);
        let body = answer.to_string();
        let mut response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n"
        );
        if chunked {
            let (a, b) = body.split_at(body.len() / 2);
            response.push_str("Transfer-Encoding: chunked\r\n\r\n");
            for part in [a, b] {
                response.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
            }
            response.push_str("0\r\n\r\n");
        } else {
            response.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        }
        let mut writer = &stream;
        let _ = writer.write_all(response.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::test_registry::TestRegistry;
    use super::*;

    #[test]
    fn registers_and_looks_up_schemas() {
        let server = TestRegistry::start();
        let registry = SchemaRegistry::new(&format!("{}/", server.url)).unwrap();
        let schema = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#;
        let id = registry.register("orders value/x", schema).unwrap();
        // Registering the same schema again finds the same id.
        assert_eq!(registry.register("orders value/x", schema).unwrap(), id);
        assert_eq!(
            server.count("POST /subjects/orders%20value%2Fx/versions"),
            2
        );

        let found = registry.schema_by_id(id).unwrap().unwrap();
        assert_eq!(found.schema, schema);
        assert_eq!(found.schema_type, "AVRO");
        assert!(!found.has_references);
        assert_eq!(registry.schema_by_id(id + 100).unwrap(), None);
    }

    #[test]
    fn failures_name_the_registry() {
        let server = TestRegistry::start();
        server.state.lock().unwrap().failing = true;
        let registry = SchemaRegistry::new(&server.url).unwrap();
        let err = registry.schema_by_id(1).unwrap_err().to_string();
        assert!(err.contains(&server.url), "{err}");
        assert!(err.contains("HTTP 500: store is down"), "{err}");

        let url = test_registry::unreachable_url();
        let err = SchemaRegistry::new(&url)
            .unwrap()
            .register("s", "{}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&url) && err.contains("cannot connect"),
            "{err}"
        );
    }

    #[test]
    fn rejects_urls_it_cannot_use() {
        for (url, expected) in [
            ("https://registry:8081", "https is not supported"),
            ("ftp://registry", "scheme 'ftp'"),
            ("registry:8081", "scheme 'registry'"),
            ("not a url", "is not a URL"),
            ("http://user:secret@registry:8081", "credentials"),
        ] {
            let err = SchemaRegistry::new(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn reads_answers_in_every_framing() {
        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
        let r = read_response(&chunked[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));

        let sized = b"HTTP/1.0 404 Not Found\nContent-Length: 2\n\nhiEXTRA";
        let r = read_response(&sized[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"hi"[..]));

        let to_end = b"HTTP/1.1 200 OK\r\n\r\n{\"id\":1}";
        assert_eq!(read_response(&to_end[..]).unwrap().body, b"{\"id\":1}");

        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",
        ] {
            assert!(
                read_response(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
