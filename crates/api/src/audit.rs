//! The audit log service: the audit key and the signed checkpoints of the event log's Merkle
//! tree.
//!
//! The audit key is an Ed25519 key of its own, separate from the certificate issuer keys. The
//! first start writes it to `<data-dir>/keys/audit.key` (mode 0600, the C2SP signer key string
//! `PRIVATE+KEY+<name>+<hash>+<base64>`) and its verifier key to `<data-dir>/keys/audit.pub`
//! (`<name>+<hash>+<base64>`). The key name is the log's origin, `vaxledger/<ledger id>`, which
//! the event store creates with the log.
//!
//! A checkpoint is signed at start and at shutdown when the tree grew since the last one, on an
//! interval (default 60 s) when it grew, and on demand. Every checkpoint is stored in the event
//! store, which checks its root against the tree before keeping it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use store::checkpoint::{Checkpoint, NoteSigner, VerifierKey};
use store::{EventStore, StoreError, StoredCheckpoint};
use tokio::sync::{watch, Mutex};
use tracing::{debug, error, info};

use crate::server::write_secret_file;

/// Interval between checkpoint signings when the tree grew, unless `--checkpoint-interval` sets
/// another.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// File name of the audit signer key inside the keys folder.
const AUDIT_KEY_FILE: &str = "audit.key";

/// File name of the audit verifier key inside the keys folder.
const AUDIT_PUBLIC_KEY_FILE: &str = "audit.pub";

/// Settings of the checkpoint signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Time between checks for tree growth. Zero turns periodic signing off and leaves signing
    /// at start, at shutdown and on demand.
    pub checkpoint_interval: Duration,
}

impl Default for AuditOptions {
    fn default() -> AuditOptions {
        AuditOptions {
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// Parses a checkpoint interval: whole seconds, optionally with the unit `s`, `m` or `h`
/// (`90`, `90s`, `5m`, `1h`). `0` turns periodic signing off.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, seconds_per_unit) = match text.char_indices().last() {
        Some((index, 's')) => (&text[..index], 1),
        Some((index, 'm')) => (&text[..index], 60),
        Some((index, 'h')) => (&text[..index], 3600),
        _ => (text, 1),
    };
    let invalid = || format!("invalid checkpoint interval {text:?}: use whole seconds such as 60, or 60s, 5m, 1h; 0 turns periodic signing off");

    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    let count: u64 = digits.parse().map_err(|_| invalid())?;
    count
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

/// Signs and stores checkpoints of one event store with the audit key.
pub struct AuditLog {
    /// Event store whose tree is signed and where checkpoints are kept.
    store: Arc<dyn EventStore>,
    /// Audit key; its name is the log's origin.
    signer: NoteSigner,
    /// Serializes signings, so that concurrent requests store checkpoints in tree order.
    signing: Mutex<()>,
}

impl AuditLog {
    /// Loads the audit key from `keys_dir`, creating it and its verifier key file on first
    /// start, and checks that it belongs to this store's log.
    pub async fn open(store: Arc<dyn EventStore>, keys_dir: &Path) -> anyhow::Result<AuditLog> {
        let origin = store.log_origin().await.context("reading the event log's origin")?;
        let signer = load_or_create_audit_key(keys_dir, &origin)?;
        Ok(AuditLog {
            store,
            signer,
            signing: Mutex::new(()),
        })
    }

    /// Returns the verifier key that checks this log's checkpoints.
    pub fn verifier_key(&self) -> VerifierKey {
        self.signer.verifier_key()
    }

    /// Signs any text as a C2SP signed note with the audit key; the text must end with a newline
    /// and contain no blank line.
    pub fn sign_text(&self, text: &str) -> Result<String, store::checkpoint::NoteError> {
        self.signer.sign_note(text)
    }

    /// Returns the log's origin, the first line of every checkpoint.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// Signs a checkpoint of the whole tree as it is now, stores it and returns it.
    pub async fn sign_checkpoint(&self) -> Result<StoredCheckpoint, StoreError> {
        let _signing = self.signing.lock().await;

        let tree_size = self.store.tree_size().await?;
        let root = self.store.root_at(tree_size).await?;
        let note = Checkpoint::new(self.origin(), tree_size, root)
            .sign(&self.signer)
            .map_err(|err| StoreError::InvalidCheckpoint(err.to_string()))?;
        let stored = self.store.append_checkpoint(note).await?;

        info!(checkpoint_id = stored.id, tree_size, "signed checkpoint");
        Ok(stored)
    }

    /// Signs a checkpoint when the tree grew since the latest stored one, or when none is
    /// stored. Returns `None` when nothing was signed.
    pub async fn sign_if_grown(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let tree_size = self.store.tree_size().await?;
        let latest = self.store.latest_checkpoint().await?;
        if latest.is_some_and(|checkpoint| checkpoint.tree_size >= tree_size) {
            debug!(tree_size, "tree did not grow since the latest checkpoint");
            return Ok(None);
        }
        self.sign_checkpoint().await.map(Some)
    }

    /// Returns the latest stored checkpoint, `None` before the first one.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.store.latest_checkpoint().await
    }

    /// Signs when the tree grew: once now, then every `interval` until `shutdown` turns true.
    /// A zero interval signs once now and then only waits for shutdown.
    pub async fn run(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        info!(interval_seconds = interval.as_secs_f64(), "checkpoint signer started");

        loop {
            if let Err(err) = self.sign_if_grown().await {
                error!(cause = %err, "signing a checkpoint failed; retrying at the next interval");
            }

            if interval.is_zero() {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
        }

        info!("checkpoint signer stopped");
    }
}

/// Loads `audit.key` from `keys_dir`, or creates it with a new key named `origin`, and writes
/// `audit.pub` when it is missing. Fails when the key belongs to another log or `audit.pub`
/// contains another key.
fn load_or_create_audit_key(keys_dir: &Path, origin: &str) -> anyhow::Result<NoteSigner> {
    let key_path = keys_dir.join(AUDIT_KEY_FILE);
    let public_path = keys_dir.join(AUDIT_PUBLIC_KEY_FILE);

    let signer = if key_path.exists() {
        read_audit_key(&key_path)?
    } else {
        std::fs::create_dir_all(keys_dir)
            .with_context(|| format!("creating {}", keys_dir.display()))?;
        let signer = NoteSigner::generate(origin)
            .with_context(|| format!("creating an audit key named {origin}"))?;
        write_secret_file(&key_path, format!("{}\n", signer.to_signer_key_string()).as_bytes())?;
        info!(path = %key_path.display(), key = %signer.verifier_key(), "audit key created");
        signer
    };

    if signer.name() != origin {
        bail!(
            "{} is the audit key of log {}, but this event store is log {origin}; \
             restore this log's audit key, or move the file away to create a new one",
            key_path.display(),
            signer.name()
        );
    }

    write_or_check_public_key(&public_path, &signer.verifier_key())?;
    Ok(signer)
}

/// Reads and parses the audit signer key file. Errors name the file, never the key.
fn read_audit_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteSigner::parse(&text).map_err(|err| {
        anyhow::anyhow!("{} is not a usable audit key ({err}); restore it from backup", path.display())
    })
}

/// Writes the verifier key file when missing, or checks that it holds this key.
fn write_or_check_public_key(path: &Path, verifier_key: &VerifierKey) -> anyhow::Result<()> {
    let expected = verifier_key.to_string();

    if !path.exists() {
        std::fs::write(path, format!("{expected}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        info!(path = %path.display(), key = %expected, "audit verifier key written");
        return Ok(());
    }

    let stored = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if stored.trim() != expected {
        bail!(
            "{} does not hold the verifier key of the audit key ({expected}); \
             delete it to have it written again from audit.key",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use store::checkpoint::verify_checkpoint;
    use store::{ExpectedRevision, Metadata, NewEvent, SqliteStore, StreamAppend};

    use super::*;

    async fn open_store(folder: &Path) -> Arc<dyn EventStore> {
        SqliteStore::open(&folder.join("events.db")).await.expect("open store")
    }

    async fn append_one(store: &dyn EventStore) {
        let event = NewEvent {
            event_type: "Tested".to_owned(),
            schema_version: 1,
            payload: vec![1],
            metadata: Metadata::default(),
        };
        let append = StreamAppend {
            stream_id: "audit-test".to_owned(),
            expected: ExpectedRevision::Any,
            events: vec![event],
        };
        store.append(vec![append]).await.expect("append");
    }

    #[test]
    fn interval_units() {
        assert_eq!(parse_interval("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "-1", "1.5", "10d", "1 m", "99999999999999999999h"] {
            assert!(parse_interval(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[tokio::test]
    async fn key_files_created_once() {
        let folder = tempfile::tempdir().expect("temp dir");
        let keys = folder.path().join("keys");
        let store = open_store(folder.path()).await;

        let audit = AuditLog::open(store.clone(), &keys).await.expect("open audit log");
        let key_mode = std::fs::metadata(keys.join(AUDIT_KEY_FILE)).expect("key file").permissions().mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let published = std::fs::read_to_string(keys.join(AUDIT_PUBLIC_KEY_FILE)).expect("pub file");
        assert_eq!(published.trim(), audit.verifier_key().to_string());
        assert_eq!(audit.origin(), store.log_origin().await.expect("origin"));

        let again = AuditLog::open(store, &keys).await.expect("open again");
        assert_eq!(again.verifier_key(), audit.verifier_key());
    }

    #[tokio::test]
    async fn key_of_other_log_rejected() {
        let folder = tempfile::tempdir().expect("temp dir");
        let other = tempfile::tempdir().expect("other temp dir");
        let keys = folder.path().join("keys");
        AuditLog::open(open_store(other.path()).await, &keys).await.expect("first log");

        let result = AuditLog::open(open_store(folder.path()).await, &keys).await;
        let Err(err) = result else { panic!("a key of another log was accepted") };
        assert!(err.to_string().contains("audit key of log"), "{err}");
    }

    #[tokio::test]
    async fn changed_public_key_rejected() {
        let folder = tempfile::tempdir().expect("temp dir");
        let keys = folder.path().join("keys");
        let store = open_store(folder.path()).await;
        AuditLog::open(store.clone(), &keys).await.expect("first open");

        let stranger = NoteSigner::generate("vaxledger/stranger").expect("stranger key");
        std::fs::write(keys.join(AUDIT_PUBLIC_KEY_FILE), stranger.verifier_key().to_string()).expect("overwrite pub");
        assert!(AuditLog::open(store, &keys).await.is_err());
    }

    #[tokio::test]
    async fn signs_only_when_grown() {
        let folder = tempfile::tempdir().expect("temp dir");
        let store = open_store(folder.path()).await;
        let audit = AuditLog::open(store.clone(), &folder.path().join("keys")).await.expect("open");

        let first = audit.sign_if_grown().await.expect("sign").expect("no checkpoint yet");
        assert_eq!(first.tree_size, 0);
        assert_eq!(audit.sign_if_grown().await.expect("check"), None);

        append_one(store.as_ref()).await;
        let second = audit.sign_if_grown().await.expect("sign").expect("tree grew");
        assert_eq!(second.tree_size, 1);
        let body = verify_checkpoint(&second.note, &audit.verifier_key()).expect("verify");
        assert_eq!(body.root_hash, store.root_at(1).await.expect("root"));

        let forced = audit.sign_checkpoint().await.expect("sign on demand");
        assert_eq!(forced.tree_size, 1);
        assert!(forced.id > second.id);
    }

    #[tokio::test]
    async fn run_signs_growth_until_shutdown() {
        let folder = tempfile::tempdir().expect("temp dir");
        let store = open_store(folder.path()).await;
        let audit = Arc::new(AuditLog::open(store.clone(), &folder.path().join("keys")).await.expect("open"));
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let runner = tokio::spawn(audit.clone().run(Duration::from_millis(20), shutdown_receiver));

        append_one(store.as_ref()).await;
        let mut signed_size = 0;
        for _ in 0..250 {
            signed_size = audit.latest_checkpoint().await.expect("latest").map_or(0, |c| c.tree_size);
            if signed_size == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(signed_size, 1, "no checkpoint of the grown tree within 5 s");

        shutdown.send(true).expect("signal shutdown");
        tokio::time::timeout(Duration::from_secs(5), runner)
            .await
            .expect("signer stops on shutdown")
            .expect("signer task");
    }
}
