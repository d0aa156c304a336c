//! `audit rebuild`: rebuilds every projection from position 0 into a temporary folder, up to the
//! live projections' checkpoint, and compares the two files table by table, row by row.
//!
//! Tables and their primary keys are read from the rebuilt file's schema, so a projection
//! table added later is compared without a change here. Both sides are read in primary-key
//! order and merged, so memory stays constant whatever the table sizes.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use projections::Projections;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use store::EventStore;
use tracing::info;

use super::replay::{build_projections, EventCounts, ReplayLimit};
use super::snapshot::{has_table, Snapshot, PROJECTIONS_DB};
use super::timeline::mask_name;
use super::{ensure_outside, AuditDataDir, AuditOutcome};

/// Name of the projections' checkpoint table, compared separately from the data tables.
const CHECKPOINT_TABLE: &str = "checkpoint";

/// Columns that hold personal data, masked in the report unless `--unmask`: (table, column).
const PERSONAL_COLUMNS: [(&str, &str); 1] = [("beneficiaries", "name")];

/// Arguments of `audit rebuild`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).multiple(true).args(["diff", "out"])))]
pub struct RebuildArgs {
    #[command(flatten)]
    pub data: AuditDataDir,

    /// Compare the rebuilt projections with the live projections.db, row by row, and exit with
    /// status 1 when any row differs.
    #[arg(long)]
    pub diff: bool,

    /// Keep the rebuilt projections.db in this folder (outside the data folder) instead of a
    /// temporary one.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Maximum number of differing rows printed; all are counted.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_rows: usize,

    /// Show personal data (beneficiary names) in differing rows instead of masking it.
    #[arg(long)]
    pub unmask: bool,
}

/// One row that differs between the live and the rebuilt projections.
#[derive(Debug, Clone, PartialEq)]
pub enum RowDifference {
    /// The row exists only in the live file.
    OnlyLive {
        /// Table name.
        table: String,
        /// Primary key, as `column=value` pairs.
        key: String,
    },
    /// The row exists only in the rebuilt file.
    OnlyRebuilt {
        /// Table name.
        table: String,
        /// Primary key, as `column=value` pairs.
        key: String,
    },
    /// The row exists in both, with different values.
    Changed {
        /// Table name.
        table: String,
        /// Primary key, as `column=value` pairs.
        key: String,
        /// Differing columns: (column, live value, rebuilt value).
        columns: Vec<(String, String, String)>,
    },
}

/// Result of comparing the two files.
#[derive(Debug, Clone, Default)]
pub struct RebuildDiff {
    /// Position both files were built to.
    pub position: u64,
    /// Tables compared, with their row counts (live, rebuilt).
    pub tables: Vec<(String, u64, u64)>,
    /// Differing rows, at most `max_rows` of them.
    pub differences: Vec<RowDifference>,
    /// Differing rows in all.
    pub difference_count: u64,
    /// Problems with the tables themselves: missing with rows to hold, different columns.
    pub schema_problems: Vec<String>,
    /// Differences that lose no row, such as a table that a newer build added, missing from
    /// the live file and empty when rebuilt.
    pub notes: Vec<String>,
}

impl RebuildDiff {
    /// Returns whether the files hold the same rows.
    pub fn is_empty(&self) -> bool {
        self.difference_count == 0 && self.schema_problems.is_empty()
    }
}

/// Runs `audit rebuild`.
pub(crate) async fn run(args: &RebuildArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<AuditOutcome> {
    let rebuilt_dir = match &args.out {
        Some(dir) => {
            ensure_outside(&args.data.data_dir, dir)?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {} failed", dir.display()))?;
            None
        }
        None => Some(tempfile::Builder::new().prefix("vaxledger-rebuild-").tempdir().context("creating a temporary folder failed; set TMPDIR")?),
    };
    let target = match (&args.out, &rebuilt_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => bail!("no output folder for the rebuilt projections"),
    };

    let options = CompareOptions { max_rows: args.max_rows, unmask: args.unmask, compare: args.diff };
    let diff = rebuild_data_dir(&args.data.data_dir, &target, &options).await?;

    writeln!(out, "rebuilt projections up to position {} into {}", diff.position, target.join(PROJECTIONS_DB).display())?;
    if !args.diff {
        return Ok(AuditOutcome::Passed);
    }
    write_diff(out, &diff)?;
    Ok(if diff.is_empty() { AuditOutcome::Passed } else { AuditOutcome::Failed })
}

/// How to compare.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// Maximum number of differing rows kept in the result.
    pub max_rows: usize,
    /// Keep personal data in the result instead of masking it.
    pub unmask: bool,
    /// Compare with the live file; when false, only rebuild up to the head position.
    pub compare: bool,
}

/// Rebuilds the projections of the data folder into `target_dir/projections.db` and, when
/// `options.compare` is set, compares them with the live projections.db up to its checkpoint.
pub async fn rebuild_data_dir(data_dir: &Path, target_dir: &Path, options: &CompareOptions) -> anyhow::Result<RebuildDiff> {
    let snapshot = Snapshot::open(data_dir)?;
    let store = snapshot.open_events()?;
    let head = store.head_position().await.context("reading the head position of events.db failed")?;

    let live = if options.compare {
        let live = snapshot
            .open_connection(PROJECTIONS_DB)?
            .with_context(|| format!("{} has no {PROJECTIONS_DB} to compare with", snapshot.source().display()))?;
        Some(live)
    } else {
        None
    };
    let position = match &live {
        Some(live) => live_checkpoint(live)?,
        None => head,
    };
    if position > head {
        bail!("the live projections.db is at position {position}, beyond the last event at {head} (events deleted?)");
    }

    let output = target_dir.join(PROJECTIONS_DB);
    if output.exists() {
        bail!("{} already exists; remove it or pass another --out folder", output.display());
    }
    info!(data_dir = %snapshot.source().display(), position, out = %output.display(), "audit rebuild started");

    let projections = Projections::open(&output).with_context(|| format!("creating {} failed", output.display()))?;
    let mut counts = EventCounts::default();
    build_projections(&store, &projections, ReplayLimit::Position(position), head, &mut counts).await?;
    drop(projections);

    let mut diff = RebuildDiff { position, ..RebuildDiff::default() };
    let Some(live) = live else {
        return Ok(diff);
    };
    let rebuilt = Connection::open_with_flags(&output, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {} failed", output.display()))?;
    compare_files(&live, &rebuilt, options, &mut diff)?;

    info!(data_dir = %snapshot.source().display(), differences = diff.difference_count, "audit rebuild compared");
    Ok(diff)
}

/// Reads the live projections' checkpoint position.
fn live_checkpoint(live: &Connection) -> anyhow::Result<u64> {
    if !has_table(live, CHECKPOINT_TABLE)? {
        bail!("the live projections.db has no checkpoint table; it is not a vaxledger projections file");
    }
    let position: i64 = live
        .query_row("SELECT COALESCE(MAX(position), 0) FROM checkpoint", [], |row| row.get(0))
        .context("reading the live projections' checkpoint failed")?;
    u64::try_from(position).with_context(|| format!("the live projections' checkpoint {position} is negative"))
}

/// Compares every table of the rebuilt file with the live one.
fn compare_files(live: &Connection, rebuilt: &Connection, options: &CompareOptions, diff: &mut RebuildDiff) -> anyhow::Result<()> {
    let mut statement = rebuilt
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .context("listing the rebuilt tables failed")?;
    let tables: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .context("listing the rebuilt tables failed")?
        .collect::<Result<_, _>>()
        .context("listing the rebuilt tables failed")?;

    for table in tables.iter().filter(|table| table.as_str() != CHECKPOINT_TABLE) {
        if !has_table(live, table)? {
            let rows = count_table_rows(rebuilt, table)?;
            if rows == 0 {
                diff.notes.push(format!(
                    "table {table} is missing from the live projections.db and empty when rebuilt (added by a newer build)"
                ));
            } else {
                diff.schema_problems.push(format!(
                    "table {table} is missing from the live projections.db, but has {rows} rows when rebuilt"
                ));
            }
            continue;
        }
        let layout = table_layout(rebuilt, table)?;
        let live_layout = table_layout(live, table)?;
        if live_layout.columns != layout.columns {
            diff.schema_problems.push(format!(
                "table {table} has columns ({}) in the live projections.db but ({}) when rebuilt",
                live_layout.columns.join(", "),
                layout.columns.join(", ")
            ));
            continue;
        }
        compare_table(live, rebuilt, table, &layout, options, diff)?;
    }
    Ok(())
}

/// Counts the rows of a table.
fn count_table_rows(connection: &Connection, table: &str) -> anyhow::Result<u64> {
    let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
    let count: i64 = connection
        .query_row(&sql, [], |row| row.get(0))
        .with_context(|| format!("counting the rows of {table} failed"))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Columns of a table and the positions of its primary-key columns among them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableLayout {
    /// Column names in declaration order.
    columns: Vec<String>,
    /// Indexes into `columns` of the primary key, in key order; every column when the table has
    /// no declared key.
    key: Vec<usize>,
}

/// Reads a table's columns and primary key.
fn table_layout(connection: &Connection, table: &str) -> anyhow::Result<TableLayout> {
    let mut statement = connection
        .prepare("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")
        .with_context(|| format!("reading the columns of {table} failed"))?;
    let rows: Vec<(String, i64)> = statement
        .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))
        .with_context(|| format!("reading the columns of {table} failed"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the columns of {table} failed"))?;

    let columns: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    let mut key: Vec<(i64, usize)> = rows
        .iter()
        .enumerate()
        .filter(|(_, (_, pk))| *pk > 0)
        .map(|(index, (_, pk))| (*pk, index))
        .collect();
    key.sort();
    let mut key: Vec<usize> = key.into_iter().map(|(_, index)| index).collect();
    if key.is_empty() {
        key = (0..columns.len()).collect();
    }
    Ok(TableLayout { columns, key })
}

/// Merges both copies of a table in key order and records every differing row.
fn compare_table(
    live: &Connection,
    rebuilt: &Connection,
    table: &str,
    layout: &TableLayout,
    options: &CompareOptions,
    diff: &mut RebuildDiff,
) -> anyhow::Result<()> {
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let column_list: Vec<String> = layout.columns.iter().map(|column| quoted(column)).collect();
    let order: Vec<String> = layout.key.iter().map(|&index| quoted(&layout.columns[index])).collect();
    let sql = format!("SELECT {} FROM {} ORDER BY {}", column_list.join(", "), quoted(table), order.join(", "));

    let read_error = || format!("reading table {table} failed");
    let mut live_statement = live.prepare(&sql).with_context(read_error)?;
    let mut rebuilt_statement = rebuilt.prepare(&sql).with_context(read_error)?;
    let width = layout.columns.len();
    let mut live_rows = live_statement.query([]).with_context(read_error)?;
    let mut rebuilt_rows = rebuilt_statement.query([]).with_context(read_error)?;

    let next_row = |rows: &mut rusqlite::Rows<'_>| -> anyhow::Result<Option<Vec<Value>>> {
        match rows.next().with_context(read_error)? {
            None => Ok(None),
            Some(row) => (0..width)
                .map(|index| row.get::<_, Value>(index).with_context(read_error))
                .collect::<anyhow::Result<Vec<Value>>>()
                .map(Some),
        }
    };

    let mut live_row = next_row(&mut live_rows)?;
    let mut rebuilt_row = next_row(&mut rebuilt_rows)?;
    let (mut live_count, mut rebuilt_count) = (0u64, 0u64);

    loop {
        let order = match (&live_row, &rebuilt_row) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(live_values), Some(rebuilt_values)) => compare_keys(live_values, rebuilt_values, &layout.key),
        };

        match order {
            Ordering::Less => {
                let values = live_row.take().unwrap_or_default();
                record(diff, options, RowDifference::OnlyLive { table: table.to_owned(), key: key_text(&values, layout) });
                live_count += 1;
                live_row = next_row(&mut live_rows)?;
            }
            Ordering::Greater => {
                let values = rebuilt_row.take().unwrap_or_default();
                record(diff, options, RowDifference::OnlyRebuilt { table: table.to_owned(), key: key_text(&values, layout) });
                rebuilt_count += 1;
                rebuilt_row = next_row(&mut rebuilt_rows)?;
            }
            Ordering::Equal => {
                let live_values = live_row.take().unwrap_or_default();
                let rebuilt_values = rebuilt_row.take().unwrap_or_default();
                let columns = changed_columns(table, layout, &live_values, &rebuilt_values, options.unmask);
                if !columns.is_empty() {
                    let key = key_text(&live_values, layout);
                    record(diff, options, RowDifference::Changed { table: table.to_owned(), key, columns });
                }
                live_count += 1;
                rebuilt_count += 1;
                live_row = next_row(&mut live_rows)?;
                rebuilt_row = next_row(&mut rebuilt_rows)?;
            }
        }
    }

    diff.tables.push((table.to_owned(), live_count, rebuilt_count));
    Ok(())
}

/// Counts a difference and keeps it while under the row limit.
fn record(diff: &mut RebuildDiff, options: &CompareOptions, difference: RowDifference) {
    diff.difference_count += 1;
    if diff.differences.len() < options.max_rows {
        diff.differences.push(difference);
    }
}

/// Returns the columns whose values differ, with both values formatted.
fn changed_columns(
    table: &str,
    layout: &TableLayout,
    live: &[Value],
    rebuilt: &[Value],
    unmask: bool,
) -> Vec<(String, String, String)> {
    layout
        .columns
        .iter()
        .enumerate()
        .filter(|(index, _)| live[*index] != rebuilt[*index])
        .map(|(index, column)| {
            let personal = !unmask && PERSONAL_COLUMNS.contains(&(table, column.as_str()));
            let show = |value: &Value| match value {
                Value::Text(text) if personal => format!("{:?}", mask_name(text)),
                other => value_text(other),
            };
            (column.clone(), show(&live[index]), show(&rebuilt[index]))
        })
        .collect()
}

/// Compares two rows by their key columns, in SQLite's order: NULL, numbers, text, blobs.
fn compare_keys(left: &[Value], right: &[Value], key: &[usize]) -> Ordering {
    key.iter()
        .map(|&index| compare_values(&left[index], &right[index]))
        .find(|order| *order != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// Orders two SQLite values as SQLite's BINARY collation does.
fn compare_values(left: &Value, right: &Value) -> Ordering {
    fn class(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }
    match (left, right) {
        (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
        (Value::Real(a), Value::Real(b)) => a.total_cmp(b),
        (Value::Integer(a), Value::Real(b)) => (*a as f64).total_cmp(b),
        (Value::Real(a), Value::Integer(b)) => a.total_cmp(&(*b as f64)),
        (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Blob(a), Value::Blob(b)) => a.cmp(b),
        _ => class(left).cmp(&class(right)),
    }
}

/// Formats the key columns of a row as `column=value` pairs.
fn key_text(values: &[Value], layout: &TableLayout) -> String {
    layout
        .key
        .iter()
        .map(|&index| format!("{}={}", layout.columns[index], value_text(&values[index])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Formats one SQLite value for the report.
fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Integer(number) => number.to_string(),
        Value::Real(number) => number.to_string(),
        Value::Text(text) => format!("{text:?}"),
        Value::Blob(bytes) => format!("x'{}'", hex::encode(bytes)),
    }
}

/// Writes the comparison report.
fn write_diff(out: &mut dyn Write, diff: &RebuildDiff) -> std::io::Result<()> {
    for (table, live, rebuilt) in &diff.tables {
        writeln!(out, "  table {table}: {live} rows live, {rebuilt} rebuilt")?;
    }
    for note in &diff.notes {
        writeln!(out, "  note  {note}")?;
    }
    for problem in &diff.schema_problems {
        writeln!(out, "  DIFF  {problem}")?;
    }
    for difference in &diff.differences {
        match difference {
            RowDifference::OnlyLive { table, key } => {
                writeln!(out, "  DIFF  {table} [{key}]: only in the live projections.db")?
            }
            RowDifference::OnlyRebuilt { table, key } => {
                writeln!(out, "  DIFF  {table} [{key}]: missing from the live projections.db")?
            }
            RowDifference::Changed { table, key, columns } => {
                let changes: Vec<String> = columns
                    .iter()
                    .map(|(column, live, rebuilt)| format!("{column}: live {live}, rebuilt {rebuilt}"))
                    .collect();
                writeln!(out, "  DIFF  {table} [{key}]: {}", changes.join("; "))?
            }
        }
    }
    let shown = diff.differences.len() as u64;
    if diff.difference_count > shown {
        writeln!(out, "  and {} more differing rows (raise --max-rows to list them)", diff.difference_count - shown)?;
    }

    if diff.is_empty() {
        writeln!(out, "NO DIFFERENCE: the live projections equal a rebuild from the events up to position {}", diff.position)
    } else {
        writeln!(
            out,
            "DIFFERENT: {} rows and {} tables differ from a rebuild from the events up to position {}",
            diff.difference_count,
            diff.schema_problems.len(),
            diff.position
        )
    }
}
