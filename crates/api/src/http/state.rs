//! Shared state of the HTTP service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};


use projections::fraud::FraudProjections;
use signer::keys::KeyRing;
use signer::vault::CertificateVault;

use crate::audit::AuditLog;
use crate::ledger::Ledger;

/// Everything a request handler needs.
pub struct AppState {
    /// Application service over the event log.
    pub ledger: Ledger,
    /// Fraud read models (attempts, daily counters, alerts, disputes) in `fraud.db`.
    pub fraud: Arc<FraudProjections>,
    /// Issuer keys for certificates.
    pub keys: KeyRing,
    /// Signed certificate bytes.
    pub vault: CertificateVault,
    /// Data folder, for messages.
    pub data_dir: PathBuf,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Audit key and signed checkpoints of the event log.
    pub audit: Arc<AuditLog>,
    /// Key that encrypts security codes kept for the acknowledgement slip, derived once at start.
    pub slip_sealer: crate::slip_codes::SlipSealer,
    /// Session search responses of the current projection position.
    pub search_cache: SearchCache,
}

/// Maximum number of (district, date) responses kept. The cache is emptied when it is full.
const MAX_SEARCH_CACHE_ENTRIES: usize = 4096;

/// Session search responses, each kept with the projection position it was read at and served only
/// while the projections are still at that position. Repeated searches between two projector
/// batches skip SQLite, and a response is never older than the projections.
#[derive(Default)]
pub struct SearchCache {
    /// (district in ASCII lower case, as `COLLATE NOCASE` compares it, date) to (projection
    /// position, JSON body).
    entries: Mutex<HashMap<(String, String), (u64, Arc<Vec<u8>>)>>,
}

impl SearchCache {
    /// Returns the JSON body read for this district and date at `position`, if any.
    pub fn get(&self, district: &str, date: &str, position: u64) -> Option<Arc<Vec<u8>>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (cached_at, rows) = entries.get(&(district.to_ascii_lowercase(), date.to_owned()))?;
        (*cached_at == position).then(|| Arc::clone(rows))
    }

    /// Keeps the JSON body read for this district and date at `position`.
    pub fn put(&self, district: &str, date: &str, position: u64, rows: Arc<Vec<u8>>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_SEARCH_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert((district.to_ascii_lowercase(), date.to_owned()), (position, rows));
    }
}

/// Prometheus counters.
#[derive(Default)]
pub struct Metrics {
    /// Appointments booked.
    pub bookings: AtomicU64,
    /// Codes verified.
    pub codes_verified: AtomicU64,
    /// Codes rejected.
    pub codes_rejected: AtomicU64,
    /// Doses recorded.
    pub doses: AtomicU64,
    /// Doses rejected.
    pub doses_rejected: AtomicU64,
    /// Certificates issued.
    pub certificates: AtomicU64,
}

impl Metrics {
    /// Renders the counters in the Prometheus text format.
    pub fn render(&self, projection_position: u64) -> String {
        let counters = [
            ("vaxledger_bookings_total", "Appointments booked.", &self.bookings),
            ("vaxledger_codes_verified_total", "Security codes verified.", &self.codes_verified),
            ("vaxledger_codes_rejected_total", "Security codes rejected.", &self.codes_rejected),
            ("vaxledger_doses_total", "Doses recorded.", &self.doses),
            ("vaxledger_doses_rejected_total", "Dose attempts rejected.", &self.doses_rejected),
            ("vaxledger_certificates_total", "Certificates issued.", &self.certificates),
        ];
        let mut text = String::new();
        for (name, help, counter) in counters {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", counter.load(Ordering::Relaxed)));
        }
        text.push_str(&format!(
            "# HELP vaxledger_projection_position Position of the last event applied to the projections.\n# TYPE vaxledger_projection_position gauge\nvaxledger_projection_position {projection_position}\n"
        ));
        text
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
