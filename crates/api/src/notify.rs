//! Notification dispatcher: drains the outbox table to the SMS sink, at least once.
//!
//! The sink here is a JSON-lines file (`outbox.jsonl` in the data folder), one message per line,
//! which is what a phone receives in the simulator. A message is marked delivered only after
//! its line is written and synced, so a crash repeats a message but never loses one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::service_db::{OutboxMessage, ServiceDb};

/// Messages written per batch.
const BATCH: usize = 200;
/// Pause between polls of an empty outbox.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Maximum pause after repeated sink failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Appends messages to a JSON-lines file and syncs it.
fn write_lines(path: &PathBuf, messages: &[OutboxMessage]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true).mode(0o600);
    let mut file = options.open(path)?;
    let mut buffer = Vec::with_capacity(messages.len() * 200);
    for message in messages {
        serde_json::to_writer(&mut buffer, message)?;
        buffer.push(b'\n');
    }
    file.write_all(&buffer)?;
    file.sync_data()
}

/// Runs until `shutdown` turns true, then drains what is pending once more.
pub async fn run_dispatcher(service: Arc<ServiceDb>, outbox_path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    info!(path = %outbox_path.display(), "notification dispatcher started");
    let mut backoff = IDLE_POLL;
    loop {
        let stopping = *shutdown.borrow();
        let pending = match service.pending_messages(BATCH) {
            Ok(pending) => pending,
            Err(err) => {
                error!(cause = %err, "reading the outbox failed");
                Vec::new()
            }
        };
        if !pending.is_empty() {
            let ids: Vec<i64> = pending.iter().map(|message| message.id).collect();
            let path = outbox_path.clone();
            let written = tokio::task::spawn_blocking(move || write_lines(&path, &pending)).await;
            match written {
                Ok(Ok(())) => {
                    if let Err(err) = service.mark_delivered(&ids, Utc::now()).await {
                        error!(cause = %err, count = ids.len(), "marking messages delivered failed; they will be sent again");
                    }
                    backoff = IDLE_POLL;
                    continue;
                }
                Ok(Err(err)) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    warn!(cause = %err, count = ids.len(), retry_in_ms = backoff.as_millis() as u64, "writing the outbox file failed; retrying");
                    if let Err(err) = service.mark_failed(&ids).await {
                        error!(cause = %err, "counting failed deliveries failed");
                    }
                }
                Err(err) => error!(cause = %err, "outbox writer task failed"),
            }
        }
        if stopping {
            info!("notification dispatcher stopped");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
    }
}
