//! Certificate issue after a dose, and online verification with the ledger's revocations.

use std::collections::HashSet;

use chrono::Utc;
use domain::ids::{AppointmentId, CertificateId};
use signer::gate::{issue_certificate, SignerError};
use signer::vault::StoredCertificate;
use signer::verify::Verification;
use store::{ExpectedRevision, NewEvent, StoreError, StreamAppend};
use uuid::Uuid;

use crate::http::AppState;
use crate::ledger::Actor;

/// Attempts to append `CertificateIssued` before giving up on a busy appointment stream.
const MAX_ISSUE_ATTEMPTS: usize = 10;

/// Failures of certificate issue.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The signer refused or failed.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// Appending the event failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Storing the signed bytes failed.
    #[error("certificate vault failed: {0}")]
    Vault(String),
    /// The appointment stream kept changing.
    #[error("appointment stream kept changing; certificate not issued")]
    Contended,
}

/// Signs and records a certificate for an appointment whose code was verified and dose
/// recorded. The signer reads the log itself; this function only appends its event.
///
/// The signed bytes are stored before the event is appended, so a recorded `CertificateIssued`
/// always has its bytes; a crash in between leaves an unreferenced vault row, never the reverse.
pub async fn issue(state: &AppState, actor: &Actor, appointment_id: AppointmentId) -> Result<(CertificateId, u64), IssueError> {
    let ledger = &state.ledger;
    for _ in 0..MAX_ISSUE_ATTEMPTS {
        let certificate_id = CertificateId::new(Uuid::new_v4());
        let issued = issue_certificate(ledger.store.as_ref(), &state.keys, &ledger.catalogue, appointment_id, certificate_id, Utc::now()).await?;
        state.vault.put(&StoredCertificate::from(&issued)).await.map_err(|err| IssueError::Vault(err.to_string()))?;

        let event = &issued.event;
        let append = StreamAppend {
            stream_id: event.stream_id(),
            expected: ExpectedRevision::Exact(issued.appointment_revision),
            events: vec![NewEvent {
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.encode(),
                metadata: store::Metadata {
                    actor_id: actor.token_id.clone(),
                    actor_role: actor.role.as_str().to_owned(),
                    request_id: actor.request_id.clone(),
                    idempotency_key: None,
                },
            }],
        };
        match ledger.store.append(vec![append]).await {
            Ok(outcome) => {
                tracing::info!(certificate_id = %certificate_id, appointment_id = %appointment_id, key_id = %issued.key_id.to_hex(), "certificate issued");
                return Ok((certificate_id, outcome.last_position.unwrap_or(0)));
            }
            Err(StoreError::WrongExpectedRevision { .. }) => {
                tracing::info!(appointment_id = %appointment_id, "appointment changed while signing; retrying certificate issue");
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(IssueError::Contended)
}

/// Verifies QR text against the current trust list and the ledger's revocations.
pub async fn verify_online(state: &AppState, qr_text: &str) -> Result<Verification, String> {
    let now = Utc::now();
    let trust = state.keys.trust_list(now);
    let first = signer::verify::verify_qr(qr_text, &trust, &HashSet::new(), now);
    let Verification::Valid { record, .. } = &first else {
        return Ok(first);
    };
    crate::http::endpoints::projections_fresh(state).await;
    let revocation = state.ledger.projections.revocation(&record.certificate_id.to_string()).map_err(|err| err.to_string())?;
    if revocation.is_none() {
        return Ok(first);
    }
    let revoked_ids: HashSet<CertificateId> = [record.certificate_id].into_iter().collect();
    Ok(signer::verify::verify_qr(qr_text, &trust, &revoked_ids, now))
}
