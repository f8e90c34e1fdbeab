//! The end offsets of an unbounded read, looked up in the background.
//!
//! A partition may be taken for idle only once the source has read it to
//! the end of what the broker holds. Asking the broker from the reading
//! thread would stall reading whenever the broker is slow, and a lookup
//! that times out stays queued on the connection the records come over, so
//! asking again would bury the records under more lookups. A watcher thread
//! with a connection of its own asks instead, one partition at a time, and
//! records each answer with the time it was asked for: an answer is worth
//! only as much as it is fresh.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{KafkaConfig, REQUEST_TIMEOUT, kafka_error};
use crate::Result;

/// A partition's end offset as the broker gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndOffset {
    /// The offset the next record produced will have.
    pub high: i64,
    /// When the lookup was sent: the partition ended there at that time
    /// or later.
    pub asked_at: Instant,
}

#[derive(Default)]
struct Shared {
    partitions: Vec<i32>,
    ends: BTreeMap<i32, EndOffset>,
}

/// Looks up every partition's end offset every `interval`, on a thread and
/// a connection of its own; stops when dropped.
pub(crate) struct EndOffsetWatcher {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl EndOffsetWatcher {
    /// Starts watching `partitions` of `config`'s topic.
    pub fn start(
        stream: &str,
        config: &KafkaConfig,
        partitions: Vec<i32>,
        interval: Duration,
    ) -> Result<Self> {
        let consumer: BaseConsumer = config
            .consumer_config()
            .create()
            .map_err(|e| kafka_error(&config.brokers, "cannot create an end-offset consumer", e))?;
        let shared = Arc::new(Mutex::new(Shared {
            partitions,
            ends: BTreeMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let watch = Watch {
            stream: stream.to_string(),
            topic: config.topic.clone(),
            consumer,
            interval,
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
        };
        std::thread::Builder::new()
            .name(format!("end-offsets-{stream}"))
            .spawn(move || watch.run())
            .map_err(|e| crate::Error::invalid(format!("cannot start a thread: {e}")))?;
        Ok(EndOffsetWatcher { shared, stop })
    }

    /// Adds partitions found since the start.
    pub fn watch(&self, partition: i32) {
        let mut shared = self.lock();
        if !shared.partitions.contains(&partition) {
            shared.partitions.push(partition);
        }
    }

    /// The end offset of each partition whose latest answer was asked for
    /// at most `max_age` ago.
    pub fn fresh_ends(&self, max_age: Duration) -> BTreeMap<i32, i64> {
        let now = Instant::now();
        self.lock()
            .ends
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.asked_at) <= max_age)
            .map(|(&p, e)| (p, e.high))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // Plain data, consistent after any panic.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for EndOffsetWatcher {
    fn drop(&mut self) {
        // The thread ends after its current lookup; nobody waits for it.
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Watch {
    stream: String,
    topic: String,
    consumer: BaseConsumer,
    interval: Duration,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    fn run(self) {
        let mut failing = std::collections::BTreeSet::new();
        while !self.stop.load(Ordering::SeqCst) {
            let began = Instant::now();
            let partitions = self
                .shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .partitions
                .clone();
            for partition in partitions {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                let asked_at = Instant::now();
                // One lookup at a time, however long the broker takes: a
                // slow broker is not sent more work than it can answer.
                match self
                    .consumer
                    .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
                {
                    Ok((_, high)) => {
                        if failing.remove(&partition) {
                            tracing::info!(
                                "stream '{}': the end offset of topic '{}' partition \
                                 {partition} can be looked up again",
                                self.stream,
                                self.topic
                            );
                        }
                        self.shared
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .ends
                            .insert(partition, EndOffset { high, asked_at });
                    }
                    Err(e) => {
                        if failing.insert(partition) {
                            tracing::warn!(
                                "stream '{}': cannot look up the end offset of topic '{}' \
                                 partition {partition} ({e}); until the broker answers, the \
                                 partition is not taken for idle and holds the watermark back",
                                self.stream,
                                self.topic
                            );
                        }
                    }
                }
            }
            while began.elapsed() < self.interval && !self.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20).min(self.interval));
            }
        }
    }
}
