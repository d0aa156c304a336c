//! Certificate checks. Every `CertificateIssued` event must have its COSE bytes in
//! `certificates.db`. Those bytes must hash to the event's `cose_sha256` and verify against the
//! issuer keys, and the signed record must agree with the event and the dose. The appointment
//! stream must contain the `CodeVerified` and `DoseAdministered` the certificate cites, at
//! earlier positions.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc::Receiver;

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain::ids::CertificateId;
use domain::Event;
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use signer::{verify_cose, InvalidReason, TrustList, VaccinationRecord, Verification};

use super::report::{Check, ProblemSlot};
use super::rows::IssuedRecord;

/// Name of the check in the report.
const CHECK_NAME: &str = "certificates";

/// Counts for the summary line of a passed check.
#[derive(Debug, Default)]
struct Tally {
    /// Certificates whose signature verified.
    signatures_valid: u64,
    /// Certificates signed by a key that was revoked later; the signature itself is genuine.
    signed_by_revoked_key: u64,
    /// Vault rows with no `CertificateIssued` event. They were signed, but the append lost a
    /// race, so no citizen received them.
    unrecorded_rows: u64,
}

/// Runs the certificate checks over the `CertificateIssued` events that the row pass sends,
/// in position order, until the sender is dropped. It runs on a thread of its own, beside the
/// row pass.
///
/// `events_copy` is a read-only connection to the copy of `events.db`, used to look up the
/// evidence events by position. `vault` is a read-only connection to the copy of
/// `certificates.db`, or `None` when the data folder has none. `keys_dir` is the audited
/// folder's `keys/`, read for the trust list only.
pub(crate) fn check_certificates(
    events_copy: &Connection,
    vault: Option<&Connection>,
    keys_dir: &Path,
    issued: Receiver<IssuedRecord>,
    now: DateTime<Utc>,
) -> anyhow::Result<Check> {
    let mut problems = ProblemSlot::default();
    let mut issued = issued.into_iter().peekable();
    let vault_rows = match vault {
        Some(vault) => count_rows(vault)?,
        None => 0,
    };
    if issued.peek().is_none() && vault_rows == 0 {
        return Ok(Check::passed(CHECK_NAME, "no certificates in this data folder"));
    }

    let Some(vault) = vault else {
        if let Some(first) = issued.next() {
            problems.record(
                Some(first.position),
                format!(
                    "position {}: certificate {} is recorded, but the data folder has no certificates.db",
                    first.position, first.certificate_id
                ),
            );
        }
        return Ok(Check::from_problems(CHECK_NAME, problems, String::new()));
    };

    let trust_list = match signer::keys::read_trust_list(keys_dir, now) {
        Ok(trust_list) => trust_list,
        Err(err) => {
            let count = issued.count().max(usize::try_from(vault_rows).unwrap_or(usize::MAX));
            problems.record(
                None,
                format!("the issuer key list cannot be read ({err}), so {count} certificates cannot be checked"),
            );
            return Ok(Check::from_problems(CHECK_NAME, problems, String::new()));
        }
    };

    let mut tally = Tally::default();
    let mut seen: HashMap<CertificateId, u64> = HashMap::new();
    for record in issued {
        if let Some(first_position) = seen.insert(record.certificate_id, record.position) {
            problems.record(
                Some(record.position),
                format!(
                    "position {}: certificate {} was already recorded at position {first_position}",
                    record.position, record.certificate_id
                ),
            );
            continue;
        }

        let signed = check_vault_row(vault, &trust_list, &record, now, &mut problems, &mut tally)?;
        check_evidence(events_copy, &record, signed.as_ref(), &mut problems)?;
    }

    tally.unrecorded_rows = count_unrecorded_rows(vault, &seen)?;

    let mut summary = format!(
        "{} certificates: signatures valid against keys/issuer-keys.json, hashes equal to their \
         events, CodeVerified and DoseAdministered recorded before each",
        tally.signatures_valid
    );
    if tally.signed_by_revoked_key > 0 {
        summary.push_str(&format!(
            "; {} signed by keys revoked since",
            tally.signed_by_revoked_key
        ));
    }
    if tally.unrecorded_rows > 0 {
        summary.push_str(&format!(
            "; {} rows in certificates.db have no CertificateIssued event (signed but never \
             issued, as after a lost append race)",
            tally.unrecorded_rows
        ));
    }
    Ok(Check::from_problems(CHECK_NAME, problems, summary))
}

/// Checks the vault row of one recorded certificate: present, hash, signature, and the signed
/// record against the event. Returns the signed record when the signature verified.
fn check_vault_row(
    vault: &Connection,
    trust_list: &TrustList,
    record: &IssuedRecord,
    now: DateTime<Utc>,
    problems: &mut ProblemSlot,
    tally: &mut Tally,
) -> anyhow::Result<Option<VaccinationRecord>> {
    let position = record.position;
    let certificate_id = record.certificate_id;

    let cose: Option<Vec<u8>> = vault
        .prepare_cached("SELECT cose FROM certificates WHERE certificate_id = ?1")
        .and_then(|mut statement| statement.query_row([certificate_id.to_string()], |row| row.get(0)).optional())
        .with_context(|| format!("reading certificate {certificate_id} from certificates.db failed"))?;
    let Some(cose) = cose else {
        problems.record(
            Some(position),
            format!(
                "position {position}: certificate {certificate_id} has no COSE bytes in certificates.db (row deleted?)"
            ),
        );
        return Ok(None);
    };

    let digest = hex::encode(Sha256::digest(&cose));
    if !digest.eq_ignore_ascii_case(&record.cose_sha256) {
        problems.record(
            Some(position),
            format!(
                "position {position}: the SHA-256 of certificate {certificate_id} in certificates.db is {digest}, but its CertificateIssued event states {} (certificate or event edited?)",
                record.cose_sha256
            ),
        );
    }

    let (signed, key_id) = match verify_cose(&cose, trust_list, &HashSet::new(), now) {
        Verification::Valid { record: signed, key_id, .. } => {
            tally.signatures_valid += 1;
            (signed, key_id)
        }
        Verification::Invalid { reason: InvalidReason::RevokedKey { key_id } } => {
            // The signature verified before the revocation was found; only the key was
            // withdrawn later. Read the record again without judging the key status.
            tally.signed_by_revoked_key += 1;
            tally.signatures_valid += 1;
            match record_ignoring_revocation(&cose, trust_list, now) {
                Some(signed) => (signed, key_id),
                None => return Ok(None),
            }
        }
        Verification::Invalid { reason } => {
            problems.record(
                Some(position),
                format!(
                    "position {position}: certificate {certificate_id} fails verification against keys/issuer-keys.json: {reason}"
                ),
            );
            return Ok(None);
        }
    };

    let mut disagreements = Vec::new();
    if key_id.to_hex() != record.key_id {
        disagreements.push(format!("key id {} vs {}", key_id.to_hex(), record.key_id));
    }
    if signed.certificate_id != certificate_id {
        disagreements.push(format!("certificate id {} vs {certificate_id}", signed.certificate_id));
    }
    if signed.beneficiary_id != record.beneficiary_id {
        disagreements.push(format!("beneficiary {} vs {}", signed.beneficiary_id, record.beneficiary_id));
    }
    if signed.code_verified_position != record.code_verified_position {
        disagreements.push(format!(
            "CodeVerified position {} vs {}",
            signed.code_verified_position, record.code_verified_position
        ));
    }
    if signed.dose_position != record.dose_position {
        disagreements.push(format!("dose position {} vs {}", signed.dose_position, record.dose_position));
    }
    if !disagreements.is_empty() {
        problems.record(
            Some(position),
            format!(
                "position {position}: certificate {certificate_id} (signed) and its CertificateIssued event disagree: {} (event edited?)",
                disagreements.join(", ")
            ),
        );
    }
    Ok(Some(signed))
}

/// Verifies a certificate whose key was revoked, as if the key were still in force, and returns
/// its record.
fn record_ignoring_revocation(
    cose: &[u8],
    trust_list: &TrustList,
    now: DateTime<Utc>,
) -> Option<VaccinationRecord> {
    let mut unrevoked = trust_list.clone();
    for key in &mut unrevoked.keys {
        key.status = signer::KeyStatus::Retired;
    }
    match verify_cose(cose, &unrevoked, &HashSet::new(), now) {
        Verification::Valid { record, .. } => Some(record),
        Verification::Invalid { .. } => None,
    }
}

/// Checks that the appointment stream contains the evidence the certificate cites: a
/// `CodeVerified` and a later `DoseAdministered` of the same appointment, both before the
/// `CertificateIssued`, and a dose that matches the signed record.
///
/// The two cited positions are read directly, so the check costs two primary-key lookups per
/// certificate instead of a read of the whole stream.
fn check_evidence(
    events_copy: &Connection,
    record: &IssuedRecord,
    signed: Option<&VaccinationRecord>,
    problems: &mut ProblemSlot,
) -> anyhow::Result<()> {
    let position = record.position;
    let certificate_id = record.certificate_id;
    let stream_id = record.appointment_id.stream_id();

    let verified = event_at(events_copy, record.code_verified_position, &stream_id)?;
    if !matches!(verified, Some(Event::CodeVerified { .. })) {
        problems.record(
            Some(position),
            format!(
                "position {position}: certificate {certificate_id} cites a CodeVerified at position {}, but stream {stream_id} has none there",
                record.code_verified_position
            ),
        );
        return Ok(());
    }

    let dose_position = record.dose_position;
    let dose = event_at(events_copy, dose_position, &stream_id)?;
    let Some(Event::DoseAdministered { vaccine, batch, dose_number, vaccinator_id, .. }) = dose else {
        problems.record(
            Some(position),
            format!(
                "position {position}: certificate {certificate_id} cites a DoseAdministered at position {dose_position}, but stream {stream_id} has none there"
            ),
        );
        return Ok(());
    };

    if !(record.code_verified_position < dose_position && dose_position < position) {
        problems.record(
            Some(position),
            format!(
                "position {position}: certificate {certificate_id} needs CodeVerified before DoseAdministered before itself, but their positions are {}, {dose_position} and {position}",
                record.code_verified_position
            ),
        );
        return Ok(());
    }

    let Some(signed) = signed else {
        return Ok(());
    };
    let mut disagreements = Vec::new();
    if signed.batch != batch {
        disagreements.push(format!("batch {batch:?} vs {:?}", signed.batch));
    }
    if !signed.vaccine.eq_ignore_ascii_case(&vaccine) {
        disagreements.push(format!("vaccine {vaccine:?} vs {:?}", signed.vaccine));
    }
    if signed.dose_number != dose_number {
        disagreements.push(format!("dose number {dose_number} vs {}", signed.dose_number));
    }
    if signed.vaccinator_id != vaccinator_id {
        disagreements.push(format!("vaccinator {vaccinator_id:?} vs {:?}", signed.vaccinator_id));
    }
    if !disagreements.is_empty() {
        problems.record(
            Some(dose_position),
            format!(
                "position {dose_position}: DoseAdministered disagrees with certificate {certificate_id} (position {position}), which signed it: {} (row edited?)",
                disagreements.join(", ")
            ),
        );
    }
    Ok(())
}

/// Reads and decodes the event at `position` when it belongs to `stream_id`. Returns `None`
/// when the position is empty, in another stream, or does not decode, which the row checks
/// report.
fn event_at(events_copy: &Connection, position: u64, stream_id: &str) -> anyhow::Result<Option<Event>> {
    let Ok(signed_position) = i64::try_from(position) else {
        return Ok(None);
    };
    let row: Option<(String, String, i64, Vec<u8>)> = events_copy
        .prepare_cached("SELECT stream_id, event_type, schema_version, payload FROM events WHERE position = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([signed_position], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                .optional()
        })
        .with_context(|| format!("reading the event at position {position} failed"))?;

    let Some((row_stream, event_type, schema_version, payload)) = row else {
        return Ok(None);
    };
    if row_stream != stream_id {
        return Ok(None);
    }
    let Ok(schema_version) = u16::try_from(schema_version) else {
        return Ok(None);
    };
    Ok(Event::decode(&event_type, schema_version, &payload).ok())
}

/// Returns the number of rows in the vault.
fn count_rows(vault: &Connection) -> anyhow::Result<u64> {
    let count: i64 = vault
        .query_row("SELECT count(*) FROM certificates", [], |row| row.get(0))
        .context("counting the rows of certificates.db failed")?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Returns the number of vault rows whose certificate id no `CertificateIssued` event names.
fn count_unrecorded_rows(vault: &Connection, recorded: &HashMap<CertificateId, u64>) -> anyhow::Result<u64> {
    let mut statement = vault
        .prepare("SELECT certificate_id FROM certificates")
        .context("reading certificates.db failed")?;
    let mut rows = statement.query([]).context("reading certificates.db failed")?;

    let mut unrecorded = 0;
    while let Some(row) = rows.next().context("reading certificates.db failed")? {
        let id: String = row.get(0).context("reading a certificate id failed")?;
        let known = CertificateId::parse(&id).is_ok_and(|id| recorded.contains_key(&id));
        if !known {
            unrecorded += 1;
        }
    }
    Ok(unrecorded)
}
