//! A Kafka proxy that makes a broker slow in the ways a loaded one is:
//! it paces what it forwards, holds every ListOffsets response (end-offset
//! lookups) for a while, and now and then stalls everything, so the
//! partitions deliver nothing for longer than an `idle_timeout` while the
//! broker still holds their records.
//!
//! Clients must reach the broker only through the proxy: the broker is
//! started advertising the proxy's address ([`crate::common::Broker::start_behind`]),
//! so the metadata it returns sends them back here.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Kafka's API key of ListOffsets requests.
const LIST_OFFSETS: i16 = 2;

/// How the proxy slows the broker down.
#[derive(Debug, Clone, Copy)]
pub struct Slowness {
    /// How long each ListOffsets response is held back.
    pub list_offsets_delay: Duration,
    /// Forwarding runs for `flowing`, then stops for `stalled`, over and
    /// over, once [`Proxy::start_stalls`] was called.
    pub flowing: Duration,
    pub stalled: Duration,
    /// What the broker sends is paced to this rate.
    pub bytes_per_second: u64,
}

/// A proxy listening on a loopback port of its own.
pub struct Proxy {
    port: u16,
    stalls_from: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Binds a free loopback port; [`Proxy::forward_to`] then starts it.
    pub fn bind() -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Proxy {
            port,
            stalls_from: Arc::new(Mutex::new(None)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        (proxy, listener)
    }

    /// Forwards every connection made to `listener` to `upstream`.
    pub fn forward_to(&self, listener: TcpListener, upstream: String, slowness: Slowness) {
        let stalls_from = Arc::clone(&self.stalls_from);
        let stop = Arc::clone(&self.stop);
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(broker) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        connect(
                            client,
                            broker,
                            slowness,
                            Arc::clone(&stalls_from),
                            Arc::clone(&stop),
                        );
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
    }

    /// Its address, for clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the periodic stalls (a stall first).
    pub fn start_stalls(&self) {
        *self.stalls_from.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Pumps one client connection both ways: requests straight through,
/// noting the correlation ids of ListOffsets; responses held as
/// [`Slowness`] says (responses come back in request order, so holding one
/// holds those behind it, as a slow broker does).
fn connect(
    client: TcpStream,
    broker: TcpStream,
    slowness: Slowness,
    stalls_from: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
) {
    let held: Arc<Mutex<VecDeque<i32>>> = Arc::default();
    let (Ok(mut client_in), Ok(mut broker_out)) = (client.try_clone(), broker.try_clone()) else {
        return;
    };
    let requests_held = Arc::clone(&held);
    thread::spawn(move || {
        while let Some(frame) = read_frame(&mut client_in) {
            // Header: api_key i16, api_version i16, correlation_id i32.
            if frame.len() >= 12 && i16::from_be_bytes([frame[4], frame[5]]) == LIST_OFFSETS {
                let id = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
                requests_held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(id);
            }
            if broker_out.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = broker_out.shutdown(Shutdown::Both);
    });
    let (mut broker_in, mut client_out) = (broker, client);
    thread::spawn(move || {
        while let Some(frame) = read_frame(&mut broker_in) {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let id = (frame.len() >= 8)
                .then(|| i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]));
            let delay = {
                let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                match held.iter().position(|&h| Some(h) == id) {
                    Some(i) => {
                        held.remove(i);
                        slowness.list_offsets_delay
                    }
                    None => Duration::ZERO,
                }
            };
            thread::sleep(delay);
            let from = *stalls_from.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(from) = from {
                let cycle = slowness.flowing + slowness.stalled;
                let into = Duration::from_nanos(
                    (from.elapsed().as_nanos() % cycle.as_nanos().max(1)) as u64,
                );
                if into < slowness.stalled {
                    thread::sleep(slowness.stalled - into);
                }
            }
            thread::sleep(Duration::from_secs_f64(
                frame.len() as f64 / slowness.bytes_per_second.max(1) as f64,
            ));
            if client_out.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
    });
}

/// One size-prefixed Kafka frame, the size included; `None` at the end.
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let len = i32::from_be_bytes(size);
    if !(0..=256 * 1024 * 1024).contains(&len) {
        return None;
    }
    let mut frame = vec![0u8; 4 + len as usize];
    frame[..4].copy_from_slice(&size);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}
