//! Batched [`Rows`] of the fraud projection: centres' districts, appointments and daily counters
//! stay in memory for one batch, and each touched row is written once when the batch ends.
//!
//! Attempts, alerts and disputes are written straight away as in the per-event path, because
//! the alert rules query them while the batch is applied. Counter rows are
//! written in the order the batch first touched them, so new rows get the same `row_id` as
//! with one upsert per event.

use std::collections::HashMap;

use rusqlite::{params, Transaction};

use super::apply::{appointment_facts, district_of, AppointmentChange, AppointmentFacts, Rows as RowsTrait, Subject};
use super::counters::{Counter, COLUMNS};
use crate::batch::Rows;

/// Key of a counter row: the subject (centre or verifier id) and the day.
type DayKey = (String, String);

/// A counter row touched by the batch.
struct DayCounts {
    /// Centre of a verifier row at its first bump in the batch, or empty for a centre row.
    /// Like the per-event upsert, the flush stores it only when the row is new.
    centre_id: String,
    /// District at the first bump in the batch, stored only when the row is new.
    district: String,
    /// Increment of each counter column, in [`COLUMNS`] order.
    counts: [i64; COLUMNS.len()],
}

/// Counter rows of one table, in first-touch order.
#[derive(Default)]
struct Days {
    /// Rows in the order the batch first touched them.
    rows: Vec<(DayKey, DayCounts)>,
    /// Index into `rows` by key.
    index: HashMap<DayKey, usize>,
}

impl Days {
    fn bump(&mut self, subject: &str, day: &str, centre_id: &str, district: &str, counters: &[Counter]) {
        let key = (subject.to_owned(), day.to_owned());
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None => {
                let counts = DayCounts { centre_id: centre_id.to_owned(), district: district.to_owned(), counts: [0; COLUMNS.len()] };
                self.rows.push((key.clone(), counts));
                self.index.insert(key, self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        for counter in counters {
            self.rows[at].1.counts[*counter as usize] += 1;
        }
    }
}

/// The rows one batch of the fraud projection touches.
#[derive(Default)]
pub(crate) struct FraudBatch {
    /// District of each centre looked up or registered in the batch (empty for an unknown centre).
    districts: HashMap<String, String>,
    /// Touched `appointments` rows.
    appointments: Rows<AppointmentFacts>,
    /// Touched `centre_days` rows.
    centre_days: Days,
    /// Touched `verifier_days` rows.
    verifier_days: Days,
}

impl RowsTrait for FraudBatch {
    fn district_of(&mut self, tx: &Transaction<'_>, centre_id: &str) -> rusqlite::Result<String> {
        if let Some(district) = self.districts.get(centre_id) {
            return Ok(district.clone());
        }
        let district = district_of(tx, centre_id)?;
        self.districts.insert(centre_id.to_owned(), district.clone());
        Ok(district)
    }

    fn appointment_facts(&mut self, tx: &Transaction<'_>, appointment_id: &str) -> rusqlite::Result<AppointmentFacts> {
        let slot = self.appointments.get(appointment_id, || load_appointment(tx, appointment_id))?;
        Ok(slot.row.clone().unwrap_or_default())
    }

    fn register_centre(&mut self, tx: &Transaction<'_>, centre_id: &str, name: &str, district: &str) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT OR REPLACE INTO centres (centre_id, name, district) VALUES (?1, ?2, ?3)")?
            .execute(params![centre_id, name, district])?;
        self.districts.insert(centre_id.to_owned(), district.to_owned());
        Ok(())
    }

    fn book(&mut self, _tx: &Transaction<'_>, appointment_id: &str, facts: AppointmentFacts) -> rusqlite::Result<()> {
        self.appointments.replace(appointment_id.to_owned(), facts);
        Ok(())
    }

    fn change_appointment(&mut self, tx: &Transaction<'_>, appointment_id: &str, change: AppointmentChange<'_>) -> rusqlite::Result<()> {
        self.appointments.update(appointment_id, || load_appointment(tx, appointment_id), |facts| change.apply_to(facts))
    }

    fn bump(&mut self, _tx: &Transaction<'_>, subject: &Subject<'_>, day: &str, counters: &[Counter]) -> rusqlite::Result<()> {
        match subject {
            Subject::Centre { centre_id, district } => self.centre_days.bump(centre_id, day, "", district, counters),
            Subject::Verifier { verifier_id, centre_id, district } => self.verifier_days.bump(verifier_id, day, centre_id, district, counters),
        }
        Ok(())
    }
}

/// Loads an appointment row, or `None` when it was never booked.
fn load_appointment(tx: &Transaction<'_>, appointment_id: &str) -> rusqlite::Result<Option<AppointmentFacts>> {
    let facts = appointment_facts(tx, appointment_id)?;
    Ok(facts.booked_position.is_some().then_some(facts))
}

impl FraudBatch {
    /// Writes every row the batch changed, once each.
    pub fn flush(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        self.appointments.flush(
            tx,
            "INSERT OR REPLACE INTO appointments (appointment_id, beneficiary_id, centre_id, walk_in, booked_position,
                 unlocked_position, verified_position, verifier_id, dose_position, vaccinator_id, certificate_position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            "UPDATE appointments SET beneficiary_id = ?2, centre_id = ?3, walk_in = ?4, booked_position = ?5,
                 unlocked_position = ?6, verified_position = ?7, verifier_id = ?8, dose_position = ?9, vaccinator_id = ?10,
                 certificate_position = ?11
             WHERE appointment_id = ?1",
            |statement, key, row| {
                statement.execute(params![
                    key,
                    row.beneficiary_id,
                    row.centre_id,
                    row.walk_in,
                    row.booked_position,
                    row.unlocked_position,
                    row.verified_position,
                    row.verifier_id,
                    row.dose_position,
                    row.vaccinator_id,
                    row.certificate_position
                ])
            },
        )?;

        let columns = COLUMNS.join(", ");
        let placeholders = |first: usize| (first..first + COLUMNS.len()).map(|at| format!("?{at}")).collect::<Vec<_>>().join(", ");
        let increments = COLUMNS.iter().map(|column| format!("{column} = {column} + excluded.{column}")).collect::<Vec<_>>().join(", ");
        let centre_sql = format!(
            "INSERT INTO centre_days (centre_id, day, district, {columns}) VALUES (?1, ?2, ?3, {})
             ON CONFLICT (centre_id, day) DO UPDATE SET {increments}",
            placeholders(4)
        );
        let verifier_sql = format!(
            "INSERT INTO verifier_days (verifier_id, day, centre_id, district, {columns}) VALUES (?1, ?2, ?3, ?4, {})
             ON CONFLICT (verifier_id, day) DO UPDATE SET {increments}",
            placeholders(5)
        );
        let mut statement = tx.prepare_cached(&centre_sql)?;
        for ((centre_id, day), row) in &self.centre_days.rows {
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![centre_id, day, &row.district];
            values.extend(row.counts.iter().map(|count| count as &dyn rusqlite::ToSql));
            statement.execute(values.as_slice())?;
        }
        let mut statement = tx.prepare_cached(&verifier_sql)?;
        for ((verifier_id, day), row) in &self.verifier_days.rows {
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![verifier_id, day, &row.centre_id, &row.district];
            values.extend(row.counts.iter().map(|count| count as &dyn rusqlite::ToSql));
            statement.execute(values.as_slice())?;
        }
        Ok(())
    }
}
