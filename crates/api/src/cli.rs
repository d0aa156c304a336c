//! The `vaxledger` command line: serve (default), tokens, keys, simulate, cert.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use projections::Projections;
use signer::keys::KeyRing;

use crate::server::{DataDir, ServeOptions};
use crate::service_db::{Role, ServiceDb};

/// Default data folder, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./vaxledger-data";
/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// vaxledger: vaccination-appointment ledger with security-code gated doses and signed certificates.
#[derive(Debug, Parser)]
#[command(name = "vaxledger", version, about)]
pub struct Cli {
    /// Subcommand; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Data folder option shared by subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArg {
    /// Data folder: event store, projections, keys, tokens, outbox.
    #[arg(long, env = "VAXLEDGER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default). First start creates the data folder, keys and an admin token file.
    ///
    /// Fraud alert thresholds come from the environment (defaults in brackets): VAXLEDGER_ALERT_WINDOW_MINUTES [60],
    /// VAXLEDGER_ALERT_VERIFIER_REJECTIONS [10], VAXLEDGER_ALERT_ENUMERATION_WINDOW_MINUTES [10],
    /// VAXLEDGER_ALERT_ENUMERATION_ATTEMPTS [3], VAXLEDGER_ALERT_SPREAD_APPOINTMENTS [5]. Changing one rebuilds fraud.db.
    Serve {
        #[command(flatten)]
        data: DataDirArg,
        /// Address and port to listen on.
        #[arg(long, env = "VAXLEDGER_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: String,
        /// Event store: `sqlite:PATH` (default: events.db in the data folder). KurrentDB is not built yet.
        #[arg(long, env = "VAXLEDGER_STORE")]
        store: Option<String>,
        /// Time between audit log checkpoints, each signed only when the log grew: seconds, or a number with the unit s, m or h (90s, 5m, 1h). 0 turns periodic signing off and leaves signing at start, at shutdown and on request.
        #[arg(long, env = "VAXLEDGER_CHECKPOINT_INTERVAL", default_value = "60s", value_parser = crate::audit::parse_interval)]
        checkpoint_interval: std::time::Duration,
    },
    /// Create, list or revoke staff tokens in a data folder whose server is stopped.
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// List, rotate or revoke certificate issuer keys in a data folder whose server is stopped.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Drive a running server over HTTP with a simulated vaccination day and check its responses.
    Simulate(crate::simulate::SimulateArgs),
    /// Measure throughput, latency and memory against same-run baselines (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Verify certificates offline.
    Cert {
        #[command(subcommand)]
        action: replay_tools::CertCommand,
    },
    /// Audit a copy of a data folder without trusting the server: verify, replay, rebuild,
    /// timeline, export.
    Audit {
        #[command(subcommand)]
        action: replay_tools::AuditCommand,
    },
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensAction {
    /// Create a staff token; the token is printed on the last line.
    Create {
        /// Role of the token.
        #[arg(long, value_enum)]
        role: Role,
        /// Centre id, required for verifier and supervisor tokens.
        #[arg(long = "centre")]
        centre: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List staff tokens without their secrets.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a token by its id.
    Revoke {
        /// Token id (the middle part of the token, as `tokens list` shows).
        token_id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Key subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// List issuer keys with id, validity and status.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Create a new active issuer key; the old one stays valid for verification.
    Rotate {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke an issuer key: certificates it signed then fail verification with "revoked key".
    Revoke {
        /// Key id, 16 hex characters, as `keys list` shows.
        key_id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match cli.command {
        Some(command) => command,
        None => Command::Serve {
            data: DataDirArg { data_dir: std::env::var_os("VAXLEDGER_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| DEFAULT_DATA_DIR.into()) },
            listen: std::env::var("VAXLEDGER_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into()),
            store: std::env::var("VAXLEDGER_STORE").ok(),
            checkpoint_interval: match std::env::var("VAXLEDGER_CHECKPOINT_INTERVAL") {
                Ok(text) => crate::audit::parse_interval(&text).map_err(|err| anyhow::anyhow!("VAXLEDGER_CHECKPOINT_INTERVAL: {err}"))?,
                Err(_) => crate::audit::DEFAULT_CHECKPOINT_INTERVAL,
            },
        },
    };
    match command {
        Command::Serve { data, listen, store, checkpoint_interval } => {
            let audit = crate::audit::AuditOptions { checkpoint_interval };
            crate::server::serve_with_audit(ServeOptions { data_dir: data.data_dir, listen, store }, audit).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens { action } => run_tokens(action),
        Command::Keys { action } => run_keys(action),
        Command::Simulate(args) => crate::simulate::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Cert { action } => replay_tools::run_cert(action).map(ExitCode::from),
        Command::Audit { action } => replay_tools::run_audit(action).await.map(ExitCode::from),
    }
}

fn open_service(data: &DataDirArg) -> anyhow::Result<(DataDir, ServiceDb)> {
    let dir = DataDir::new(&data.data_dir);
    if !dir.service().exists() {
        anyhow::bail!("{} is not a vaxledger data folder; start `vaxledger serve --data-dir {}` once to create it", dir.root.display(), dir.root.display());
    }
    let service = ServiceDb::open(&dir.service())?;
    Ok((dir, service))
}

fn run_tokens(action: TokensAction) -> anyhow::Result<ExitCode> {
    match action {
        TokensAction::Create { role, centre, data } => {
            let (dir, service) = open_service(&data)?;
            if role == Role::Citizen {
                anyhow::bail!("citizen tokens come from OTP login; choose verifier, supervisor, investigator, auditor or admin");
            }
            let projections = Projections::open(&dir.projections())?;
            let centre_id = crate::tokens::check_centre_scope(role, centre.as_deref(), &projections).map_err(|problem| anyhow::anyhow!(problem.detail))?;
            let (token, info) = service.create_token(role, centre_id.clone(), None, Utc::now(), None)?;
            println!("token id: {}", info.token_id);
            println!("role: {}", role.as_str());
            if let Some(centre_id) = centre_id {
                println!("centre: {centre_id}");
            }
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokensAction::List { data } => {
            let (_, service) = open_service(&data)?;
            println!("{:<18} {:<13} {:<38} {:<27} revoked", "token_id", "role", "centre", "created_at");
            for info in service.list_tokens()? {
                println!(
                    "{:<18} {:<13} {:<38} {:<27} {}",
                    info.token_id,
                    info.role.as_str(),
                    info.centre_id.as_deref().unwrap_or("-"),
                    info.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    info.revoked
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensAction::Revoke { token_id, data } => {
            let (_, service) = open_service(&data)?;
            if service.revoke_token(&token_id)? {
                println!("revoked {token_id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("token {token_id} not found; `vaxledger tokens list` shows the ids");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn run_keys(action: KeysAction) -> anyhow::Result<ExitCode> {
    let data = match &action {
        KeysAction::List { data } | KeysAction::Rotate { data } | KeysAction::Revoke { data, .. } => data,
    };
    let dir = DataDir::new(&data.data_dir);
    if !dir.keys().exists() {
        anyhow::bail!("{} has no keys folder; start `vaxledger serve --data-dir {}` once to create it", dir.root.display(), dir.root.display());
    }
    let keys = KeyRing::open_or_create(dir.keys()).context("opening issuer keys")?;
    match &action {
        KeysAction::Rotate { .. } => {
            let info = keys.rotate(Utc::now())?;
            println!("new active key: {}", serde_json::to_string(&info)?);
        }
        KeysAction::Revoke { key_id, .. } => {
            let key_id: signer::keys::KeyId = key_id
                .parse()
                .map_err(|_| anyhow::anyhow!("{key_id:?} is not a key id; `vaxledger keys list` shows the 16-hex-character ids"))?;
            let info = keys.revoke(key_id, Utc::now())?;
            println!("revoked key: {}", serde_json::to_string(&info)?);
        }
        KeysAction::List { .. } => {}
    }
    for info in keys.keys() {
        println!("{}", serde_json::to_string(&info)?);
    }
    Ok(ExitCode::SUCCESS)
}
