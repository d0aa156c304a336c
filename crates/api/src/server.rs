//! Service start-up: the data folder (created on first start with keys and an admin token),
//! the store, projector and dispatcher tasks, and the HTTP server with graceful shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use domain::code::ServerKey;
use domain::vaccine::VaccineCatalogue;
use poem::listener::{Acceptor, Listener, TcpListener};
use projections::Projections;
use rand::RngCore;
use signer::keys::KeyRing;
use signer::vault::CertificateVault;
use store::{EventStore, SqliteStore};
use tokio::sync::watch;
use tracing::{error, info};

use crate::audit::{AuditLog, AuditOptions};
use crate::http::state::Metrics;
use crate::http::AppState;
use crate::ledger::Ledger;
use crate::service_db::{Role, ServiceDb};

/// Files of a data folder.
#[derive(Debug, Clone)]
pub struct DataDir {
    /// Folder root.
    pub root: PathBuf,
}

impl DataDir {
    /// Wraps a folder path.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// Event log.
    pub fn events(&self) -> PathBuf {
        self.root.join("events.db")
    }
    /// Status projections.
    pub fn projections(&self) -> PathBuf {
        self.root.join("projections.db")
    }
    /// Fraud projections: attempts, daily counters, alerts, disputes.
    pub fn fraud(&self) -> PathBuf {
        self.root.join("fraud.db")
    }
    /// Tokens, OTPs, contacts, outbox.
    pub fn service(&self) -> PathBuf {
        self.root.join("service.db")
    }
    /// Signed certificate bytes.
    pub fn certificates(&self) -> PathBuf {
        self.root.join("certificates.db")
    }
    /// Issuer keys and the server secret.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// HMAC key for security codes and mobile numbers.
    pub fn server_secret(&self) -> PathBuf {
        self.keys().join("server-secret.key")
    }
    /// First admin token.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }
    /// SMS sink file.
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox.jsonl")
    }
}

/// Writes a new file with mode 0600; fails if it exists.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// Loads the server secret, creating it on first start.
pub fn load_server_key(data: &DataDir) -> anyhow::Result<ServerKey> {
    let path = data.server_secret();
    if !path.exists() {
        std::fs::create_dir_all(data.keys()).with_context(|| format!("creating {}", data.keys().display()))?;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        write_secret_file(&path, &secret)?;
        info!(path = %path.display(), "server secret created");
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let secret: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes; restore it from backup", path.display()))?;
    Ok(ServerKey::from_bytes(secret))
}

/// Resolves the event store file from `--store` or `VAXLEDGER_STORE`.
pub fn open_store_url(url: Option<&str>, data: &DataDir) -> anyhow::Result<PathBuf> {
    match url {
        None => Ok(data.events()),
        Some(url) if url.starts_with("sqlite:") => Ok(PathBuf::from(&url["sqlite:".len()..])),
        Some(url) if url.starts_with("kurrentdb://") || url.starts_with("esdb://") => {
            bail!("the KurrentDB backend is not built yet; use --store sqlite:PATH or leave --store unset")
        }
        Some(other) => bail!("unknown store {other:?}; use sqlite:PATH"),
    }
}

/// Options of `vaxledger serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Data folder.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: String,
    /// Store URL, `sqlite:PATH`; `None` for `events.db` in the data folder.
    pub store: Option<String>,
}

/// A started service.
pub struct Running {
    /// Address the server listens on.
    pub addr: SocketAddr,
    /// Set to true to stop the server.
    pub shutdown: watch::Sender<bool>,
    /// Finishes when the server and its tasks have stopped.
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds a missing `projections.db` or `fraud.db` from the whole log before the service starts.
///
/// The rebuild writes a fresh file without journal or fsync, applies pages of 10,000 events with
/// each touched row written once, creates the indexes at the end and renames the file into
/// place. That is several times faster than letting the live projector catch up page by page. A
/// crash before the rename leaves only the `.rebuild` file, which the next start replaces.
async fn rebuild_missing_projections(
    store: &Arc<dyn EventStore>,
    data: &DataDir,
    fraud_config: &projections::fraud::FraudConfig,
) -> anyhow::Result<()> {
    let status_missing = !data.projections().exists();
    let fraud_missing = !data.fraud().exists();
    let head = store.head_position().await?;
    if head == 0 || !(status_missing || fraud_missing) {
        return Ok(());
    }

    info!(head, status_missing, fraud_missing, "rebuilding missing projection files from the log");
    let started = std::time::Instant::now();
    let mut status = if status_missing { Some(Projections::rebuild(&data.projections())?) } else { None };
    let mut fraud =
        if fraud_missing { Some(projections::fraud::FraudProjections::rebuild(&data.fraud(), fraud_config.clone())?) } else { None };

    let mut after = 0u64;
    loop {
        let page = store.read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;

        // SQLite work runs off the async workers; the rebuilds move into the task and back.
        let (status_back, fraud_back) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let page = projections::DecodedPage::decode(page)?;
            if let Some(status) = &status {
                status.apply_decoded(&page)?;
            }
            if let Some(fraud) = &fraud {
                fraud.apply_decoded(&page)?;
            }
            Ok((status, fraud))
        })
        .await??;
        status = status_back;
        fraud = fraud_back;
    }

    if let Some(status) = status {
        status.finish()?;
    }
    if let Some(fraud) = fraud {
        fraud.finish()?;
    }
    info!(head, seconds = started.elapsed().as_secs_f64(), "projection files rebuilt");
    Ok(())
}

/// Opens the data folder (creating it on first start) and builds the shared state.
pub async fn open_state(options: &ServeOptions) -> anyhow::Result<Arc<AppState>> {
    let data = DataDir::new(&options.data_dir);
    let first_start = !data.root.join("service.db").exists();
    std::fs::create_dir_all(&data.root).with_context(|| format!("creating data folder {}", data.root.display()))?;
    // The folder contains the SMS outbox (OTPs, security codes) and personal data, so only the
    // service's user may read it. The mode is set on every start in case it was created wider.
    std::fs::set_permissions(&data.root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("restricting data folder {} to mode 0700", data.root.display()))?;
    let store_path = open_store_url(options.store.as_deref(), &data)?;
    let store: Arc<dyn EventStore> = SqliteStore::open(&store_path).await.with_context(|| format!("opening event store {}", store_path.display()))?;
    let fraud_config = projections::fraud::FraudConfig::from_env().context("reading the VAXLEDGER_ALERT_* thresholds")?;
    rebuild_missing_projections(&store, &data, &fraud_config).await?;
    let projections = Projections::open(&data.projections()).context("opening projections")?;
    let fraud = projections::fraud::FraudProjections::open(&data.fraud(), fraud_config).context("opening fraud projections")?;
    let service = Arc::new(ServiceDb::open(&data.service()).context("opening service database")?);
    let server_key = load_server_key(&data)?;
    let keys = KeyRing::open_or_create(data.keys()).context("opening issuer keys")?;
    let vault = CertificateVault::open(data.certificates()).context("opening certificate vault")?;
    let audit = Arc::new(AuditLog::open(Arc::clone(&store), &data.keys()).await.context("opening the audit key")?);

    if !data.admin_token().exists() {
        let (token, info) = service.create_token(Role::Admin, None, None, Utc::now(), None)?;
        write_secret_file(&data.admin_token(), format!("{token}\n").as_bytes())?;
        info!(path = %data.admin_token().display(), token_id = %info.token_id, "admin token written");
    }
    if first_start {
        info!(data_dir = %data.root.display(), keys = %data.keys().display(), "data folder created");
    }

    let ledger = Ledger { store, projections, server_key, catalogue: VaccineCatalogue::default(), service, aggregates: Default::default() };
    let slip_sealer = crate::slip_codes::SlipSealer::open(&data.root)?;
    Ok(Arc::new(AppState { ledger, fraud, keys, vault, data_dir: data.root.clone(), metrics: Metrics::default(), audit, slip_sealer, search_cache: Default::default() }))
}

/// Starts the service with the default audit options and returns once it listens.
pub async fn start(options: ServeOptions) -> anyhow::Result<Running> {
    start_with_audit(options, AuditOptions::default()).await
}

/// Starts the service and returns once it listens. A checkpoint is signed before listening
/// when the log grew since the last one, so `GET /api/v1/audit/checkpoint` has one from the start.
pub async fn start_with_audit(options: ServeOptions, audit: AuditOptions) -> anyhow::Result<Running> {
    let state = open_state(&options).await?;
    let data = DataDir::new(&options.data_dir);
    state.audit.sign_if_grown().await.context("signing the start-up checkpoint")?;

    let projector = tokio::spawn(Arc::clone(&state.ledger.projections).run(Arc::clone(&state.ledger.store)));
    let fraud_projector = tokio::spawn(Arc::clone(&state.fraud).run(Arc::clone(&state.ledger.store)));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(crate::notify::run_dispatcher(Arc::clone(&state.ledger.service), data.outbox(), shutdown_rx.clone()));
    let checkpointer = tokio::spawn(Arc::clone(&state.audit).run(audit.checkpoint_interval, shutdown_rx.clone()));
    let audit_log = Arc::clone(&state.audit);

    let acceptor = TcpListener::bind(options.listen.clone())
        .into_acceptor()
        .await
        .with_context(|| format!("listening on {}; pass another --listen address", options.listen))?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|addr| addr.as_socket_addr().copied())
        .context("listener has no socket address")?;
    let url = format!("http://{addr}");
    let app = crate::http::app(Arc::clone(&state), &url);
    info!(%addr, data_dir = %data.root.display(), docs = %format!("{url}/docs"), "vaxledger listening");

    let mut stop = shutdown_rx;
    let handle = tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, signal, Some(Duration::from_secs(10)))
            .await
            .context("HTTP server failed")?;
        projector.abort();
        fraud_projector.abort();
        let _ = dispatcher.await;
        let _ = checkpointer.await;
        // Requests are drained now, so this checkpoint covers every event of the run.
        if let Err(err) = audit_log.sign_if_grown().await {
            error!(cause = %err, "signing the shutdown checkpoint failed; the next start signs one");
        }
        info!("vaxledger stopped");
        Ok(())
    });
    Ok(Running { addr, shutdown, handle })
}

/// Runs the service with the default audit options until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    serve_with_audit(options, AuditOptions::default()).await
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn serve_with_audit(options: ServeOptions, audit: AuditOptions) -> anyhow::Result<()> {
    let running = start_with_audit(options, audit).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        info!("shutdown requested");
        let _ = shutdown.send(true);
    });
    running.handle.await.context("server task failed")?
}
