//! `cert verify` on certificates signed with a real key ring in a temporary folder.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use domain::events::{Gender, PhotoIdType};
use domain::ids::{BeneficiaryId, CertificateId};
use replay_tools::{run_cert_to, CertCommand, CertOutcome, VerifyArgs};
use signer::certificate::sign_certificate;
use signer::{encode_qr, CertificateClaims, KeyRing, VaccinationRecord};
use uuid::Uuid;

/// The `cert` subcommand as the root binary mounts it.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cert: CertCommand,
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 5, 10, 18, 0, 0).unwrap()
}

fn claims() -> CertificateClaims {
    let certificate_id = CertificateId::new(Uuid::new_v4());
    CertificateClaims {
        issuer: "vaxledger".to_owned(),
        issued_at: now(),
        certificate_id,
        record: VaccinationRecord {
            beneficiary_name: "Ravi Shankar".to_owned(),
            year_of_birth: 1960,
            gender: Gender::Male,
            photo_id_type: PhotoIdType::VoterId,
            photo_id_masked: "XXXXXX9876".to_owned(),
            beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
            vaccine: "COVAXIN".to_owned(),
            manufacturer: "Bharat Biotech".to_owned(),
            dose_number: 2,
            total_doses: 2,
            vaccination_date: now().date_naive(),
            centre_name: "UPHC Saket".to_owned(),
            district: "South Delhi".to_owned(),
            state: "Delhi".to_owned(),
            vaccinator_id: "vaccinator-12".to_owned(),
            batch: "BB21044".to_owned(),
            certificate_id,
            code_verified_position: 41,
            dose_position: 42,
        },
    }
}

/// A signed certificate's QR text and a trust-list file, in a temporary folder.
struct Fixture {
    qr_text: String,
    claims: CertificateClaims,
    trust_list: PathBuf,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys =
        KeyRing::open_or_create_at(dir.path().join("keys"), now() - Duration::days(1)).unwrap();
    let claims = claims();
    let cose = sign_certificate(&keys.active_key().unwrap(), &claims).unwrap();
    let trust_list = dir.path().join("trust-list.json");
    fs::write(&trust_list, keys.trust_list(now()).to_json()).unwrap();
    Fixture {
        qr_text: encode_qr(&cose),
        claims,
        trust_list,
        dir,
    }
}

fn verify_command(input: &str, trust_list: &Path) -> CertCommand {
    CertCommand::Verify(VerifyArgs {
        input: input.to_owned(),
        trust_list: trust_list.to_path_buf(),
        trust_key: None,
        revocations: None,
        json: false,
    })
}

fn run(command: CertCommand) -> (anyhow::Result<CertOutcome>, String) {
    let mut out = Vec::new();
    let result = run_cert_to(command, &mut out, now());
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn verify_qr_text_is_valid() {
    let fixture = fixture();

    let (result, output) = run(verify_command(&fixture.qr_text, &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Valid);
    assert!(output.starts_with("VALID\n"), "{output}");
    assert!(
        output.contains("Ravi Shankar (born 1960, male)"),
        "{output}"
    );
    assert!(
        output.contains("COVAXIN (Bharat Biotech), dose 2 of 2"),
        "{output}"
    );
    assert!(output.contains("date:             2021-05-10"), "{output}");
    assert!(
        output.contains("CodeVerified 41, DoseAdministered 42"),
        "{output}"
    );
}

#[test]
fn verify_tampered_text_is_invalid() {
    let fixture = fixture();
    let mut tampered = fixture.qr_text.clone();
    let middle = tampered.len() / 2;
    let replacement = if &tampered[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(middle..=middle, replacement);

    let (result, output) = run(verify_command(&tampered, &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Invalid);
    assert!(output.starts_with("INVALID: "), "{output}");
}

#[test]
fn verify_unknown_key_reports_reason() {
    let fixture = fixture();
    let other = self::fixture();

    let (result, output) = run(verify_command(&fixture.qr_text, &other.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Invalid);
    assert!(output.contains("reason code:      unknown_key"), "{output}");
}

#[test]
fn verify_reads_qr_text_file() {
    let fixture = fixture();
    let file = fixture.dir.path().join("certificate.txt");
    fs::write(&file, format!("{}\n", fixture.qr_text)).unwrap();

    let (result, _) = run(verify_command(file.to_str().unwrap(), &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Valid);
}

/// Writes the fixture's certificate as the server renders it and returns the PDF path.
fn certificate_pdf(fixture: &Fixture) -> PathBuf {
    let keys = KeyRing::open_or_create_at(fixture.dir.path().join("keys"), now()).unwrap();
    let document = documents::CertificateDocument {
        record: &fixture.claims.record,
        key_id: keys.active_key().unwrap().key_id(),
        issuer: &fixture.claims.issuer,
        issued_at: fixture.claims.issued_at,
        qr_text: &fixture.qr_text,
        verify_url: "http://127.0.0.1/verify",
    };
    let path = fixture.dir.path().join("certificate.pdf");
    fs::write(&path, documents::render_certificate_pdf(&document).unwrap()).unwrap();
    path
}

#[test]
fn verify_certificate_pdf_is_valid() {
    let fixture = fixture();
    let pdf = certificate_pdf(&fixture);

    let (result, output) = run(verify_command(pdf.to_str().unwrap(), &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Valid);
    assert!(output.contains("Ravi Shankar (born 1960, male)"), "{output}");
}

#[test]
fn verify_qr_png_is_valid() {
    let fixture = fixture();
    let file = fixture.dir.path().join("qr.png");
    fs::write(&file, documents::qr_png(&fixture.qr_text).unwrap()).unwrap();

    let (result, output) = run(verify_command(file.to_str().unwrap(), &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Valid);
    assert!(output.starts_with("VALID\n"), "{output}");
}

#[test]
fn verify_tampered_pdf_is_invalid() {
    let fixture = fixture();
    let pdf = certificate_pdf(&fixture);
    let edited = edit_qr_text_in_place(&fs::read(&pdf).unwrap(), &fixture.qr_text);
    fs::write(&pdf, edited).unwrap();

    let (result, output) = run(verify_command(pdf.to_str().unwrap(), &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Invalid);
    assert!(output.starts_with("INVALID: "), "{output}");
}

/// Changes one character of the QR text inside the PDF bytes, keeping the length, as an
/// attacker editing the file would.
fn edit_qr_text_in_place(pdf: &[u8], qr_text: &str) -> Vec<u8> {
    let start = pdf
        .windows(qr_text.len())
        .position(|window| window == qr_text.as_bytes())
        .expect("the QR text is stored uncompressed in the information dictionary");
    let mut edited = pdf.to_vec();
    let middle = start + qr_text.len() / 2;
    edited[middle] = if edited[middle] == b'A' { b'B' } else { b'A' };
    edited
}

#[test]
fn verify_garbage_pdf_errors_clearly() {
    let fixture = fixture();
    let file = fixture.dir.path().join("certificate.pdf");
    fs::write(&file, b"%PDF-1.7\n...").unwrap();

    let (result, _) = run(verify_command(file.to_str().unwrap(), &fixture.trust_list));

    let message = result.unwrap_err().to_string();
    assert!(message.contains("PDF file): the PDF could not be read"), "{message}");
    assert!(message.contains("pass the PDF downloaded from the server"), "{message}");
}

#[test]
fn verify_broken_png_errors_clearly() {
    let fixture = fixture();
    let file = fixture.dir.path().join("qr");
    fs::write(&file, b"\x89PNG\r\n\x1a\n rest").unwrap();

    let (result, _) = run(verify_command(file.to_str().unwrap(), &fixture.trust_list));

    let message = result.unwrap_err().to_string();
    assert!(message.contains("(PNG file): the image could not be read"), "{message}");
}

#[test]
fn verify_missing_named_file_errors() {
    let fixture = fixture();

    let (result, _) = run(verify_command(
        "/nonexistent/certificate.pdf",
        &fixture.trust_list,
    ));

    assert!(result.unwrap_err().to_string().contains("not found"));
}

#[test]
fn verify_wrong_prefix_text_is_invalid() {
    let fixture = fixture();

    let (result, output) = run(verify_command("HC1:NCFOXN%TS3DH", &fixture.trust_list));

    assert_eq!(result.unwrap(), CertOutcome::Invalid);
    assert!(output.contains("malformed"), "{output}");
}

#[test]
fn verify_bad_trust_list_errors_with_path() {
    let fixture = fixture();
    fs::write(&fixture.trust_list, "{}").unwrap();

    let (result, _) = run(verify_command(&fixture.qr_text, &fixture.trust_list));

    let message = format!("{:#}", result.unwrap_err());
    assert!(
        message.contains(&fixture.trust_list.display().to_string()),
        "{message}"
    );
}

#[test]
fn verify_json_output_has_status() {
    let fixture = fixture();
    let command = CertCommand::Verify(VerifyArgs {
        input: fixture.qr_text.clone(),
        trust_list: fixture.trust_list.clone(),
        trust_key: None,
        revocations: None,
        json: true,
    });

    let (result, output) = run(command);
    let json: serde_json::Value = serde_json::from_str(&output).unwrap();

    assert_eq!(result.unwrap(), CertOutcome::Valid);
    assert_eq!(json["status"], "valid");
    assert_eq!(json["record"]["vaccination_date"], "2021-05-10");
}

#[test]
fn cli_parses_verify_subcommand() {
    let cli =
        Cli::try_parse_from(["cert", "verify", "VXL1:ABC", "--trust-list", "trust.json"]).unwrap();

    let CertCommand::Verify(args) = cli.cert;
    assert_eq!(args.input, "VXL1:ABC");
    assert_eq!(args.trust_list, PathBuf::from("trust.json"));
    assert!(!args.json);
}

#[test]
fn cli_requires_trust_list() {
    assert!(Cli::try_parse_from(["cert", "verify", "VXL1:ABC"]).is_err());
}

#[test]
fn outcome_exit_codes_differ() {
    assert_eq!(
        format!("{:?}", CertOutcome::Valid.exit_code()),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
    assert_ne!(
        format!("{:?}", CertOutcome::Invalid.exit_code()),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
}
