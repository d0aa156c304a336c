//! Reading the event log in pages, so that no command keeps more than two pages in memory.
//!
//! The next page is read on Tokio's blocking pool while the caller works on the current one, so
//! SQLite reads and row decoding overlap with the caller's hashing and checking.

use std::sync::Arc;

use anyhow::Context;
use store::{EventStore, RecordedEvent, SqliteStore, StoreError};
use tokio::task::JoinHandle;

/// Events read from the store per page.
pub(crate) const PAGE_SIZE: usize = 10_000;

/// A page being read in the background.
type PendingPage = JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

/// Position-ordered pages of the log, from after a start position up to a last position.
pub(crate) struct EventPages {
    /// Store to read.
    store: Arc<SqliteStore>,
    /// Position after which the next page starts.
    after: u64,
    /// Last position to return, inclusive.
    last: u64,
    /// The next page, already requested.
    pending: Option<PendingPage>,
}

impl EventPages {
    /// Pages of the events with positions in `after + 1 ..= last`.
    pub(crate) fn new(store: &Arc<SqliteStore>, after: u64, last: u64) -> Self {
        EventPages { store: Arc::clone(store), after, last, pending: None }
    }

    /// Returns the next page, or `None` after the last position, and starts reading the page
    /// after it.
    ///
    /// A gap in positions does not end a page. The caller sees it as a jump in positions
    /// between consecutive events.
    pub(crate) async fn next_page(&mut self) -> anyhow::Result<Option<Vec<RecordedEvent>>> {
        if self.after >= self.last {
            return Ok(None);
        }

        let pending = match self.pending.take() {
            Some(pending) => pending,
            None => self.request(self.after),
        };
        let mut events = pending
            .await
            .context("the page reading task failed")?
            .with_context(|| format!("reading events after position {} failed", self.after))?;
        events.retain(|event| event.position <= self.last);

        let Some(last_event) = events.last() else {
            self.after = self.last;
            return Ok(None);
        };
        self.after = last_event.position;
        if self.after < self.last {
            self.pending = Some(self.request(self.after));
        }
        Ok(Some(events))
    }

    /// Starts reading the page after `after`.
    fn request(&self, after: u64) -> PendingPage {
        let store = Arc::clone(&self.store);
        tokio::spawn(async move { store.read_all(after, PAGE_SIZE).await })
    }
}

impl Drop for EventPages {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
    }
}
