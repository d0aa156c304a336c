//! vaxledger service: the application layer over the event log, the HTTP API, the command line
//! and the workload simulator. This is the only crate that uses HTTP.

pub mod audit;
pub mod bench;
pub mod certificates;
pub mod cli;
pub mod commands;
pub mod corrections;
pub mod fraud_commands;
pub mod http;
pub mod ledger;
pub mod notify;
pub mod server;
pub mod service_db;
pub mod simulate;
pub mod slip_codes;
pub mod tokens;
