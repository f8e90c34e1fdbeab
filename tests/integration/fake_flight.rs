//! A small Flight SQL server standing in for behaviour `fibers serve`
//! does not have yet, so the shell's side of it can be tested now: the
//! standard handshake (basic credentials in, bearer token out, the token
//! checked on every later call) and endless `SUBSCRIBE` streams.
//!
//! Statements it knows:
//! * `SELECT 42` (or anything starting with `SELECT`): one row, `answer` 42;
//! * `SUBSCRIBE ticks`: a row `n` = 0, 1, 2, ... every 100 ms, forever;
//! * `SUBSCRIBE lagging`: rows 0 and 1, then an error saying the
//!   subscriber fell behind;
//!
//! and refuses anything else as an invalid argument.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

/// The token handed out by a successful handshake.
const TOKEN: &str = "token-for-the-shell-tests";

/// The fake server, serving on its own thread until dropped.
pub struct FakeFlight {
    /// Where it listens.
    pub address: SocketAddr,
    live: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeFlight {
    /// Starts a server; with `credentials`, every call but the handshake
    /// needs the token a handshake with them returns.
    pub fn start(credentials: Option<(&str, &str)>) -> FakeFlight {
        let live = Arc::new(AtomicUsize::new(0));
        let service = FakeService {
            basic: credentials.map(|(user, password)| {
                format!(
                    "Basic {}",
                    BASE64_STANDARD.encode(format!("{user}:{password}"))
                )
            }),
            live: Arc::clone(&live),
        };
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the fake server");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the fake server");
                address_tx
                    .send(listener.local_addr().expect("its address"))
                    .expect("report the address");
                tonic::transport::Server::builder()
                    .add_service(FlightServiceServer::new(service))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        async {
                            let _ = shutdown_rx.await;
                        },
                    )
                    .await
                    .expect("serve the fake server");
            });
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the fake server's address");
        FakeFlight {
            address,
            live,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// How many `SUBSCRIBE` streams are being sent right now.
    pub fn live_subscriptions(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits (up to `timeout`) until no `SUBSCRIBE` stream is being sent,
    /// and says whether that happened.
    pub fn wait_until_no_subscription(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.live_subscriptions() > 0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for FakeFlight {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Streams still open end when the runtime goes away with the
        // thread; do not wait for clients to hang up.
        drop(self.thread.take());
    }
}

struct FakeService {
    /// The `authorization` header the handshake expects, if any.
    basic: Option<String>,
    live: Arc<AtomicUsize>,
}

/// Counts a subscription while it is alive.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        LiveGuard(Arc::clone(live))
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type DataStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

fn one_column(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, false)]))
}

fn row(schema: &SchemaRef, value: i64) -> Result<RecordBatch, FlightError> {
    Ok(RecordBatch::try_new(
        Arc::clone(schema),
        vec![Arc::new(Int64Array::from(vec![value]))],
    )?)
}

fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> DataStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

impl FakeService {
    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.basic.is_none() {
            return Ok(());
        }
        let expected = format!("Bearer {TOKEN}");
        match request.metadata().get("authorization") {
            Some(value) if value.to_str().ok() == Some(expected.as_str()) => Ok(()),
            _ => Err(Status::unauthenticated("missing or invalid bearer token")),
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for FakeService {
    type FlightService = FakeService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let Some(expected) = &self.basic else {
            return Err(Status::unimplemented("no authentication here"));
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return Err(Status::unauthenticated("invalid user name or password"));
        }
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: TOKEN.as_bytes().to_vec().into(),
        };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter([Ok(answer)]));
        let mut response = Response::new(stream);
        let header = format!("Bearer {TOKEN}")
            .parse()
            .map_err(|_| Status::internal("token header"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_token(&request)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        Ok(Response::new(
            FlightInfo::new().with_endpoint(FlightEndpoint::new().with_ticket(ticket)),
        ))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_token(&request)?;
        let statement = String::from_utf8_lossy(&ticket.statement_handle).to_string();
        let words: Vec<String> = statement
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let stream = match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["select", ..] => {
                let schema = one_column("answer");
                let batch = row(&schema, 42);
                encode(schema, futures::stream::iter([batch]))
            }
            ["subscribe", "ticks"] => {
                let schema = one_column("n");
                let guard = LiveGuard::new(&self.live);
                let rows = futures::stream::unfold(
                    (0, guard, Arc::clone(&schema)),
                    |(n, guard, schema)| async move {
                        if n > 0 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Some((row(&schema, n), (n + 1, guard, schema)))
                    },
                );
                encode(schema, rows)
            }
            ["subscribe", "lagging"] => {
                let schema = one_column("n");
                let fell_behind = FlightError::Tonic(Box::new(Status::resource_exhausted(
                    "subscriber fell behind the view 'lagging' by more than 1000 batches; subscribe again",
                )));
                let rows =
                    futures::stream::iter([row(&schema, 0), row(&schema, 1), Err(fell_behind)]);
                encode(schema, rows)
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "the fake server does not know '{statement}'"
                )));
            }
        };
        Ok(Response::new(stream))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A batch stream that never ends is what the shell must cope with; make
/// sure the fake really produces one (guards against a fake that ends and
/// lets a cancel test pass vacuously).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_subscription_keeps_going_until_dropped() {
    let fake = FakeFlight::start(None);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", fake.address))
        .expect("URL")
        .connect()
        .await
        .expect("connect");
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    let info = client
        .execute("SUBSCRIBE ticks".into(), None)
        .await
        .expect("GetFlightInfo");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = client.do_get(ticket).await.expect("DoGet");
    for expected in 0..5 {
        let batch = stream.next().await.expect("a batch").expect("no error");
        let n = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("n")
            .value(0);
        assert_eq!(n, expected);
    }
    assert_eq!(fake.live_subscriptions(), 1);
    drop(stream);
    assert!(fake.wait_until_no_subscription(Duration::from_secs(10)));
}
