//! Live subscriptions: `SUBSCRIBE name [FROM NOW | FROM BEGINNING]`.
//!
//! A view's or sink's job publishes every batch it emits into the
//! object's [`Feed`], a bounded broadcast channel that subscribers read
//! from. A subscriber that falls more than [`SUBSCRIBER_BUFFER_BATCHES`]
//! behind is told so and dropped, so a slow client never grows the
//! server's memory: the channel keeps each batch once, however many read it.
//!
//! `FROM BEGINNING` first reads the archive, then the rows emitted but not
//! yet committed, then the live feed. Commits and snapshots exclude each
//! other (see [`Feed::commit`]), so each row is delivered exactly once.
//!
//! A stream has no job of its own to tap: subscribing to it opens a reader
//! of its own (from the latest or the earliest record), which reads only as
//! fast as the subscriber takes rows.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio::sync::{RwLock, broadcast, mpsc, watch};

use crate::archive::to_archive;
use crate::connector::{Poll, StreamDef};
use crate::{Error, Result, RowStream};

/// Batches a subscriber may fall behind before it is dropped.
pub(crate) const SUBSCRIBER_BUFFER_BATCHES: usize = 64;

/// Batches read ahead for a subscriber to a stream.
const STREAM_READ_AHEAD: usize = 4;

/// The rows a view or sink emits, fanned out to its subscribers.
pub(crate) struct Feed {
    name: String,
    /// The schema subscribers see: the archive's, as in ad-hoc queries.
    schema: SchemaRef,
    state: Mutex<FeedState>,
    /// Held exclusively while the job commits, and shared while a
    /// subscriber `FROM BEGINNING` pins its snapshot of the archive.
    commits: RwLock<()>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("name", &self.name)
            .field("subscribers", &self.lock().sender.receiver_count())
            .finish_non_exhaustive()
    }
}

struct FeedState {
    sender: broadcast::Sender<RecordBatch>,
    /// Rows emitted and not yet committed, each with the epoch it belongs
    /// to; kept only when the archive can be read back (not for Kafka
    /// sinks). The job commits asynchronously, so rows of the next epochs
    /// come in while one is committed.
    uncommitted: Option<Vec<(u64, RecordBatch)>>,
    /// The epoch rows published now belong to (see [`Feed::seal`]).
    open: u64,
}

impl Feed {
    /// A feed of rows with `schema` (the archive schema); `archived` when
    /// the rows can be read back from an archive.
    pub fn new(name: &str, schema: SchemaRef, archived: bool) -> Self {
        let (sender, _) = broadcast::channel(SUBSCRIBER_BUFFER_BATCHES);
        Feed {
            name: name.to_string(),
            schema,
            state: Mutex::new(FeedState {
                sender,
                uncommitted: archived.then(Vec::new),
                open: 0,
            }),
            commits: RwLock::new(()),
        }
    }

    /// Hands a batch the job emitted to the subscribers.
    pub fn publish(&self, batch: &RecordBatch) -> Result<()> {
        let batch = to_archive(batch, &self.schema)?;
        let mut state = self.lock();
        let open = state.open;
        if let Some(uncommitted) = &mut state.uncommitted {
            uncommitted.push((open, batch.clone()));
        }
        // An error only says that nobody subscribes.
        let _unheard = state.sender.send(batch);
        Ok(())
    }

    /// Closes the epoch the rows published so far belong to, at a
    /// barrier: what is published from now on belongs to the next one.
    /// Returns the epoch closed, for [`Feed::commit_sealed`].
    pub fn seal(&self) -> u64 {
        let mut state = self.lock();
        state.open += 1;
        state.open - 1
    }

    /// Runs `commit` (the archive's commit of every epoch up to `sealed`)
    /// with snapshots kept out; once it succeeded, the rows of those
    /// epochs are the archive's, no longer uncommitted, while those of
    /// later epochs stay.
    pub async fn commit_sealed<T>(
        &self,
        sealed: u64,
        commit: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let _exclusive = self.commits.write().await;
        let committed = commit.await?;
        if let Some(uncommitted) = &mut self.lock().uncommitted {
            uncommitted.retain(|(epoch, _)| *epoch > sealed);
        }
        Ok(committed)
    }

    /// Runs `commit` as [`Feed::commit_sealed`] does for everything
    /// published so far: a recovery finishing the commit of its checkpoint
    /// before it emits anything (rows an earlier run published and did not
    /// commit are made again from that checkpoint).
    pub async fn commit<T>(&self, commit: impl Future<Output = Result<T>>) -> Result<T> {
        let sealed = self.seal();
        self.commit_sealed(sealed, commit).await
    }

    /// A subscription to the rows emitted from now on.
    pub fn subscribe(&self, closing: watch::Receiver<bool>) -> RowStream {
        let receiver = self.lock().sender.subscribe();
        RowStream::new(
            Arc::clone(&self.schema),
            until_closed(live(self.name.clone(), receiver), closing),
        )
    }

    /// A subscription to every row: those `archived` returns (a scan of
    /// the archive, planned while commits wait), then those not yet
    /// committed, then the live ones.
    pub async fn subscribe_from_beginning<F>(
        &self,
        archived: F,
        closing: watch::Receiver<bool>,
    ) -> Result<RowStream>
    where
        F: Future<Output = Result<RowStream>>,
    {
        let (uncommitted, receiver, archived) = {
            let _shared = self.commits.read().await;
            let (uncommitted, receiver) = {
                let state = self.lock();
                let Some(uncommitted) = &state.uncommitted else {
                    return Err(Error::invalid(format!(
                        "'{}' keeps no archive to read from the beginning; SUBSCRIBE {0} FROM NOW",
                        self.name
                    )));
                };
                (uncommitted.clone(), state.sender.subscribe())
            };
            // The scan's files are chosen when it is planned, here.
            (uncommitted, receiver, archived.await?)
        };
        let schema = Arc::clone(&self.schema);
        let archived = archived
            .into_stream()
            .map(move |batch| batch.and_then(|b| to_archive(&b, &schema)));
        let rows = archived
            .chain(futures::stream::iter(
                uncommitted.into_iter().map(|(_, batch)| Ok(batch)),
            ))
            .chain(live(self.name.clone(), receiver));
        Ok(RowStream::new(
            Arc::clone(&self.schema),
            until_closed(rows, closing),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        // A panic while holding the lock cannot leave the state half
        // changed: each update is one push, send or clear.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The batches a broadcast receiver gets, ending when the feed is dropped,
/// or with [`Error::FellBehind`] when the subscriber lagged too far.
fn live(
    name: String,
    receiver: broadcast::Receiver<RecordBatch>,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
    futures::stream::unfold(Some(receiver), move |receiver| {
        let name = name.clone();
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(batch) => Some((Ok(batch), Some(receiver))),
                Err(broadcast::error::RecvError::Closed) => None,
                Err(broadcast::error::RecvError::Lagged(skipped)) => Some((
                    Err(Error::FellBehind {
                        name,
                        skipped,
                        limit: SUBSCRIBER_BUFFER_BATCHES,
                    }),
                    None,
                )),
            }
        }
    })
}

/// Ends `rows` when the engine closes its subscriptions (at shutdown).
fn until_closed(
    rows: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    mut closing: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
    rows.take_until(async move {
        // An error means the engine is gone: end too.
        let _closed = closing.wait_for(|closed| *closed).await;
    })
}

/// A subscription to a stream: a reader of its own, on a blocking thread,
/// reading only as fast as the subscriber takes its rows.
pub(crate) fn subscribe_stream(
    stream: &StreamDef,
    from_beginning: bool,
    batch_size: usize,
    closing: watch::Receiver<bool>,
) -> Result<RowStream> {
    let schema = Arc::clone(&stream.schema);
    let Some(mut source) = stream.open_subscription(from_beginning, batch_size)? else {
        return Ok(RowStream::ready(schema, Vec::new()));
    };
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(STREAM_READ_AHEAD);
    let arrival_time = stream.arrival_time.then(|| Arc::clone(&schema));
    tokio::task::spawn_blocking(move || {
        let mut last_arrival = i64::MIN;
        // Ends when the subscriber leaves (the receiver is dropped).
        while !tx.is_closed() {
            let batch = match source.poll() {
                Ok(Poll::Batch(_, batch)) => batch,
                Ok(Poll::Idle(wait)) => {
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                    continue;
                }
                Ok(Poll::End) => return,
                Err(e) => {
                    let _gone = tx.blocking_send(Err(e));
                    return;
                }
            };
            let batch = match &arrival_time {
                Some(schema) => {
                    last_arrival = crate::job::now_nanos().max(last_arrival);
                    crate::job::with_arrival_time(schema, batch, last_arrival)
                }
                None => Ok(batch),
            };
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
    });
    let rows = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|batch| (batch, rx))
    });
    Ok(RowStream::new(schema, until_closed(rows, closing)))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use futures::TryStreamExt;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]))
    }

    fn batch(values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(TimestampNanosecondArray::from(
                    values.iter().map(|v| v * 1000).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    fn feed(archived: bool) -> Feed {
        Feed::new("v", crate::archive::archive_schema(&schema()), archived)
    }

    fn open() -> (watch::Sender<bool>, watch::Receiver<bool>) {
        watch::channel(false)
    }

    #[tokio::test]
    async fn subscribers_get_rows_from_their_start_in_the_archive_schema() {
        let feed = feed(true);
        let (_closing, closed) = open();
        feed.publish(&batch(&[1])).unwrap();
        let mut live = feed.subscribe(closed.clone()).into_stream();
        feed.publish(&batch(&[2, 3])).unwrap();
        let got = live.next().await.unwrap().unwrap();
        assert_eq!(values(std::slice::from_ref(&got)), [2, 3]);
        // Timestamps in microseconds, as the archive and ad-hoc queries
        // have them.
        assert_eq!(
            got.schema().field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
    }

    #[tokio::test]
    async fn from_beginning_reads_archive_then_uncommitted_then_live_once_each() {
        let feed = feed(true);
        let (closing, closed) = open();
        // Rows 1 and 2 were committed (they are in the "archive"), row 3
        // emitted but not committed yet.
        feed.publish(&batch(&[1, 2])).unwrap();
        feed.commit(async { Ok(()) }).await.unwrap();
        feed.publish(&batch(&[3])).unwrap();
        let archive_schema = Arc::clone(&feed.schema);
        let rows = feed
            .subscribe_from_beginning(
                async move { Ok(RowStream::ready(archive_schema, vec![batch(&[1, 2])])) },
                closed,
            )
            .await
            .unwrap();
        feed.publish(&batch(&[4])).unwrap();
        feed.commit(async { Ok(()) }).await.unwrap();
        feed.publish(&batch(&[5])).unwrap();
        let mut rows = rows.into_stream();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(rows.next().await.unwrap().unwrap());
        }
        assert_eq!(values(&got), [1, 2, 3, 4, 5]);
        // Closing (at shutdown) ends the subscription.
        closing.send_replace(true);
        assert!(rows.next().await.is_none());
    }

    /// The job commits an epoch while it goes on emitting the next: a
    /// commit takes only the rows of the epochs sealed before it.
    #[tokio::test]
    async fn a_commit_keeps_the_rows_of_later_epochs_uncommitted() {
        let feed = feed(true);
        let (_closing, closed) = open();
        feed.publish(&batch(&[1])).unwrap();
        let sealed = feed.seal();
        feed.publish(&batch(&[2])).unwrap();
        feed.commit_sealed(sealed, async { Ok(()) }).await.unwrap();
        let archive_schema = Arc::clone(&feed.schema);
        let rows = feed
            .subscribe_from_beginning(
                async move { Ok(RowStream::ready(archive_schema, vec![batch(&[1])])) },
                closed,
            )
            .await
            .unwrap();
        feed.publish(&batch(&[3])).unwrap();
        let mut rows = rows.into_stream();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rows.next().await.unwrap().unwrap());
        }
        assert_eq!(values(&got), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_fell_behind() {
        let feed = feed(true);
        let (_closing, closed) = open();
        let mut rows = feed.subscribe(closed).into_stream();
        for i in 0..(SUBSCRIBER_BUFFER_BATCHES as i64 + 10) {
            feed.publish(&batch(&[i])).unwrap();
        }
        let error = rows.next().await.unwrap().unwrap_err();
        assert!(
            matches!(error, Error::FellBehind { skipped: 10, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("fell behind"), "{error}");
        assert!(rows.next().await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_feed_ends_its_subscriptions() {
        let feed = feed(false);
        let (_closing, closed) = open();
        let rows = feed.subscribe(closed.clone());
        feed.publish(&batch(&[1])).unwrap();
        drop(feed);
        let got: Vec<RecordBatch> = rows.into_stream().try_collect().await.unwrap();
        assert_eq!(values(&got), [1]);
    }

    #[tokio::test]
    async fn a_feed_without_archive_cannot_start_from_the_beginning() {
        let feed = feed(false);
        let (_closing, closed) = open();
        let schema = Arc::clone(&feed.schema);
        let error = feed
            .subscribe_from_beginning(async move { Ok(RowStream::ready(schema, vec![])) }, closed)
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("FROM NOW"), "{error}");
    }
}
