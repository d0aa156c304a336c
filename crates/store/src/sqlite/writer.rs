//! Writer thread of the SQLite store: the only connection that writes, committing the queued
//! append requests in groups.
//!
//! Each group is one `BEGIN IMMEDIATE … COMMIT` transaction, so the group pays for one fsync.
//! A request that fails leaves no trace, while the other requests of its group commit. Later
//! requests see the writes of earlier ones in the same group, so their revision checks are made
//! against the state that the group will commit.
//!
//! A group is first written without savepoints: the writer checks every expected revision of a
//! request against the group's in-memory map of stream revisions before it writes anything, so a
//! request with a wrong revision is rejected without a write. If a write then fails, the writer
//! rolls back the whole transaction and writes the group again with a savepoint per request,
//! so only the failing request is rolled back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::tree::{self, RightEdge};
use super::{backend_error, failure_message, wal};
use crate::merkle::{self, leaf_hash, LeafFields};
use crate::{AppendOutcome, ExpectedRevision, NewEvent, StoreError, StreamAppend};

/// Maximum number of append requests committed in one transaction. It bounds the time the write
/// lock is held and the work lost when a commit fails.
const MAX_GROUP_REQUESTS: usize = 512;

/// Maximum time the writer waits for more requests before committing a group, when the
/// previous group held more than one request. Concurrent writers wake one by one after a commit,
/// so without this wait each group would catch only the few that were already queued.
const GROUP_LINGER: Duration = Duration::from_micros(300);

/// Pause between two looks at the queue while the writer lingers.
const LINGER_POLL: Duration = Duration::from_micros(20);

/// Maximum number of stream ids named in the log line of a failed group.
const MAX_LOGGED_STREAM_IDS: usize = 16;

/// One `EventStore::append` call waiting for the writer thread.
pub(super) struct AppendRequest {
    /// Stream appends of the call, already checked by `validate_appends`.
    pub(super) appends: Vec<StreamAppend>,
    /// Receives the outcome after the group holding this request has committed or failed.
    pub(super) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// State owned by the writer thread.
pub(super) struct Writer {
    /// The only read-write connection to the file.
    connection: Connection,
    /// Database file, for log lines and error messages.
    path: PathBuf,
    /// Receives the new head position after every commit that wrote events.
    head: Arc<watch::Sender<u64>>,
    /// Number of committed transactions, shared with `SqliteStore::commit_count`.
    commits: Arc<AtomicU64>,
}

/// Failure that stops writing a group.
enum GroupError {
    /// A write failed after the request's revision checks had passed. The transaction is rolled
    /// back and the group is written again with a savepoint per request.
    Retry(String),
    /// The transaction is no longer usable, so the whole group fails. The message names the
    /// file and the cause.
    Abort(String),
}

/// Isolation of the requests of a group from each other inside its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isolation {
    /// Revision checks run against an in-memory map before any write, and no savepoint is made.
    /// A failed write fails the whole attempt.
    Checked,
    /// Every request runs inside its own savepoint, which is rolled back when it fails.
    Savepoints,
}

/// Last event in the file when a group starts.
struct Tail {
    /// Position of the last event, 0 when the store is empty.
    position: u64,
    /// Commit time of the last event, 0 when the store is empty.
    recorded_at_ms: i64,
}

/// Outcomes of a written group and the head position after it.
type GroupOutcome = (Vec<Result<AppendOutcome, StoreError>>, u64);

/// Result of one request inside a group: its outcome and the new head position, or the error
/// that rejected it alone (the outer error stops the whole group).
type RequestResult = Result<Result<(AppendOutcome, u64), StoreError>, GroupError>;

impl Writer {
    pub(super) fn new(
        connection: Connection,
        path: PathBuf,
        head: Arc<watch::Sender<u64>>,
        commits: Arc<AtomicU64>,
    ) -> Writer {
        Writer {
            connection,
            path,
            head,
            commits,
        }
    }

    /// Starts the writer thread. It runs until every sender of `requests` is dropped and the
    /// requests still queued are committed.
    pub(super) fn spawn(
        self,
        requests: mpsc::Receiver<AppendRequest>,
    ) -> Result<JoinHandle<()>, StoreError> {
        let path = self.path.clone();
        thread::Builder::new()
            .name("event-store-writer".to_owned())
            .spawn(move || self.run(requests))
            .map_err(|err| backend_error(&path, "start the writer thread", err))
    }

    fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        info!(path = %self.path.display(), "event store writer started");
        let checkpointer = wal::Checkpointer::start(&self.connection, &self.path);

        // Group commit: block for one request, then take every request already queued, up to
        // the group limit, and commit them together.
        let mut previous_group_len = 0usize;
        while let Some(first) = requests.blocking_recv() {
            let group = collect_group(&mut requests, first, previous_group_len);
            previous_group_len = group.len();
            self.commit_group(group);
            if let Some(checkpointer) = &checkpointer {
                checkpointer.notify_commit();
            }
        }

        // The checkpointer's connection must be closed first, because only the last connection
        // can truncate the WAL.
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        self.checkpoint();
        info!(
            path = %self.path.display(),
            commits = self.commits.load(Ordering::Relaxed),
            "event store writer stopped"
        );
    }

    /// Commits a group in one transaction, publishes the new head position, then replies to
    /// every request. No request gets a success reply before COMMIT has returned.
    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let (appends, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|request| (request.appends, request.reply))
            .unzip();

        let outcomes = match self.write_group(&appends) {
            Ok((outcomes, head_position)) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.head.send_if_modified(|published| {
                    let advanced = head_position > *published;
                    if advanced {
                        *published = head_position;
                    }
                    advanced
                });
                outcomes
            }
            Err(cause) => {
                let stream_ids: Vec<&str> = appends
                    .iter()
                    .flatten()
                    .map(|append| append.stream_id.as_str())
                    .take(MAX_LOGGED_STREAM_IDS)
                    .collect();
                error!(
                    cause = %cause,
                    requests = appends.len(),
                    ?stream_ids,
                    "group commit failed, so every append of the group failed"
                );
                appends
                    .iter()
                    .map(|_| Err(StoreError::Backend(cause.clone())))
                    .collect()
            }
        };

        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            if reply.send(outcome).is_err() {
                debug!(
                    path = %self.path.display(),
                    "append caller stopped waiting before its reply"
                );
            }
        }
    }

    /// Writes every request of the group and commits, first without savepoints and, when a write
    /// fails there, again with a savepoint per request. Returns each request's outcome and the
    /// head position after the commit, or the message of a failure that rolled back the group.
    fn write_group(&mut self, group: &[Vec<StreamAppend>]) -> Result<GroupOutcome, String> {
        let cause = match self.write_group_with(group, Isolation::Checked) {
            Ok(written) => return Ok(written),
            Err(GroupError::Abort(cause)) => return Err(cause),
            Err(GroupError::Retry(cause)) => cause,
        };

        warn!(
            path = %self.path.display(),
            cause = %cause,
            requests = group.len(),
            "a write failed in a group without savepoints; writing the group again with a \
             savepoint per request"
        );
        match self.write_group_with(group, Isolation::Savepoints) {
            Ok(written) => Ok(written),
            Err(GroupError::Abort(cause) | GroupError::Retry(cause)) => Err(cause),
        }
    }

    /// Writes the group in one transaction with the given isolation and commits. Dropping the
    /// transaction on an error rolls it back.
    fn write_group_with(
        &mut self,
        group: &[Vec<StreamAppend>],
        isolation: Isolation,
    ) -> Result<GroupOutcome, GroupError> {
        let path = self.path.as_path();
        let mut transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| {
                GroupError::Abort(failure_message(path, "begin the group transaction", err))
            })?;

        // Positions are assigned here, inside the transaction that holds SQLite's write lock,
        // and never reused, because a rejected request hands its positions to the next one.
        // Commits are thus serialized in position order, so a snapshot that contains position N
        // also contains every position below N.
        let tail = read_tail(&transaction, path).map_err(|err| GroupError::Abort(err.to_string()))?;
        let recorded_at_ms = now_ms().max(tail.recorded_at_ms);
        let mut head_position = tail.position;

        // Stream revisions read or written so far in this transaction; `None` is a stream
        // without events.
        let mut revisions: HashMap<&str, Option<u64>> = HashMap::new();
        // Merkle nodes inserted so far in this transaction. Only the checked mode shares it
        // between requests, because a savepoint rollback would leave stale nodes in it.
        let mut edge = RightEdge::default();
        let mut outcomes = Vec::with_capacity(group.len());
        for appends in group {
            let written = match isolation {
                Isolation::Checked => write_checked_request(
                    &transaction,
                    path,
                    appends,
                    &mut revisions,
                    &mut edge,
                    head_position,
                    recorded_at_ms,
                )?,
                Isolation::Savepoints => write_request_in_savepoint(
                    &mut transaction,
                    path,
                    appends,
                    head_position,
                    recorded_at_ms,
                )?,
            };

            match written {
                Ok((outcome, new_head_position)) => {
                    head_position = new_head_position;
                    outcomes.push(Ok(outcome));
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }

        transaction.commit().map_err(|err| {
            GroupError::Abort(failure_message(path, "commit the group transaction", err))
        })?;

        Ok((outcomes, head_position))
    }

    /// Moves the WAL into the main file and truncates it, so that once the store is closed the
    /// main file alone contains every commit.
    fn checkpoint(&self) {
        let path = self.path.display();
        let blocked = self
            .connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            });

        match blocked {
            Ok(0) => debug!(path = %path, "checkpointed the WAL on shutdown"),
            Ok(_) => warn!(
                path = %path,
                "WAL checkpoint on shutdown was blocked by a reader; recent commits stay in the -wal file"
            ),
            Err(err) => warn!(
                cause = %err,
                path = %path,
                "WAL checkpoint on shutdown failed; recent commits stay in the -wal file"
            ),
        }
    }
}

/// Takes `first` and the requests queued behind it, up to [`MAX_GROUP_REQUESTS`].
///
/// When the previous group held more than one request, concurrent callers are probably busy
/// sending their next request, so the writer waits up to [`GROUP_LINGER`] for more. It stops
/// waiting once the group is as large as the previous one, because then every caller of the
/// last group is usually back.
fn collect_group(
    requests: &mut mpsc::Receiver<AppendRequest>,
    first: AppendRequest,
    previous_group_len: usize,
) -> Vec<AppendRequest> {
    let mut group = Vec::with_capacity(previous_group_len.clamp(1, MAX_GROUP_REQUESTS));
    group.push(first);
    let deadline = Instant::now() + GROUP_LINGER;

    loop {
        while group.len() < MAX_GROUP_REQUESTS {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }

        // A lone writer does not wait, because its previous group had one request.
        let linger = previous_group_len > 1 && group.len() < previous_group_len;
        if !linger || Instant::now() >= deadline {
            return group;
        }
        thread::sleep(LINGER_POLL);
    }
}

/// Writes one request without a savepoint. Every expected revision of the request is checked
/// against `revisions` (filled from table `streams` on first use) before anything is written, so
/// a rejected request writes nothing. A failed write fails the attempt with
/// [`GroupError::Retry`], because part of the request may already be in the transaction.
fn write_checked_request<'g>(
    connection: &Connection,
    path: &Path,
    appends: &'g [StreamAppend],
    revisions: &mut HashMap<&'g str, Option<u64>>,
    edge: &mut RightEdge,
    head_position: u64,
    recorded_at_ms: i64,
) -> RequestResult {
    let currents = match check_request(connection, path, appends, revisions) {
        Ok(currents) => currents,
        Err(err @ StoreError::WrongExpectedRevision { .. }) => return Ok(Err(err)),
        Err(err) => return Err(GroupError::Retry(err.to_string())),
    };

    let mut head = head_position;
    let mut first_position = None;
    let mut outcome_revisions = Vec::with_capacity(appends.len());
    for (append, current) in appends.iter().zip(currents) {
        let written = insert_append(connection, path, append, current, head, recorded_at_ms, edge);
        let (revision, first) = match written {
            Ok(written) => written,
            Err(err) if connection.is_autocommit() => {
                return Err(GroupError::Abort(format!(
                    "SQLite rolled back the group transaction after: {err}"
                )));
            }
            Err(err) => return Err(GroupError::Retry(err.to_string())),
        };

        if let Some(first) = first {
            first_position.get_or_insert(first);
            head += append.events.len() as u64;
        }
        revisions.insert(append.stream_id.as_str(), revision);
        outcome_revisions.push((append.stream_id.clone(), revision));
    }

    let outcome = AppendOutcome {
        first_position,
        last_position: first_position.map(|_| head),
        revisions: outcome_revisions,
    };
    Ok(Ok((outcome, head)))
}

/// Checks every expected revision of a request, in request order and counting the request's own
/// earlier appends to the same stream. Returns each append's current revision.
fn check_request<'g>(
    connection: &Connection,
    path: &Path,
    appends: &'g [StreamAppend],
    revisions: &mut HashMap<&'g str, Option<u64>>,
) -> Result<Vec<Option<u64>>, StoreError> {
    // Revisions this request would leave, so that a second append to the same stream is checked
    // against the first one.
    let mut pending: Vec<(&str, Option<u64>)> = Vec::new();
    let mut currents = Vec::with_capacity(appends.len());

    for append in appends {
        let stream_id = append.stream_id.as_str();
        let current = match pending.iter().rev().find(|(id, _)| *id == stream_id) {
            Some((_, revision)) => *revision,
            None => match revisions.get(stream_id) {
                Some(revision) => *revision,
                None => {
                    let revision = current_revision(connection, path, stream_id)?;
                    revisions.insert(stream_id, revision);
                    revision
                }
            },
        };
        check_expected(append, current)?;

        currents.push(current);
        pending.push((stream_id, revision_after(current, append.events.len())));
    }

    Ok(currents)
}

/// Returns the stream's revision after appending `count` events at `current`.
fn revision_after(current: Option<u64>, count: usize) -> Option<u64> {
    match (current, count) {
        (current, 0) => current,
        (None, count) => Some(count as u64 - 1),
        (Some(revision), count) => Some(revision + count as u64),
    }
}

/// Writes one request inside a savepoint and releases it, or rolls it back when the request
/// fails.
fn write_request_in_savepoint(
    transaction: &mut Transaction<'_>,
    path: &Path,
    appends: &[StreamAppend],
    head_position: u64,
    recorded_at_ms: i64,
) -> RequestResult {
    let savepoint = transaction
        .savepoint()
        .map_err(|err| GroupError::Abort(failure_message(path, "create a savepoint", err)))?;

    match apply_appends(&savepoint, path, appends, head_position, recorded_at_ms) {
        Ok(written) => {
            savepoint.commit().map_err(|err| {
                GroupError::Abort(failure_message(path, "release a savepoint", err))
            })?;
            Ok(Ok(written))
        }
        Err(err) => {
            // After some errors, such as a full disk, SQLite rolls back the whole transaction
            // by itself. Later statements would then run outside any transaction, so the group
            // must stop here.
            if savepoint.is_autocommit() {
                return Err(GroupError::Abort(format!(
                    "SQLite rolled back the group transaction after: {err}"
                )));
            }

            savepoint.finish().map_err(|rollback_err| {
                GroupError::Abort(failure_message(path, "roll back a savepoint", rollback_err))
            })?;

            if !matches!(err, StoreError::WrongExpectedRevision { .. }) {
                let stream_ids: Vec<&str> = appends
                    .iter()
                    .map(|append| append.stream_id.as_str())
                    .collect();
                warn!(
                    cause = %err,
                    ?stream_ids,
                    "append failed and was rolled back; the rest of its group goes on"
                );
            }
            Ok(Err(err))
        }
    }
}

/// Checks each stream's expected revision against table `streams` and inserts its events, in
/// request order. Returns the outcome and the new head position. On error the caller rolls back
/// what was written.
fn apply_appends(
    connection: &Connection,
    path: &Path,
    appends: &[StreamAppend],
    head_position: u64,
    recorded_at_ms: i64,
) -> Result<(AppendOutcome, u64), StoreError> {
    let mut head_position = head_position;
    let mut first_position = None;
    let mut revisions = Vec::with_capacity(appends.len());
    // Rolled back together with the request's savepoint, because it lives only for the request.
    let mut edge = RightEdge::default();

    for append in appends {
        let current = current_revision(connection, path, &append.stream_id)?;
        check_expected(append, current)?;

        let (revision, first) = insert_append(
            connection,
            path,
            append,
            current,
            head_position,
            recorded_at_ms,
            &mut edge,
        )?;
        if let Some(first) = first {
            first_position.get_or_insert(first);
            head_position += append.events.len() as u64;
        }
        revisions.push((append.stream_id.clone(), revision));
    }

    let outcome = AppendOutcome {
        first_position,
        last_position: first_position.map(|_| head_position),
        revisions,
    };
    Ok((outcome, head_position))
}

/// Inserts the events of one stream append after the stream's checked `current` revision, at the
/// positions after `head_position`, and stores the stream's new revision. Returns the stream's
/// revision afterwards and the position of its first event, `None` when it has no events.
fn insert_append(
    connection: &Connection,
    path: &Path,
    append: &StreamAppend,
    current: Option<u64>,
    head_position: u64,
    recorded_at_ms: i64,
    edge: &mut RightEdge,
) -> Result<(Option<u64>, Option<u64>), StoreError> {
    let mut revision = current;
    let mut position = head_position;
    for event in &append.events {
        let next_revision = revision.map_or(0, |revision| revision + 1);
        position += 1;
        insert_event(
            connection,
            path,
            position,
            &append.stream_id,
            next_revision,
            event,
            recorded_at_ms,
            edge,
        )?;
        revision = Some(next_revision);
    }

    if revision != current {
        if let Some(revision) = revision {
            store_revision(connection, path, &append.stream_id, revision)?;
        }
    }

    let first_position = (!append.events.is_empty()).then_some(head_position + 1);
    Ok((revision, first_position))
}

/// Fails with [`StoreError::WrongExpectedRevision`] unless the stream's current revision is the
/// expected one.
fn check_expected(append: &StreamAppend, current: Option<u64>) -> Result<(), StoreError> {
    let is_expected = match append.expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => current.is_none(),
        ExpectedRevision::Exact(expected) => current == Some(expected),
    };
    if is_expected {
        return Ok(());
    }

    debug!(
        stream_id = %append.stream_id,
        expected = ?append.expected,
        actual = ?current,
        "append rejected: wrong expected revision"
    );
    Err(StoreError::WrongExpectedRevision {
        stream_id: append.stream_id.clone(),
        expected: append.expected,
        actual: current,
    })
}

/// Reads the stream's current revision, including writes made earlier in this transaction.
fn current_revision(
    connection: &Connection,
    path: &Path,
    stream_id: &str,
) -> Result<Option<u64>, StoreError> {
    let action = || format!("read the revision of stream {stream_id}");
    let revision: Option<i64> = connection
        .prepare_cached("SELECT revision FROM streams WHERE stream_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([stream_id], |row| row.get(0))
                .optional()
        })
        .map_err(|err| backend_error(path, action(), err))?;

    revision
        .map(|revision| {
            u64::try_from(revision).map_err(|_| {
                backend_error(
                    path,
                    action(),
                    format!("stored revision {revision} is negative"),
                )
            })
        })
        .transpose()
}

/// Inserts one event row and its Merkle leaf, with the parents the leaf completes.
#[allow(clippy::too_many_arguments)] // Each argument is one column or one piece of writer state.
fn insert_event(
    connection: &Connection,
    path: &Path,
    position: u64,
    stream_id: &str,
    revision: u64,
    event: &NewEvent,
    recorded_at_ms: i64,
    edge: &mut RightEdge,
) -> Result<(), StoreError> {
    let action = || format!("append event {revision} to stream {stream_id}");
    let leaf = merkle::encode_leaf(&LeafFields {
        position,
        stream_id,
        revision,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload: &event.payload,
        metadata: &event.metadata,
        recorded_at_ms,
    });
    let leaf_index = position - 1;
    let position = to_signed(position, path, "position", &action)?;
    let revision = to_signed(revision, path, "revision", &action)?;
    let metadata =
        serde_json::to_string(&event.metadata).map_err(|err| backend_error(path, action(), err))?;

    connection
        .prepare_cached(
            "INSERT INTO events (position, stream_id, revision, event_type, schema_version, \
             payload, metadata, recorded_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut statement| {
            statement.execute((
                position,
                stream_id,
                revision,
                &event.event_type,
                event.schema_version,
                &event.payload,
                &metadata,
                recorded_at_ms,
            ))
        })
        .map_err(|err| backend_error(path, action(), err))?;

    tree::append_leaf(connection, path, leaf_index, leaf_hash(&leaf), edge)
}

/// Stores the stream's new current revision.
fn store_revision(
    connection: &Connection,
    path: &Path,
    stream_id: &str,
    revision: u64,
) -> Result<(), StoreError> {
    let action = || format!("update the revision of stream {stream_id}");
    let revision = to_signed(revision, path, "revision", &action)?;

    connection
        .prepare_cached(
            "INSERT INTO streams (stream_id, revision) VALUES (?1, ?2) \
             ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision",
        )
        .and_then(|mut statement| statement.execute((stream_id, revision)))
        .map_err(|err| backend_error(path, action(), err))?;

    Ok(())
}

/// Reads the position and commit time of the last event.
fn read_tail(connection: &Connection, path: &Path) -> Result<Tail, StoreError> {
    let last: Option<(i64, i64)> = connection
        .prepare_cached("SELECT position, recorded_at_ms FROM events ORDER BY position DESC LIMIT 1")
        .and_then(|mut statement| {
            statement
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|err| backend_error(path, "read the last event", err))?;

    let Some((position, recorded_at_ms)) = last else {
        return Ok(Tail {
            position: 0,
            recorded_at_ms: 0,
        });
    };

    let position = u64::try_from(position).map_err(|_| {
        backend_error(
            path,
            "read the last event",
            format!("stored position {position} is negative"),
        )
    })?;
    Ok(Tail {
        position,
        recorded_at_ms,
    })
}

/// Converts a position or revision to SQLite's signed integer. Only a log of more than
/// `i64::MAX` events could fail here.
fn to_signed(
    value: u64,
    path: &Path,
    column: &str,
    action: &dyn Fn() -> String,
) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        backend_error(
            path,
            action(),
            format!("{column} {value} exceeds SQLite's integer range"),
        )
    })
}

/// Returns the current time in milliseconds since the Unix epoch, or 0 for a clock set before
/// 1970. The writer never records a time earlier than the last event's, so the log's times do
/// not go backwards when the clock is stepped back.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{connection, reader};
    use crate::Metadata;

    fn event(event_type: &str) -> NewEvent {
        NewEvent {
            event_type: event_type.to_owned(),
            schema_version: 1,
            payload: vec![1, 2, 3],
            metadata: Metadata::default(),
        }
    }

    fn append(stream_id: &str, expected: ExpectedRevision, events: usize) -> StreamAppend {
        StreamAppend {
            stream_id: stream_id.to_owned(),
            expected,
            events: (0..events).map(|_| event("Tested")).collect(),
        }
    }

    #[test]
    fn group_commit_isolates_failed_requests() {
        let folder = tempfile::tempdir().expect("create temp dir");
        let path = folder.path().join("events.db");
        let (db, head_position) = connection::open_writer(&path).expect("open writer");
        assert_eq!(head_position, 0);

        let (head, head_receiver) = watch::channel(0);
        let commits = Arc::new(AtomicU64::new(0));
        let mut writer = Writer::new(db, path.clone(), Arc::new(head), commits.clone());

        let requests = vec![
            vec![append("a", ExpectedRevision::NoStream, 1)],
            // Fails because the first request of the same group created stream a.
            vec![append("a", ExpectedRevision::NoStream, 1)],
            vec![append("b", ExpectedRevision::NoStream, 1)],
            // Writes to c, then fails on a, so its write to c must be rolled back.
            vec![
                append("c", ExpectedRevision::NoStream, 2),
                append("a", ExpectedRevision::Exact(5), 1),
            ],
            vec![append("a", ExpectedRevision::Exact(0), 1)],
        ];
        let mut replies = Vec::new();
        let mut group = Vec::new();
        for appends in requests {
            let (reply, receiver) = oneshot::channel();
            group.push(AppendRequest { appends, reply });
            replies.push(receiver);
        }

        writer.commit_group(group);

        let outcomes: Vec<_> = replies
            .into_iter()
            .map(|mut receiver| receiver.try_recv().expect("reply sent"))
            .collect();
        let first = outcomes[0].as_ref().expect("first request commits");
        assert_eq!(first.first_position, Some(1));
        assert!(matches!(
            &outcomes[1],
            Err(StoreError::WrongExpectedRevision {
                actual: Some(0),
                ..
            })
        ));
        let third = outcomes[2].as_ref().expect("third request commits");
        assert_eq!(third.first_position, Some(2));
        assert!(matches!(
            &outcomes[3],
            Err(StoreError::WrongExpectedRevision {
                actual: Some(0),
                ..
            })
        ));
        let fifth = outcomes[4].as_ref().expect("fifth request commits");
        assert_eq!(fifth.first_position, Some(3));
        assert_eq!(fifth.revisions, vec![("a".to_owned(), Some(1))]);

        assert_eq!(commits.load(Ordering::Relaxed), 1);
        assert_eq!(*head_receiver.borrow(), 3);

        let stored = reader::read_all(&writer.connection, &path, 0, 10).expect("read back");
        let streams: Vec<&str> = stored.iter().map(|e| e.stream_id.as_str()).collect();
        assert_eq!(streams, vec!["a", "b", "a"]);
        let positions: Vec<u64> = stored.iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![1, 2, 3]);
        let revision_of_c = current_revision(&writer.connection, &path, "c").expect("read c");
        assert_eq!(revision_of_c, None);
    }

    fn request(appends: Vec<StreamAppend>) -> (AppendRequest, oneshot::Receiver<Result<AppendOutcome, StoreError>>) {
        let (reply, receiver) = oneshot::channel();
        (AppendRequest { appends, reply }, receiver)
    }

    #[test]
    fn failed_write_retries_with_savepoints() {
        let folder = tempfile::tempdir().expect("create temp dir");
        let path = folder.path().join("events.db");
        let (db, _) = connection::open_writer(&path).expect("open writer");
        let (head, head_receiver) = watch::channel(0);
        let commits = Arc::new(AtomicU64::new(0));
        let mut writer = Writer::new(db, path.clone(), Arc::new(head), commits.clone());

        let (first, first_reply) = request(vec![append("x", ExpectedRevision::NoStream, 1)]);
        writer.commit_group(vec![first]);
        assert!(matches!(first_reply.blocking_recv(), Ok(Ok(_))));

        // Without its `streams` row, stream x passes the revision check, and then its event
        // insert fails on the unique (stream_id, revision) index of `events`.
        writer
            .connection
            .execute("DELETE FROM streams WHERE stream_id = 'x'", [])
            .expect("delete the streams row");

        let (before, before_reply) = request(vec![append("y", ExpectedRevision::NoStream, 2)]);
        let (broken, broken_reply) = request(vec![
            append("z", ExpectedRevision::NoStream, 1),
            append("x", ExpectedRevision::NoStream, 1),
        ]);
        let (after, after_reply) = request(vec![append("w", ExpectedRevision::NoStream, 1)]);
        writer.commit_group(vec![before, broken, after]);

        let before = before_reply.blocking_recv().expect("reply sent").expect("y commits");
        assert_eq!(before.first_position, Some(2));
        assert_eq!(before.last_position, Some(3));
        let broken = broken_reply.blocking_recv().expect("reply sent");
        assert!(matches!(broken, Err(StoreError::Backend(_))), "{broken:?}");
        let after = after_reply.blocking_recv().expect("reply sent").expect("w commits");
        assert_eq!(after.first_position, Some(4));

        assert_eq!(commits.load(Ordering::Relaxed), 2);
        assert_eq!(*head_receiver.borrow(), 4);
        let stored = reader::read_all(&writer.connection, &path, 0, 10).expect("read back");
        let streams: Vec<&str> = stored.iter().map(|e| e.stream_id.as_str()).collect();
        assert_eq!(streams, vec!["x", "y", "y", "w"]);
        let revision_of_z = current_revision(&writer.connection, &path, "z").expect("read z");
        assert_eq!(revision_of_z, None);
        assert_eq!(tree::leaf_count(&writer.connection, &path).expect("leaf count"), 4);
        let stored_root = merkle::root_at(&mut tree::NodeTable::new(&writer.connection, &path), 4)
            .expect("root from stored nodes");
        let expected_root = merkle::root_from_events(&stored).expect("root from events");
        assert_eq!(stored_root, expected_root);
    }

    #[test]
    fn same_stream_twice_in_request() {
        let folder = tempfile::tempdir().expect("create temp dir");
        let path = folder.path().join("events.db");
        let (db, _) = connection::open_writer(&path).expect("open writer");
        let (head, _) = watch::channel(0);
        let mut writer = Writer::new(db, path.clone(), Arc::new(head), Arc::new(AtomicU64::new(0)));

        let (valid, valid_reply) = request(vec![
            append("s", ExpectedRevision::NoStream, 2),
            append("s", ExpectedRevision::Exact(1), 1),
        ]);
        // The second append expects the revision before the first append of the same request.
        let (stale, stale_reply) = request(vec![
            append("t", ExpectedRevision::NoStream, 1),
            append("t", ExpectedRevision::NoStream, 1),
        ]);
        writer.commit_group(vec![valid, stale]);

        let valid = valid_reply.blocking_recv().expect("reply sent").expect("s commits");
        assert_eq!(valid.last_position, Some(3));
        assert_eq!(
            valid.revisions,
            vec![("s".to_owned(), Some(1)), ("s".to_owned(), Some(2))]
        );
        let stale = stale_reply.blocking_recv().expect("reply sent");
        assert!(
            matches!(&stale, Err(StoreError::WrongExpectedRevision { actual: Some(0), .. })),
            "{stale:?}"
        );
        let revision_of_t = current_revision(&writer.connection, &path, "t").expect("read t");
        assert_eq!(revision_of_t, None);
    }

    #[test]
    fn group_takes_every_queued_request() {
        let (sender, mut receiver) = mpsc::channel(16);
        let mut replies = Vec::new();
        for _ in 0..5 {
            let (queued, reply) = request(vec![append("a", ExpectedRevision::Any, 1)]);
            sender.try_send(queued).map_err(|_| "queue full").expect("queue a request");
            replies.push(reply);
        }
        let first = receiver.try_recv().expect("first request");

        let group = collect_group(&mut receiver, first, 2);

        assert_eq!(group.len(), 5);
    }

    #[test]
    fn group_lingers_for_previous_size() {
        let (sender, mut receiver) = mpsc::channel(16);
        let (first, _first_reply) = request(vec![append("a", ExpectedRevision::Any, 1)]);
        let (second, _second_reply) = request(vec![append("b", ExpectedRevision::Any, 1)]);
        sender.try_send(second).map_err(|_| "queue full").expect("queue a request");

        let started = Instant::now();
        let group = collect_group(&mut receiver, first, 4);

        assert_eq!(group.len(), 2);
        assert!(started.elapsed() >= GROUP_LINGER, "{:?}", started.elapsed());
    }

    #[test]
    fn lone_writer_does_not_linger() {
        let (_sender, mut receiver) = mpsc::channel(16);
        let (first, _first_reply) = request(vec![append("a", ExpectedRevision::Any, 1)]);

        let group = collect_group(&mut receiver, first, 1);

        assert_eq!(group.len(), 1);
    }
}
