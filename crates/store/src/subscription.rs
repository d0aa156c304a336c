//! Catch-up subscription to the whole log, built only on the [`EventStore`] trait so that it
//! works with every backend.
//!
//! The subscription reads stored events with `read_all` in pages, then waits on `watch_head`
//! and reads again after every commit. It relies on the trait's contract that an event becomes
//! visible only together with every event of lower position, so continuing after the last
//! position received never skips an event.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{EventStore, RecordedEvent, StoreError};

/// Number of events requested from `read_all` at a time.
pub const SUBSCRIPTION_PAGE_SIZE: usize = 256;

/// Number of events buffered for a receiver that reads slower than the store is written.
const SUBSCRIPTION_BUFFER: usize = 256;

/// Streams every event with position greater than `after`, in position order, first from the
/// stored log and then as new events are committed.
///
/// Each event arrives once. A read error is sent as the last item and ends the subscription. To
/// continue, subscribe again after the position of the last event received. The subscription also
/// ends when the receiver is dropped, or when the store closes its head channel. It runs as a
/// task on the current Tokio runtime, so this must be called from inside one.
pub fn subscribe_all(
    store: Arc<dyn EventStore>,
    after: u64,
) -> mpsc::Receiver<Result<RecordedEvent, StoreError>> {
    let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
    tokio::spawn(run_subscription(store, after, sender));
    receiver
}

/// Body of the task started by [`subscribe_all`].
async fn run_subscription(
    store: Arc<dyn EventStore>,
    after: u64,
    sender: mpsc::Sender<Result<RecordedEvent, StoreError>>,
) {
    let mut head = store.watch_head();
    let mut last_position = after;

    loop {
        // Mark the current head as seen before reading. A commit that lands during the reads
        // below then still wakes the wait at the end of this pass.
        head.borrow_and_update();

        loop {
            let page = match store.read_all(last_position, SUBSCRIPTION_PAGE_SIZE).await {
                Ok(page) => page,
                Err(err) => {
                    warn!(
                        cause = %err,
                        after = last_position,
                        "subscription read failed, so the subscription ends"
                    );
                    // The receiver may be dropped already, and then the error has no recipient.
                    let _ = sender.send(Err(err)).await;
                    return;
                }
            };
            let caught_up = page.len() < SUBSCRIPTION_PAGE_SIZE;

            for event in page {
                last_position = event.position;
                if sender.send(Ok(event)).await.is_err() {
                    debug!(last_position, "subscription receiver dropped");
                    return;
                }
            }

            if caught_up {
                break;
            }
        }

        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    debug!(last_position, "store closed its head channel, so the subscription ends");
                    return;
                }
            }
            () = sender.closed() => {
                debug!(last_position, "subscription receiver dropped");
                return;
            }
        }
    }
}
