//! vaxledger domain model: identifiers, the security code, events, and the aggregates whose
//! command handlers decide which events a command produces.
//!
//! This crate does no I/O. Callers pass in the current time, the random source and the server
//! secret, and persist the events it returns. Each aggregate keeps `handle` (command to events,
//! may reject) apart from `apply` (event to state, never fails).

pub mod appointment;
pub mod beneficiary;
pub mod centre;
pub mod code;
pub mod dispute;
pub mod events;
pub mod ids;
pub mod mobile;
pub mod rejection;
pub mod session;
pub mod vaccine;

pub use events::Event;
pub use rejection::Rejection;

/// Outcome of a command whose rejection is itself evidence and must be stored.
///
/// Code verification and dose recording append events even when they reject: the rejection
/// events are what investigators query.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The command succeeded; append these events.
    Accepted(Vec<Event>),
    /// The command failed; append `events` (the rejection record), then report `rejection`.
    Rejected {
        /// Rejection events to append.
        events: Vec<Event>,
        /// Reason returned to the caller.
        rejection: Rejection,
    },
}

impl Decision {
    /// Returns the events to append, whatever the outcome.
    pub fn events(&self) -> &[Event] {
        match self {
            Decision::Accepted(events) => events,
            Decision::Rejected { events, .. } => events,
        }
    }
}
