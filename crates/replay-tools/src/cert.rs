//! `vaxledger cert verify`: offline verification of a certificate against a trust-list file, the
//! same JSON that `GET /api/v1/trust-list` serves.
//!
//! The certificate is given as QR text or as a file. A certificate PDF has its embedded QR text
//! read exactly. A PNG or JPEG photo or screenshot of the QR code is decoded here, with no
//! server. A text file contains the QR text. The file reading is the verify page's, from the
//! `documents` crate.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use documents::{read_qr_text, InputKind, ReadError, MAX_INPUT_BYTES};
use signer::{verify_qr, TrustList, VaccinationRecord, Verification, QR_PREFIX};

/// Maximum size in bytes read from standard input or a trust-list file. A QR text is a few KiB
/// at most, and a trust list grows by about 300 bytes per key.
const MAX_INPUT_FILE_LEN: u64 = 1024 * 1024;

/// Certificate subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CertCommand {
    /// Verify a certificate offline against a trust-list file.
    ///
    /// Prints VALID with the vaccination record, or INVALID with the reason. Exits with status 0
    /// when valid and 1 when invalid.
    Verify(VerifyArgs),
}

/// Arguments of `cert verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The certificate: QR text starting with VXL1:, or a file of at most 5 MiB (a certificate
    /// PDF, a PNG or JPEG photo or screenshot of the QR code, or a text file with the QR text), or
    /// - to read the QR text from standard input.
    #[arg(value_name = "QR-TEXT|FILE.pdf|FILE.png|FILE.jpg")]
    pub input: String,

    /// Trust-list JSON file, as served at GET /api/v1/trust-list.
    #[arg(long, value_name = "FILE")]
    pub trust_list: PathBuf,

    /// Verifier key of the ledger's audit key (the line in `keys/audit.pub`), required when the
    /// trust-list file is the signed note from GET /api/v1/trust-list/signed.
    #[arg(long, value_name = "KEY")]
    pub trust_key: Option<String>,

    /// Revocation-list JSON file, as served at GET /api/v1/revocations; without it, revoked
    /// certificates are not detected offline.
    #[arg(long, value_name = "FILE")]
    pub revocations: Option<PathBuf>,

    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The parts of the revocation list that offline verification needs.
#[derive(Debug, serde::Deserialize)]
struct RevocationList {
    /// Time the server produced the list.
    issued_at: String,
    /// Revoked certificates.
    revoked: Vec<RevokedEntry>,
}

/// One revoked certificate.
#[derive(Debug, serde::Deserialize)]
struct RevokedEntry {
    /// Id of the revoked certificate.
    certificate_id: domain::ids::CertificateId,
}

/// Verdict of `cert verify`, turned into the process exit status by the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertOutcome {
    /// The certificate verified.
    Valid,
    /// The certificate was rejected.
    Invalid,
}

impl CertOutcome {
    /// Returns the exit status: 0 when valid, 1 when invalid.
    pub fn exit_code(self) -> ExitCode {
        match self {
            CertOutcome::Valid => ExitCode::SUCCESS,
            CertOutcome::Invalid => ExitCode::from(1),
        }
    }
}

impl From<CertOutcome> for ExitCode {
    fn from(outcome: CertOutcome) -> Self {
        outcome.exit_code()
    }
}

/// Runs a certificate subcommand, printing to standard output.
///
/// An error (unreadable input, invalid trust list) is returned rather than printed, so the
/// binary reports it and exits with its own status.
pub fn run_cert(command: CertCommand) -> anyhow::Result<CertOutcome> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    run_cert_to(command, &mut out, Utc::now())
}

/// Runs a certificate subcommand, writing its report to `out` and judging validity at `now`.
pub fn run_cert_to(
    command: CertCommand,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> anyhow::Result<CertOutcome> {
    match command {
        CertCommand::Verify(args) => verify(&args, out, now),
    }
}

/// Implements `cert verify`.
fn verify(
    args: &VerifyArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> anyhow::Result<CertOutcome> {
    let qr_text = read_qr_input(&args.input)?;

    let trust_list_text = read_capped(&args.trust_list)?;
    let trust_list_text = open_trust_list(&trust_list_text, args.trust_key.as_deref(), &args.trust_list)?;
    let trust_list = TrustList::from_json(&trust_list_text).with_context(|| {
        format!(
            "trust list {} is not a valid trust-list JSON file",
            args.trust_list.display()
        )
    })?;

    let (revoked, revocations_issued_at) = match &args.revocations {
        Some(path) => {
            let text = read_capped(path)?;
            let list: RevocationList = serde_json::from_str(&text)
                .with_context(|| format!("revocation list {} is not a valid revocation-list JSON file", path.display()))?;
            let ids = list.revoked.iter().map(|entry| entry.certificate_id).collect();
            (ids, Some(list.issued_at))
        }
        None => (Default::default(), None),
    };
    let verification = verify_qr(&qr_text, &trust_list, &revoked, now);

    if args.json {
        serde_json::to_writer_pretty(&mut *out, &verification)
            .context("writing the JSON result failed")?;
        writeln!(out)?;
    } else {
        write_report(out, &verification, &trust_list, revocations_issued_at.as_deref())?;
    }

    Ok(match verification {
        Verification::Valid { .. } => CertOutcome::Valid,
        Verification::Invalid { .. } => CertOutcome::Invalid,
    })
}

/// Returns the trust-list JSON from a trust-list file: plain JSON, or a signed note checked
/// against `trust_key`.
fn open_trust_list(text: &str, trust_key: Option<&str>, path: &std::path::Path) -> anyhow::Result<String> {
    // A signed note ends with a blank line followed by signature lines that start with an em dash.
    let signed = text.contains("\n\n\u{2014} ");
    match (signed, trust_key) {
        (false, None) => Ok(text.to_owned()),
        (false, Some(_)) => anyhow::bail!(
            "trust list {} is plain JSON, not a signed note; download /api/v1/trust-list/signed or drop --trust-key",
            path.display()
        ),
        (true, None) => anyhow::bail!(
            "trust list {} is a signed note; pass --trust-key with the ledger's audit verifier key (keys/audit.pub)",
            path.display()
        ),
        (true, Some(key)) => {
            let key = store::checkpoint::VerifierKey::parse(key.trim())
                .map_err(|err| anyhow::anyhow!("--trust-key is not a verifier key ({err}); copy the line from keys/audit.pub"))?;
            let note = key
                .verify_note(text)
                .map_err(|err| anyhow::anyhow!("trust list {} failed its signature check: {err}", path.display()))?;
            Ok(note.text)
        }
    }
}

/// Returns the QR text from the argument, a file, or standard input (`-`).
fn read_qr_input(input: &str) -> anyhow::Result<String> {
    if input == "-" {
        let mut text = String::new();
        io::stdin()
            .take(MAX_INPUT_FILE_LEN)
            .read_to_string(&mut text)
            .context("reading QR text from standard input failed")?;
        return Ok(text.trim().to_owned());
    }

    if input.trim_start().starts_with(QR_PREFIX) {
        return Ok(input.trim().to_owned());
    }

    let path = Path::new(input);
    if path.is_file() {
        return read_qr_file(path);
    }
    if looks_like_file_name(input) {
        bail!("input file {input} not found");
    }

    // Neither a file nor VXL1: text: verify it anyway, so the report names the wrong prefix.
    Ok(input.trim().to_owned())
}

/// Reads the QR text from a certificate PDF, a PNG or JPEG image of the QR code, or a text file.
fn read_qr_file(path: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_INPUT_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    File::open(path)
        .and_then(|file| file.take(limit).read_to_end(&mut bytes))
        .with_context(|| format!("reading {} failed", path.display()))?;

    let kind = InputKind::sniff(&bytes).map_or("unknown", InputKind::name);
    read_qr_text(&bytes).map_err(|error| {
        let fix = match &error {
            ReadError::Empty => "pass a file that contains the QR text".to_owned(),
            ReadError::TooLarge { .. } => "pass the certificate PDF or a smaller photo".to_owned(),
            ReadError::UnsupportedType => "pass a certificate PDF, a PNG or JPEG image, or a text file".to_owned(),
            ReadError::Image(_) => "take a sharp photo with the whole QR code in view, or pass the certificate PDF".to_owned(),
            ReadError::PdfUnreadable { .. } | ReadError::PdfWithoutCertificate => {
                format!("pass the PDF downloaded from the server, or the QR text (it starts with {QR_PREFIX})")
            }
        };
        anyhow::anyhow!("{} ({kind} file): {error}; {fix}", path.display())
    })
}

/// Returns whether the argument names a file by its extension.
fn looks_like_file_name(input: &str) -> bool {
    let lower = input.to_ascii_lowercase();
    [".pdf", ".png", ".jpg", ".jpeg", ".txt"]
        .iter()
        .any(|extension| lower.ends_with(extension))
}

/// Reads a whole file of at most [`MAX_INPUT_FILE_LEN`] bytes as text.
fn read_capped(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    File::open(path)
        .and_then(|file| file.take(MAX_INPUT_FILE_LEN).read_to_string(&mut text))
        .with_context(|| format!("reading trust list {} failed", path.display()))?;
    Ok(text)
}

/// Writes the human-readable report.
fn write_report(
    out: &mut dyn Write,
    verification: &Verification,
    trust_list: &TrustList,
    revocations_issued_at: Option<&str>,
) -> io::Result<()> {
    match verification {
        Verification::Valid {
            record,
            key_id,
            issuer,
            issued_at,
        } => {
            writeln!(out, "VALID")?;
            write_record(out, record)?;
            writeln!(
                out,
                "  issued at:        {} by {issuer}",
                issued_at.to_rfc3339()
            )?;
            writeln!(out, "  key id:           {key_id}")?;
            match revocations_issued_at {
                Some(issued_at) => writeln!(
                    out,
                    "  checked against:  trust list generated at {}, revocation list issued at {issued_at}",
                    trust_list.generated_at.to_rfc3339()
                )?,
                None => writeln!(
                    out,
                    "  note:             certificate revocations were not checked (pass --revocations FILE); \
                     trust list generated at {}",
                    trust_list.generated_at.to_rfc3339()
                )?,
            }
        }
        Verification::Invalid { reason } => {
            writeln!(out, "INVALID: {reason}")?;
            writeln!(out, "  reason code:      {}", reason.code())?;
        }
    }
    Ok(())
}

/// Writes the vaccination record's fields, one per line.
fn write_record(out: &mut dyn Write, record: &VaccinationRecord) -> io::Result<()> {
    let gender = serde_json::to_value(record.gender).ok();
    let photo_id_type = serde_json::to_value(record.photo_id_type).ok();
    let as_text = |value: Option<serde_json::Value>| {
        value
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };

    writeln!(out, "  certificate id:   {}", record.certificate_id)?;
    writeln!(
        out,
        "  beneficiary:      {} (born {}, {})",
        record.beneficiary_name,
        record.year_of_birth,
        as_text(gender)
    )?;
    writeln!(
        out,
        "  photo id:         {} {}",
        as_text(photo_id_type),
        record.photo_id_masked
    )?;
    writeln!(out, "  reference id:     {}", record.beneficiary_id)?;
    writeln!(
        out,
        "  vaccine:          {} ({}), dose {} of {}",
        record.vaccine, record.manufacturer, record.dose_number, record.total_doses
    )?;
    writeln!(out, "  date:             {}", record.vaccination_date)?;
    writeln!(
        out,
        "  centre:           {}, {}, {}",
        record.centre_name, record.district, record.state
    )?;
    writeln!(out, "  vaccinator:       {}", record.vaccinator_id)?;
    writeln!(out, "  batch:            {}", record.batch)?;
    writeln!(
        out,
        "  ledger positions: CodeVerified {}, DoseAdministered {}",
        record.code_verified_position, record.dose_position
    )?;
    Ok(())
}
