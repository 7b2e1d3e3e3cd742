//! The logs of calls answered before they were logged (the REST route,
//! [`Logging::AfterAnswer`](super::invoke::Logging)), written a few milliseconds' worth
//! at a time.
//!
//! The writes queued within [`LINGER`] of the first one are grouped by tenant, caller,
//! process, environment and hour ([`CallWrite::joins`]), and each group is written in
//! one transaction: the cache entries, then one statement that inserts every log row,
//! adds them to one rollup row and charges their tokens once
//! ([`calls::record_all`](super::calls::record_all)). A client calling one process
//! again and again thus costs PostgreSQL one transaction per batch instead of one per
//! call. The price is that a log row lands up to [`LINGER`] later than it would
//! alone; a caller repeating an input at once waits that long on the pending cache
//! entry (single flight).
//!
//! Each queued write is awaited by the task that queued it, which the server's
//! shutdown tracks: shutdown still waits for every answered call's log.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::invoke::CallWrite;
use crate::Result;

/// How long the first write of a batch waits for others to join it, by default.
pub const LINGER: Duration = Duration::from_millis(10);
/// The most writes one batch holds; a fuller queue starts the next batch at once.
const MAX_BATCH: usize = 256;

struct Queued {
    write: CallWrite,
    done: oneshot::Sender<Result<()>>,
}

/// Where answered calls queue their writes. Cloning shares the queue.
#[derive(Clone, Debug)]
pub struct CallLogQueue {
    sender: mpsc::UnboundedSender<Queued>,
}

impl CallLogQueue {
    /// Starts the task that writes what is queued, on the current runtime: each batch
    /// is what queues within `linger` of its first write (the server's default is
    /// [`LINGER`]; zero: what queued while the last batch was collected).
    pub fn with_linger(linger: Duration) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(drain(receiver, linger));
        Self { sender }
    }

    /// Queues a call's write and waits until it is written.
    pub async fn write(&self, write: CallWrite) -> Result<()> {
        let (done, written) = oneshot::channel();
        if let Err(mpsc::error::SendError(queued)) = self.sender.send(Queued { write, done }) {
            // The writer's runtime is gone: write it here.
            return queued.write.run().await;
        }
        written
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the call log writer stopped").into()))
    }
}

/// Collects batches and writes each group of a batch in its own task, so a slow
/// group holds up neither the others nor the next batch.
async fn drain(mut receiver: mpsc::UnboundedReceiver<Queued>, linger: Duration) {
    while let Some(first) = receiver.recv().await {
        let deadline = Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(queued)) => batch.push(queued),
                Ok(None) | Err(_) => break,
            }
        }
        for group in groups(batch) {
            tokio::spawn(write_group(group));
        }
    }
}

/// Splits a batch into the groups that can be written together, in queue order.
fn groups(batch: Vec<Queued>) -> Vec<Vec<Queued>> {
    let mut groups: Vec<Vec<Queued>> = Vec::new();
    for queued in batch {
        match groups
            .iter_mut()
            .find(|group| group[0].write.joins(&queued.write))
        {
            Some(group) => group.push(queued),
            None => groups.push(vec![queued]),
        }
    }
    groups
}

async fn write_group(group: Vec<Queued>) {
    let (writes, waiting): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|queued| (queued.write, queued.done))
        .unzip();
    let outcomes = CallWrite::run_together(writes).await;
    for (done, outcome) in waiting.into_iter().zip(outcomes) {
        // The waiter may be gone (its task cancelled); the write happened anyway.
        let _ = done.send(outcome);
    }
}
