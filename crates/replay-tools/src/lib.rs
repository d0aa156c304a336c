//! Offline tools that work on a copy of a data folder or on files, never on a running server.
//!
//! [`cert`] holds `vaxledger cert verify`; the root binary mounts [`CertCommand`] as the `cert`
//! subcommand and turns [`CertOutcome`] into its exit status.

pub mod cert;

pub use cert::{run_cert, run_cert_to, CertCommand, CertOutcome, VerifyArgs};
