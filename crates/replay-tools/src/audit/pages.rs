//! Reading the event log in pages, so that no command keeps more than one page in memory.

use anyhow::Context;
use store::{EventStore, RecordedEvent, SqliteStore};

/// Events read from the store per page.
pub(crate) const PAGE_SIZE: usize = 10_000;

/// Position-ordered pages of the log, from after a start position up to a last position.
pub(crate) struct EventPages<'a> {
    /// Store to read.
    store: &'a SqliteStore,
    /// Position of the last event returned so far.
    after: u64,
    /// Last position to return, inclusive.
    last: u64,
}

impl<'a> EventPages<'a> {
    /// Pages of the events with positions in `after + 1 ..= last`.
    pub(crate) fn new(store: &'a SqliteStore, after: u64, last: u64) -> Self {
        EventPages { store, after, last }
    }

    /// Returns the next page, or `None` after the last position.
    ///
    /// A gap in positions does not end a page. The caller sees it as a jump in positions
    /// between consecutive events.
    pub(crate) async fn next_page(&mut self) -> anyhow::Result<Option<Vec<RecordedEvent>>> {
        if self.after >= self.last {
            return Ok(None);
        }

        let mut events = self
            .store
            .read_all(self.after, PAGE_SIZE)
            .await
            .with_context(|| format!("reading events after position {} failed", self.after))?;
        events.retain(|event| event.position <= self.last);

        let Some(last_event) = events.last() else {
            self.after = self.last;
            return Ok(None);
        };
        self.after = last_event.position;
        Ok(Some(events))
    }
}
