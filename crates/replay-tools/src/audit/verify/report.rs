//! The result of `audit verify`: one line per check, and the first bad position.

use std::io::{self, Write};
use std::path::PathBuf;

/// A failed check's first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Position of the first bad event, used to order problems across checks. It is `None` when
    /// the problem has no single position, such as a stream whose last event is missing.
    pub position: Option<u64>,
    /// Description of the problem, starting with the position when there is one.
    pub message: String,
    /// How many further problems the same check found after this one.
    pub more: u64,
}

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    /// The check passed. The text describes what was checked.
    Passed(String),
    /// The check failed.
    Failed(Problem),
    /// Something looks unusual but proves no tampering, such as a clock that stepped back.
    Warning(String),
    /// The data folder lacks what the check needs. The text names the missing part.
    NotAvailable(String),
}

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name, such as `positions` or `certificates`.
    pub name: &'static str,
    /// Outcome.
    pub status: CheckStatus,
}

impl Check {
    /// Builds a passed check.
    pub fn passed(name: &'static str, summary: impl Into<String>) -> Check {
        Check { name, status: CheckStatus::Passed(summary.into()) }
    }

    /// Builds a check that could not run on this data folder.
    pub fn not_available(name: &'static str, reason: impl Into<String>) -> Check {
        Check { name, status: CheckStatus::NotAvailable(reason.into()) }
    }

    /// Builds a check from the first problem found, if any, or passes with `summary`.
    pub fn from_problems(name: &'static str, problems: ProblemSlot, summary: impl Into<String>) -> Check {
        match problems.into_problem() {
            Some(problem) => Check { name, status: CheckStatus::Failed(problem) },
            None => Check::passed(name, summary),
        }
    }
}

/// Keeps the problem with the lowest position found by one check and counts the others.
#[derive(Debug, Default)]
pub struct ProblemSlot {
    /// Problem with the lowest position so far; one without a position ranks last.
    first: Option<Problem>,
    /// Problems found in all, `first` included.
    count: u64,
}

impl ProblemSlot {
    /// Records a problem.
    pub fn record(&mut self, position: Option<u64>, message: String) {
        self.count += 1;
        let earlier = match &self.first {
            None => true,
            Some(first) => rank(position) < rank(first.position),
        };
        if earlier {
            self.first = Some(Problem { position, message, more: 0 });
        }
    }

    /// Returns whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Returns the first problem, if any.
    pub fn first(&self) -> Option<&Problem> {
        self.first.as_ref()
    }

    /// Replaces the first problem's message, keeping its position, such as to explain a swap.
    pub fn explain_first(&mut self, message: String) {
        if let Some(first) = &mut self.first {
            first.message = message;
        }
    }

    /// Returns the first problem with the count of the others.
    pub fn into_problem(self) -> Option<Problem> {
        let count = self.count;
        self.first.map(|problem| Problem { more: count.saturating_sub(1), ..problem })
    }
}

/// Orders problems by position, with positionless problems last.
fn rank(position: Option<u64>) -> u64 {
    position.unwrap_or(u64::MAX)
}

/// Everything `audit verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Data folder verified.
    pub data_dir: PathBuf,
    /// Position of the last event read, 0 for an empty log.
    pub head_position: u64,
    /// Events read.
    pub event_count: u64,
    /// Distinct streams among them.
    pub stream_count: u64,
    /// Every check in the order it ran.
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// Returns whether no check failed. Warnings and unavailable checks do not fail the audit.
    pub fn passed(&self) -> bool {
        self.first_problem().is_none()
    }

    /// Returns the failed check whose problem has the lowest position.
    pub fn first_problem(&self) -> Option<(&'static str, &Problem)> {
        self.checks
            .iter()
            .filter_map(|check| match &check.status {
                CheckStatus::Failed(problem) => Some((check.name, problem)),
                _ => None,
            })
            .min_by_key(|(_, problem)| rank(problem.position))
    }

    /// Writes the report: a header, one line per check, and the verdict.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "audit verify {}", self.data_dir.display())?;
        writeln!(
            out,
            "events: {} (positions 1..{}), streams: {}",
            self.event_count, self.head_position, self.stream_count
        )?;

        for check in &self.checks {
            match &check.status {
                CheckStatus::Passed(summary) => writeln!(out, "  ok    {}: {summary}", check.name)?,
                CheckStatus::Failed(problem) => {
                    writeln!(out, "  FAIL  {}: {}", check.name, problem.message)?;
                    if problem.more > 0 {
                        writeln!(out, "        and {} more problems in this check", problem.more)?;
                    }
                }
                CheckStatus::Warning(message) => writeln!(out, "  warn  {}: {message}", check.name)?,
                CheckStatus::NotAvailable(reason) => {
                    writeln!(out, "  n/a   {}: not available in this data folder: {reason}", check.name)?
                }
            }
        }

        match self.first_problem() {
            Some((name, problem)) => writeln!(out, "FAILED ({name}): {}", problem.message),
            None => writeln!(out, "VERIFIED: {} events, every available check passed", self.event_count),
        }
    }
}
