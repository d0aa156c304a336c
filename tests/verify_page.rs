//! The public `/verify` page on the real server: pasted text, uploaded images and PDFs, and HTML
//! escaping. A table of bad inputs must each get a clear reason, never a 500. A headless Chromium
//! run uploads a QR image through the page's form.
//!
//! The Chromium test needs /usr/bin/chromium (Debian's `chromium`); without it the test prints
//! a message and skips, unless CI=true, where it fails.

mod common;

use std::path::Path;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A page response: status, headers of interest and body.
struct Page {
    status: StatusCode,
    content_type: String,
    content_security_policy: String,
    body: String,
}

impl Page {
    /// Returns the `data-status` of the result section, or "" when there is none.
    fn status_attribute(&self) -> &str {
        attribute(&self.body, "data-status")
    }

    /// Returns the `data-reason` of the result section, or "" when there is none.
    fn reason(&self) -> &str {
        attribute(&self.body, "data-reason")
    }
}

fn attribute<'a>(body: &'a str, name: &str) -> &'a str {
    let marker = format!("{name}=\"");
    let Some(start) = body.find(&marker).map(|index| index + marker.len()) else { return "" };
    let end = body[start..].find('"').map_or(body.len(), |offset| start + offset);
    &body[start..end]
}

/// One part of a multipart form.
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a [u8]),
}

/// Builds a multipart/form-data body, as a browser sends the page's forms.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----vaxledgertestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
                body.extend_from_slice(value.as_bytes());
            }
            Part::File(name, file_name, bytes) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(server: &TestServer, content_type: &str, body: Vec<u8>) -> Page {
    let response = server
        .client
        .post(format!("{}/verify", server.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    to_page(response).await
}

async fn to_page(response: reqwest::Response) -> Page {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let status = response.status();
    let content_type = header("content-type");
    let content_security_policy = header("content-security-policy");
    Page { status, content_type, content_security_policy, body: response.text().await.unwrap() }
}

async fn post_text(server: &TestServer, text: &str) -> Page {
    let (content_type, body) = multipart(&[Part::Text("qr_text", text), Part::File("file", "", b"")]);
    post_form(server, &content_type, body).await
}

async fn post_file(server: &TestServer, file_name: &str, bytes: &[u8]) -> Page {
    let (content_type, body) = multipart(&[Part::Text("qr_text", ""), Part::File("file", file_name, bytes)]);
    post_form(server, &content_type, body).await
}

/// Issues a certificate through the API and returns its QR text and the citizen's token.
async fn issue_certificate(server: &TestServer, mobile: &str, name: &str) -> (String, String) {
    let centre_id = server.centre("PHC Kothrud", "Pune").await;
    let session_id = server.session_today(&centre_id, 10).await;
    let citizen = server.citizen(mobile).await;
    let beneficiary_id = server.beneficiary(&citizen, name).await;
    let (appointment_id, code) = server.book(&citizen, &beneficiary_id, &session_id).await;
    let verifier = server.staff_token("verifier", Some(&centre_id)).await;
    server.post_ok(&format!("/api/v1/appointments/{appointment_id}/verification"), &verifier, json!({"code": code})).await;
    let dosed = server.post_ok(&format!("/api/v1/appointments/{appointment_id}/doses"), &verifier, json!({"batch": "4121Z025"})).await;
    let certificate_id = dosed["certificate_id"].as_str().unwrap();
    let (_, certificate) = server.call(Method::GET, &format!("/api/v1/certificates/{certificate_id}"), Some(&citizen), None).await;
    (certificate["qr_text"].as_str().unwrap().to_owned(), citizen)
}

/// Encodes bytes as base45 (RFC 9285), to build QR texts with a chosen broken payload.
fn base45(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    let mut text = String::new();
    for chunk in bytes.chunks(2) {
        let mut value = chunk.iter().fold(0usize, |acc, byte| acc * 256 + usize::from(*byte));
        let digits = if chunk.len() == 2 { 3 } else { 2 };
        for _ in 0..digits {
            text.push(char::from(ALPHABET[value % 45]));
            value /= 45;
        }
    }
    text
}

/// Returns the same certificate re-signed with a key that is in no trust list.
fn resigned_with_unknown_key(qr_text: &str, server_trust: &signer::TrustList) -> String {
    let signer::Verification::Valid { record, issuer, issued_at, .. } =
        signer::verify_qr(qr_text, server_trust, &Default::default(), chrono::Utc::now())
    else {
        panic!("the server's certificate must verify");
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = signer::KeyRing::open_or_create_at(dir.path(), issued_at - chrono::Duration::days(1)).unwrap();
    let claims = signer::CertificateClaims { issuer, issued_at, certificate_id: record.certificate_id, record };
    let cose = signer::certificate::sign_certificate(&keys.active_key().unwrap(), &claims).unwrap();
    signer::encode_qr(&cose)
}

/// Returns the certificate with the last byte of its signature changed.
fn with_bad_signature(qr_text: &str) -> String {
    let mut cose = signer::decode_qr(qr_text).unwrap();
    let last = cose.len() - 1;
    cose[last] ^= 0x01;
    signer::encode_qr(&cose)
}

async fn trust_list(server: &TestServer) -> signer::TrustList {
    let text = server.client.get(format!("{}/api/v1/trust-list", server.base)).send().await.unwrap().text().await.unwrap();
    signer::TrustList::from_json(&text).unwrap()
}

#[tokio::test]
async fn verify_page_get_is_self_contained() {
    let server = TestServer::start().await;
    let response = server.client.get(format!("{}/verify", server.base)).send().await.unwrap();
    let page = to_page(response).await;

    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(page.content_security_policy.starts_with("default-src 'none'"), "{}", page.content_security_policy);
    assert!(page.body.contains("Verify a vaccination certificate"));
    assert!(page.body.contains("टीकाकरण प्रमाणपत्र सत्यापित करें"));
    assert!(page.body.contains("name=\"qr_text\""));
    assert!(page.body.contains("type=\"file\""));
    assert!(!page.body.contains("<script"), "no script");
    assert!(!page.body.contains("src="), "no external resource");
    assert!(!page.body.contains("<link"), "no stylesheet link");
    assert_eq!(page.status_attribute(), "", "no result before a submission");
}

#[tokio::test]
async fn verify_page_accepts_every_input_form() {
    let server = TestServer::start().await;
    let (qr_text, citizen) = issue_certificate(&server, "9810000001", "Asha Devi").await;

    let page = post_text(&server, &format!("  {qr_text}\n")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.status_attribute(), "valid", "pasted text");
    assert!(page.body.contains("VALID / <span lang=\"hi\">मान्य</span>"));
    assert!(page.body.contains("Asha Devi"));

    let urlencoded = format!("qr_text={}", qr_text.replace('%', "%25").replace('+', "%2B").replace(' ', "+").replace('$', "%24"));
    let page = post_form(&server, "application/x-www-form-urlencoded", urlencoded.into_bytes()).await;
    assert_eq!(page.status_attribute(), "valid", "urlencoded form");

    let png = documents::qr_png(&qr_text).unwrap();
    let page = post_file(&server, "qr.png", &png).await;
    assert_eq!(page.status_attribute(), "valid", "PNG upload");

    let certificate_id = signer::verify_qr(&qr_text, &trust_list(&server).await, &Default::default(), chrono::Utc::now());
    let signer::Verification::Valid { record, .. } = certificate_id else { panic!("valid") };
    let pdf = server
        .client
        .get(format!("{}/api/v1/certificates/{}/pdf", server.base, record.certificate_id))
        .bearer_auth(&citizen)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let page = post_file(&server, "certificate.pdf", &pdf).await;
    assert_eq!(page.status_attribute(), "valid", "PDF upload");
}

#[tokio::test]
async fn verify_page_bad_inputs_get_reasons() {
    let server = TestServer::start().await;
    let (qr_text, citizen) = issue_certificate(&server, "9810000002", "Ravi Kumar").await;
    let trust = trust_list(&server).await;

    let other_scheme = documents::qr_png("HC1:6BFOXN*TS0BI$ZD.P9UPBWK9%1").unwrap();
    // Base45 text whose length leaves one character over a group of three cannot be valid.
    let cut = (1..).find(|cut| (qr_text.len() - "VXL1:".len() - cut) % 3 == 1).unwrap();
    let truncated = &qr_text[..qr_text.len() - cut];
    let wrong_prefix = qr_text.replacen("VXL1:", "VXL2:", 1);
    let corrupt_zlib = format!("VXL1:{}", base45(b"this is not zlib data at all"));
    let not_cose = signer::encode_qr(&[0xa1, 0x01, 0x02]);
    let unknown_key = resigned_with_unknown_key(&qr_text, &trust);
    let bad_signature = with_bad_signature(&qr_text);
    let blank_png = {
        let mut png = Vec::new();
        image::GrayImage::from_pixel(400, 300, image::Luma([255]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    };
    let slip_pdf = {
        let (_, beneficiaries) = server.call(Method::GET, "/api/v1/beneficiaries", Some(&citizen), None).await;
        let appointment_id = beneficiaries[0]["appointments"][0]["appointment_id"].as_str().unwrap().to_owned();
        let response = server
            .client
            .get(format!("{}/api/v1/appointments/{appointment_id}/slip", server.base))
            .bearer_auth(&citizen)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap().to_vec()
    };
    let huge = vec![b'A'; 6 * 1024 * 1024];
    let binary = vec![0x00, 0xff, 0xfe, 0x80, 0x81];

    struct Case<'a> {
        name: &'a str,
        text: Option<&'a str>,
        file: Option<&'a [u8]>,
        reason: &'a str,
        detail: &'a str,
    }
    let cases = [
        Case { name: "QR of another scheme", text: None, file: Some(&other_scheme), reason: "malformed", detail: "must start with VXL1:" },
        Case { name: "truncated base45", text: Some(truncated), file: None, reason: "malformed", detail: "invalid base45" },
        Case { name: "wrong prefix", text: Some(&wrong_prefix), file: None, reason: "malformed", detail: "must start with VXL1:" },
        Case { name: "corrupt zlib", text: Some(&corrupt_zlib), file: None, reason: "malformed", detail: "invalid zlib data" },
        Case { name: "CBOR that is not COSE_Sign1", text: Some(&not_cose), file: None, reason: "malformed", detail: "not a COSE_Sign1" },
        Case { name: "unknown key id", text: Some(&unknown_key), file: None, reason: "unknown_key", detail: "unknown key" },
        Case { name: "bad signature", text: Some(&bad_signature), file: None, reason: "bad_signature", detail: "bad signature" },
        Case { name: "huge upload", text: None, file: Some(&huge), reason: "too_large", detail: "more than the maximum" },
        Case { name: "image with no QR", text: None, file: Some(&blank_png), reason: "no_qr_code", detail: "no QR code" },
        Case { name: "PDF that is not ours", text: None, file: Some(&slip_pdf), reason: "pdf_not_a_certificate", detail: "not a vaxledger certificate" },
        Case { name: "broken PDF", text: None, file: Some(b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"), reason: "pdf_unreadable", detail: "PDF could not be read" },
        Case { name: "truncated PNG", text: None, file: Some(&other_scheme[..other_scheme.len() / 2]), reason: "image_unreadable", detail: "image could not be read" },
        Case { name: "binary file", text: None, file: Some(&binary), reason: "unsupported_type", detail: "not a PDF, PNG or JPEG" },
        Case { name: "empty form", text: Some(""), file: None, reason: "empty", detail: "empty" },
    ];

    for case in &cases {
        let page = match (case.text, case.file) {
            (Some(text), None) => post_text(&server, text).await,
            (None, Some(bytes)) => post_file(&server, "upload.bin", bytes).await,
            _ => unreachable!("each case has text or a file"),
        };
        assert!(page.status.is_client_error() || page.status == StatusCode::OK, "{}: status {}", case.name, page.status);
        assert_eq!(page.status_attribute(), "invalid", "{}", case.name);
        assert_eq!(page.reason(), case.reason, "{}", case.name);
        assert!(page.body.contains(case.detail), "{}: {:?} missing", case.name, case.detail);
        assert!(page.body.contains("INVALID / <span lang=\"hi\">अमान्य</span>"), "{}", case.name);
    }
}

#[tokio::test]
async fn verify_page_escapes_echoed_text() {
    let server = TestServer::start().await;
    let injected = "<script>alert('x')</script><img src=x onerror=alert(1)>";

    let page = post_text(&server, injected).await;

    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.reason(), "malformed");
    assert!(!page.body.contains("<script>alert"), "echoed text is escaped");
    assert!(!page.body.contains("<img src=x"), "echoed text is escaped");
    assert!(page.body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
}

#[tokio::test]
async fn verify_page_rejects_other_content_types() {
    let server = TestServer::start().await;

    let page = post_form(&server, "application/json", b"{\"qr_text\": \"VXL1:\"}".to_vec()).await;

    assert_eq!(page.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(page.reason(), "unsupported_type");
}

/// Returns whether headless Chromium is installed; panics under CI=true when it is not.
fn chromium_available() -> bool {
    let found = Path::new("/usr/bin/chromium").exists();
    if !found {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "/usr/bin/chromium is missing; install Debian's chromium");
        println!("skipping: /usr/bin/chromium not found; install Debian's chromium to run this test");
    }
    found
}

/// Loads a local page in headless Chromium that puts `png` into the verify page's file input
/// and submits the form, as a person choosing a file would, and returns the resulting DOM.
///
/// Chromium runs as a Tokio child process, because the server under test shares this test's
/// single-threaded runtime and a blocking wait would stall it.
async fn upload_with_chromium(base: &str, png: &[u8], work: &Path) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(png);
    let driver = format!(
        r#"<!DOCTYPE html><html><body>
<form id="upload" method="post" action="{base}/verify" enctype="multipart/form-data">
<input type="file" id="file" name="file"></form>
<script>
const bytes = Uint8Array.from(atob("{encoded}"), c => c.charCodeAt(0));
const files = new DataTransfer();
files.items.add(new File([bytes], "qr.png", {{ type: "image/png" }}));
document.getElementById("file").files = files.files;
document.getElementById("upload").submit();
</script></body></html>"#
    );
    let driver_path = work.join("upload.html");
    std::fs::write(&driver_path, driver).unwrap();
    let profile = work.join("profile");

    let mut command = tokio::process::Command::new("/usr/bin/chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", driver_path.display()))
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("chromium finished within 120 s")
        .unwrap();
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn verify_page_chromium_upload() {
    if !chromium_available() {
        return;
    }
    let server = TestServer::start().await;
    let (qr_text, _) = issue_certificate(&server, "9810000003", "Meera Nair").await;
    let work = tempfile::tempdir().unwrap();

    let genuine = documents::qr_png(&qr_text).unwrap();
    let dom = upload_with_chromium(&server.base, &genuine, work.path()).await;
    assert!(dom.contains("data-status=\"valid\""), "{dom}");
    assert!(dom.contains("Meera Nair"), "{dom}");

    let tampered = documents::qr_png(&with_bad_signature(&qr_text)).unwrap();
    let dom = upload_with_chromium(&server.base, &tampered, work.path()).await;
    assert!(dom.contains("data-status=\"invalid\""), "{dom}");
    assert!(dom.contains("data-reason=\"bad_signature\""), "{dom}");
    assert!(dom.contains("The signature does not match"), "{dom}");
}

#[tokio::test]
async fn verify_page_shows_revoked_certificate() {
    let server = TestServer::start().await;
    let (qr_text, citizen) = issue_certificate(&server, "9810000009", "Ravi Shankar").await;
    let verification = signer::verify_qr(&qr_text, &trust_list(&server).await, &Default::default(), chrono::Utc::now());
    let signer::Verification::Valid { record, .. } = verification else { panic!("valid before revocation") };
    assert_eq!(post_text(&server, &qr_text).await.status_attribute(), "valid");

    let investigator = server.staff_token("investigator", None).await;
    let path = format!("/api/v1/certificates/{}/revocation", record.certificate_id);
    server.post_ok(&path, &investigator, json!({"reason": "fraud", "note": "beneficiary was not at the centre"})).await;

    let page = post_text(&server, &qr_text).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.status_attribute(), "invalid", "{}", page.body);
    assert_eq!(page.reason(), "revoked_certificate");
    let pdf = server
        .client
        .get(format!("{}/api/v1/certificates/{}/pdf", server.base, record.certificate_id))
        .bearer_auth(&citizen)
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), StatusCode::CONFLICT, "a revoked certificate is not served as a PDF");
}
