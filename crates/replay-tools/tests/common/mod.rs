//! A real data folder for the audit tests and the benchmark generator. The domain aggregates
//! decide the events, `SqliteStore` appends them, the real gate signs certificates into the
//! real vault, the audit key signs checkpoints, and the real projector code builds projections.
//!
//! Citizens go through deterministic journeys chosen by their index (full vaccination with a
//! certificate, a wrong code first, a cancellation, a lock after five wrong codes), so tests
//! know the counts to expect. Each phase of a batch of citizens is appended concurrently, so
//! the store's group commit batches the appends as under real load.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use domain::appointment::{AdministerDose, Appointment, BookAppointment, VerifyCode};
use domain::beneficiary::{Beneficiary, RegisterBeneficiary};
use domain::centre::{Centre, RegisterCentre};
use domain::code::{SecurityCode, ServerKey};
use domain::events::{CancellationReason, Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, MobileNumber, SessionId};
use domain::mobile::Mobile;
use domain::session::{ScheduleSession, Session};
use domain::vaccine::VaccineCatalogue;
use domain::{Decision, Event};
use futures::stream::{self, StreamExt};
use projections::Projections;
use signer::{CertificateVault, KeyRing, StoredCertificate};
use store::checkpoint::{Checkpoint, NoteSigner};
use store::{EventStore, ExpectedRevision, Metadata, NewEvent, SqliteStore, StreamAppend};
use uuid::Uuid;

/// Appends in flight at once during a phase.
const CONCURRENT_APPENDS: usize = 256;

/// Date of every session. The domain takes "today" from the caller, so the journeys happen on
/// this day whatever the real clock shows.
pub fn session_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2021, 5, 10).expect("valid date")
}

/// What happens to one citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journey {
    /// Booked, code verified, dose given, certificate issued.
    Vaccinated,
    /// One wrong code first, then as `Vaccinated`.
    WrongCodeFirst,
    /// Booked, then cancelled by the citizen.
    Cancelled,
    /// Five wrong codes lock the appointment; no dose.
    Locked,
    /// Booked and verified, but no dose yet.
    VerifiedOnly,
}

impl Journey {
    /// Picks the journey of citizen number `index`.
    pub fn of(index: usize) -> Journey {
        match index % 20 {
            3 | 13 => Journey::WrongCodeFirst,
            7 => Journey::Cancelled,
            11 => Journey::Locked,
            17 => Journey::VerifiedOnly,
            _ => Journey::Vaccinated,
        }
    }
}

/// A citizen created by the fixture.
#[derive(Debug, Clone)]
pub struct Citizen {
    /// Beneficiary id.
    pub beneficiary_id: BeneficiaryId,
    /// Registered name (personal data that the timeline masks).
    pub name: String,
    /// The citizen's appointment.
    pub appointment_id: AppointmentId,
    /// Journey taken.
    pub journey: Journey,
    /// Certificate issued, if any.
    pub certificate_id: Option<CertificateId>,
}

/// Per-citizen state while its journey runs.
struct Progress {
    /// Index of the citizen, which picks the journey and the name.
    index: usize,
    /// Beneficiary aggregate.
    beneficiary: Beneficiary,
    /// Beneficiary id.
    beneficiary_id: BeneficiaryId,
    /// Appointment aggregate.
    appointment: Appointment,
    /// Appointment id.
    appointment_id: AppointmentId,
    /// Plain code, kept only in memory to submit it.
    code: SecurityCode,
    /// Session booked.
    session_id: SessionId,
    /// Centre of the session.
    centre_id: CentreId,
    /// Certificate issued.
    certificate_id: Option<CertificateId>,
}

/// A data folder being filled.
pub struct LedgerFixture {
    /// Data folder.
    pub data_dir: PathBuf,
    /// The event store, open for appending.
    pub store: Arc<SqliteStore>,
    /// Issuer keys in `keys/`.
    keys: KeyRing,
    /// Certificate vault.
    vault: CertificateVault,
    /// Signer of the checkpoints; its verifier key is in `keys/audit.pub`.
    audit_signer: NoteSigner,
    /// The log's origin, the checkpoints' first line.
    origin: String,
    /// Key for code and mobile hashes.
    server_key: ServerKey,
    /// Vaccines.
    catalogue: VaccineCatalogue,
    /// Sessions by id, with their seats.
    sessions: HashMap<SessionId, Session>,
    /// Session ids in creation order, for round-robin booking.
    session_order: Vec<SessionId>,
    /// Citizens created so far.
    citizens_created: usize,
    /// Checkpoints signed so far.
    pub checkpoints_signed: u64,
}

impl LedgerFixture {
    /// Creates the data folder with its store, keys, audit key and vault.
    pub async fn create(data_dir: &Path) -> LedgerFixture {
        std::fs::create_dir_all(data_dir).unwrap();
        let store = SqliteStore::open(&data_dir.join("events.db")).await.unwrap();
        let keys = KeyRing::open_or_create(data_dir.join("keys")).unwrap();
        let vault = CertificateVault::open(data_dir.join("certificates.db")).unwrap();

        let origin = store.log_origin().await.unwrap();
        let audit_signer = NoteSigner::generate(&origin).unwrap();
        std::fs::write(data_dir.join("keys/audit.pub"), format!("{}\n", audit_signer.verifier_key())).unwrap();

        LedgerFixture {
            data_dir: data_dir.to_path_buf(),
            store,
            keys,
            vault,
            audit_signer,
            origin,
            server_key: ServerKey::from_bytes([7; 32]),
            catalogue: VaccineCatalogue::default(),
            sessions: HashMap::new(),
            session_order: Vec::new(),
            citizens_created: 0,
            checkpoints_signed: 0,
        }
    }

    /// Registers `centres` centres, each with one session of `capacity` seats.
    pub async fn add_centres(&mut self, centres: usize, capacity: u32) {
        for number in 0..centres {
            let centre_id = CentreId::new(Uuid::new_v4());
            let centre_events = Centre::default()
                .handle_register(RegisterCentre {
                    centre_id,
                    name: format!("UPHC Ward {number}"),
                    district: ["Pune", "Nagpur", "Nashik"][number % 3].to_owned(),
                    state: "Maharashtra".to_owned(),
                    pincode: format!("4110{:02}", number % 100),
                })
                .unwrap();
            let mut centre = Centre::default();
            centre_events.iter().for_each(|event| centre.apply(event));

            let session_id = SessionId::new(Uuid::new_v4());
            let session_events = Session::default()
                .handle_schedule(
                    ScheduleSession {
                        session_id,
                        centre_id,
                        date: session_date(),
                        vaccine: ["COVISHIELD", "COVAXIN"][number % 2].to_owned(),
                        capacity,
                        min_age: 18,
                    },
                    &centre,
                    &self.catalogue,
                    session_date(),
                )
                .unwrap();
            let mut session = Session::default();
            session_events.iter().for_each(|event| session.apply(event));

            let mut events = centre_events;
            events.extend(session_events);
            append(&self.store, &events, &admin()).await;
            self.sessions.insert(session_id, session);
            self.session_order.push(session_id);
        }
    }

    /// Runs the journeys of `count` more citizens, appending each phase of the batch
    /// concurrently, and returns them.
    pub async fn add_citizens(&mut self, count: usize) -> Vec<Citizen> {
        assert!(!self.session_order.is_empty(), "add_centres first");
        let first_index = self.citizens_created;
        self.citizens_created += count;

        // Phase 1: registration.
        let mut batch = Vec::with_capacity(count);
        let mut phase = Vec::with_capacity(count);
        for index in first_index..first_index + count {
            let beneficiary_id = BeneficiaryId::new(Uuid::new_v4());
            let mobile = MobileNumber::parse(&format!("9{:09}", index)).unwrap();
            let events = Beneficiary::default()
                .handle_register(
                    RegisterBeneficiary {
                        beneficiary_id,
                        mobile,
                        name: citizen_name(index),
                        year_of_birth: 1950 + (index % 50) as u16,
                        gender: [Gender::Female, Gender::Male, Gender::Other][index % 3],
                        photo_id_type: PhotoIdType::Aadhaar,
                        photo_id_number: format!("{:012}", 100_000_000_000u64 + index as u64),
                        walk_in: false,
                    },
                    &Mobile::default(),
                    &self.server_key,
                    2021,
                )
                .unwrap();
            let mut beneficiary = Beneficiary::default();
            events.iter().for_each(|event| beneficiary.apply(event));
            phase.push((events, citizen_actor(index)));

            let session_id = self.session_order[index % self.session_order.len()];
            let centre_id = self.sessions[&session_id].info.as_ref().unwrap().centre_id;
            batch.push(Progress {
                index,
                beneficiary,
                beneficiary_id,
                appointment: Appointment::default(),
                appointment_id: AppointmentId::new(Uuid::new_v4()),
                code: SecurityCode::generate(&mut rand::rngs::OsRng),
                session_id,
                centre_id,
                certificate_id: None,
            });
        }
        append_all(&self.store, phase).await;

        // Phase 2: booking; the session aggregate counts the seats.
        let mut phase = Vec::with_capacity(count);
        for citizen in &mut batch {
            let session = self.sessions.get_mut(&citizen.session_id).unwrap();
            let command = BookAppointment {
                appointment_id: citizen.appointment_id,
                beneficiary_id: citizen.beneficiary_id,
                session_id: citizen.session_id,
                dose_number: 1,
                code_hmac: self.server_key.code_hmac(&citizen.appointment_id, &citizen.code),
                key_id: self.server_key.key_id().to_owned(),
                walk_in: false,
                today: session_date(),
            };
            let events = citizen.appointment.handle_book(&command, session, &citizen.beneficiary, &self.catalogue).unwrap();
            for event in &events {
                session.apply(event);
                citizen.appointment.apply(event);
                citizen.beneficiary.apply(event);
            }
            phase.push((events, citizen_actor(citizen.index)));
        }
        append_all(&self.store, phase).await;

        // Phase 3: wrong codes and cancellations.
        let mut phase = Vec::new();
        for citizen in &mut batch {
            let journey = Journey::of(citizen.index);
            let wrong_codes = match journey {
                Journey::WrongCodeFirst => 1,
                Journey::Locked => 5,
                _ => 0,
            };
            let mut events = Vec::new();
            for _ in 0..wrong_codes {
                let wrong = SecurityCode::parse(&format!("{:04}", (citizen.code.numeric() + 1) % 10_000)).unwrap();
                let decision = citizen.appointment.handle_verify(&verify_command(wrong, citizen.centre_id), &self.server_key).unwrap();
                for event in decision.events() {
                    citizen.appointment.apply(event);
                }
                events.extend(decision.events().iter().cloned());
            }
            if journey == Journey::Cancelled {
                let cancelled = citizen.appointment.handle_cancel(CancellationReason::ByCitizen).unwrap();
                for event in &cancelled {
                    citizen.appointment.apply(event);
                    self.sessions.get_mut(&citizen.session_id).unwrap().apply(event);
                }
                events.extend(cancelled);
            }
            if !events.is_empty() {
                phase.push((events, verifier_actor(citizen.centre_id)));
            }
        }
        append_all(&self.store, phase).await;

        // Phase 4: the right code.
        let mut phase = Vec::new();
        for citizen in &mut batch {
            if matches!(Journey::of(citizen.index), Journey::Cancelled | Journey::Locked) {
                continue;
            }
            let code = SecurityCode::parse(citizen.code.expose()).unwrap();
            let decision = citizen.appointment.handle_verify(&verify_command(code, citizen.centre_id), &self.server_key).unwrap();
            let Decision::Accepted(events) = decision else { panic!("the right code was rejected") };
            events.iter().for_each(|event| citizen.appointment.apply(event));
            phase.push((events, verifier_actor(citizen.centre_id)));
        }
        append_all(&self.store, phase).await;

        // Phase 5: doses.
        let mut phase = Vec::new();
        for citizen in &mut batch {
            if !matches!(Journey::of(citizen.index), Journey::Vaccinated | Journey::WrongCodeFirst) {
                continue;
            }
            let command = AdministerDose {
                centre_id: citizen.centre_id,
                vaccinator_id: format!("tok_vaccinator_{}", &citizen.centre_id.to_string()[..8]),
                batch: format!("4121Z{:03}", citizen.index % 1000),
                vaccine: None,
                at: Utc.with_ymd_and_hms(2021, 5, 10, 5, 30, 0).unwrap(),
            };
            let decision = citizen.appointment.handle_administer(&command).unwrap();
            let Decision::Accepted(events) = decision else { panic!("the dose was rejected") };
            events.iter().for_each(|event| citizen.appointment.apply(event));
            phase.push((events, verifier_actor(citizen.centre_id)));
        }
        append_all(&self.store, phase).await;

        // Phase 6: certificates, signed by the real gate after it reads the log.
        let dosed: Vec<usize> = (0..batch.len())
            .filter(|&i| matches!(Journey::of(batch[i].index), Journey::Vaccinated | Journey::WrongCodeFirst))
            .collect();
        let fixture = &*self;
        let batch_ref = &batch;
        let issued: Vec<(usize, CertificateId)> = stream::iter(dosed)
            .map(|i| {
                let appointment_id = batch_ref[i].appointment_id;
                async move { (i, fixture.issue_certificate(appointment_id).await) }
            })
            .buffer_unordered(CONCURRENT_APPENDS)
            .collect()
            .await;
        for (i, certificate_id) in issued {
            batch[i].certificate_id = Some(certificate_id);
        }

        batch
            .into_iter()
            .map(|citizen| Citizen {
                beneficiary_id: citizen.beneficiary_id,
                name: citizen_name(citizen.index),
                appointment_id: citizen.appointment_id,
                journey: Journey::of(citizen.index),
                certificate_id: citizen.certificate_id,
            })
            .collect()
    }

    /// Signs the certificate of a dosed appointment, stores it in the vault, then appends its
    /// event, as the server does.
    async fn issue_certificate(&self, appointment_id: AppointmentId) -> CertificateId {
        let certificate_id = CertificateId::new(Uuid::new_v4());
        let issued = signer::issue_certificate(
            self.store.as_ref(),
            &self.keys,
            &self.catalogue,
            appointment_id,
            certificate_id,
            Utc::now(),
        )
        .await
        .unwrap();
        self.vault.put(&StoredCertificate::from(&issued)).await.unwrap();

        let append = StreamAppend {
            stream_id: appointment_id.stream_id(),
            expected: ExpectedRevision::Exact(issued.appointment_revision),
            events: vec![new_event(&issued.event, &system())],
        };
        self.store.append(vec![append]).await.unwrap();
        certificate_id
    }

    /// Signs a checkpoint of the whole log with the audit key and stores it.
    pub async fn checkpoint(&mut self) {
        let size = self.store.tree_size().await.unwrap();
        let root = self.store.root_at(size).await.unwrap();
        let note = Checkpoint::new(&self.origin, size, root).sign(&self.audit_signer).unwrap();
        self.store.append_checkpoint(note).await.unwrap();
        self.checkpoints_signed += 1;
    }

    /// Returns the head position.
    pub async fn head(&self) -> u64 {
        self.store.head_position().await.unwrap()
    }

    /// Builds `projections.db` from the whole log with the real projector code, then closes the
    /// store so that its WAL is folded into `events.db`.
    pub async fn finish(self) -> PathBuf {
        let projections = Projections::open(&self.data_dir.join("projections.db")).unwrap();
        let mut after = 0;
        loop {
            let page = self.store.read_all(after, 5_000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            projections.apply_batch(&page).unwrap();
        }
        drop(projections);

        let LedgerFixture { data_dir, store, vault, .. } = self;
        drop(vault);
        tokio::task::spawn_blocking(move || drop(store)).await.unwrap();
        data_dir
    }
}

/// Returns the name of citizen number `index`.
pub fn citizen_name(index: usize) -> String {
    const FIRST: [&str; 8] = ["Asha", "Ravi", "Meera", "Arjun", "Fatima", "Suresh", "Lakshmi", "Imran"];
    const LAST: [&str; 6] = ["Devi", "Kumar", "Patil", "Shaikh", "Iyer", "Singh"];
    format!("{} {} {}", FIRST[index % FIRST.len()], LAST[(index / 8) % LAST.len()], index)
}

/// Returns the verification command of a code at a centre on the session date.
fn verify_command(code: SecurityCode, centre_id: CentreId) -> VerifyCode {
    VerifyCode {
        code,
        centre_id,
        verifier_id: format!("tok_verifier_{}", &centre_id.to_string()[..8]),
        today: session_date(),
    }
}

/// Metadata of the admin.
fn admin() -> Metadata {
    actor("tok_admin", "admin")
}

/// Metadata of the server itself.
fn system() -> Metadata {
    actor("system", "admin")
}

/// Metadata of a citizen.
fn citizen_actor(index: usize) -> Metadata {
    actor(&format!("tok_citizen_{index}"), "citizen")
}

/// Metadata of a centre's verifier.
fn verifier_actor(centre_id: CentreId) -> Metadata {
    actor(&format!("tok_verifier_{}", &centre_id.to_string()[..8]), "verifier")
}

fn actor(actor_id: &str, role: &str) -> Metadata {
    Metadata {
        actor_id: actor_id.to_owned(),
        actor_role: role.to_owned(),
        request_id: Uuid::new_v4().to_string(),
        idempotency_key: None,
    }
}

/// Encodes an event for the store.
pub fn new_event(event: &Event, metadata: &Metadata) -> NewEvent {
    NewEvent {
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.encode(),
        metadata: metadata.clone(),
    }
}

/// Appends events grouped by stream in one atomic append, as the server's ledger does.
pub async fn append(store: &SqliteStore, events: &[Event], metadata: &Metadata) {
    let mut appends: Vec<StreamAppend> = Vec::new();
    for event in events {
        let stream_id = event.stream_id();
        let new = new_event(event, metadata);
        match appends.iter_mut().find(|append| append.stream_id == stream_id) {
            Some(append) => append.events.push(new),
            None => appends.push(StreamAppend { stream_id, expected: ExpectedRevision::Any, events: vec![new] }),
        }
    }
    store.append(appends).await.unwrap();
}

/// Appends many independent event groups concurrently.
async fn append_all(store: &SqliteStore, groups: Vec<(Vec<Event>, Metadata)>) {
    stream::iter(groups)
        .map(|(events, metadata)| async move { append(store, &events, &metadata).await })
        .buffer_unordered(CONCURRENT_APPENDS)
        .collect::<Vec<()>>()
        .await;
}

/// Returns the bytes of every file under `dir`, by relative path, to prove a command wrote
/// nothing there.
pub fn folder_bytes(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Copies a data folder, as an auditor receives it.
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
