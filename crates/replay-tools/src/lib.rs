//! Offline tools that work on a copy of a data folder or on files, never on a running server.
//!
//! [`cert`] implements `vaxledger cert verify`, and [`audit`] implements `vaxledger audit verify`,
//! `replay`, `rebuild`, `timeline` and `export`. The root binary mounts [`CertCommand`] and
//! [`AuditCommand`] as subcommands and turns [`CertOutcome`] and [`AuditOutcome`] into its exit
//! status.

pub mod audit;
pub mod cert;

pub use audit::{run_audit, run_audit_to, AuditCommand, AuditOutcome};
pub use cert::{run_cert, run_cert_to, CertCommand, CertOutcome, VerifyArgs};
