//! Signed notes and checkpoints against the published example of Go's
//! `golang.org/x/mod/sumdb/note` package (`sumdb/note/note_test.go` in golang/mod): the
//! PeterNeumann and EnochRoot keys, their signatures of the same text, and the malformed notes
//! that Go's `Open` rejects. Ed25519 signatures are deterministic (RFC 8032), so signing the
//! example text with the example signer key must reproduce Go's note byte for byte.

use store::checkpoint::{
    parse_checkpoint, verify_checkpoint, Checkpoint, CheckpointError, KeyError, NoteError,
    NoteSigner, VerifierKey,
};

const PETER_VERIFIER_KEY: &str =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SIGNER_KEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VERIFIER_KEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIGNATURE: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_note() -> String {
    format!("{TEXT}\n{PETER_SIGNATURE}")
}

fn peter() -> VerifierKey {
    VerifierKey::parse(PETER_VERIFIER_KEY).expect("Peter's verifier key")
}

#[test]
fn verifier_key_parses() {
    let key = peter();
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(key.key_hash(), 0xc74f20a3);
    assert_eq!(key.to_string(), PETER_VERIFIER_KEY);
}

#[test]
fn signer_reproduces_go_note() {
    let signer = NoteSigner::parse(PETER_SIGNER_KEY).expect("Peter's signer key");
    assert_eq!(signer.verifier_key(), peter());
    assert_eq!(signer.to_signer_key_string(), PETER_SIGNER_KEY);
    assert_eq!(signer.sign_note(TEXT).expect("sign"), peter_note());
}

#[test]
fn go_note_verifies() {
    let note = peter().verify_note(&peter_note()).expect("verify");
    assert_eq!(note.text, TEXT);
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].key_hash, 0xc74f20a3);
}

#[test]
fn other_signatures_are_ignored() {
    let note = format!("{TEXT}\n{PETER_SIGNATURE}{ENOCH_SIGNATURE}");
    let enoch = VerifierKey::parse(ENOCH_VERIFIER_KEY).expect("Enoch's verifier key");

    assert!(peter().verify_note(&note).is_ok());
    assert!(enoch.verify_note(&note).is_ok());
}

#[test]
fn missing_key_is_unknown() {
    let enoch = VerifierKey::parse(ENOCH_VERIFIER_KEY).expect("Enoch's verifier key");
    let result = enoch.verify_note(&peter_note());
    assert_eq!(
        result,
        Err(NoteError::UnknownKey {
            name: "EnochRoot".to_owned(),
            key_hash: 0xaf0cfe78
        })
    );
}

#[test]
fn changed_text_fails() {
    let note = peter_note().replace("cryptography", "cryptographY");
    assert!(matches!(
        peter().verify_note(&note),
        Err(NoteError::BadSignature { .. })
    ));
}

#[test]
fn changed_signature_fails() {
    // Go's test inserts "ABCD" into the base64 signature at byte 60.
    let signature = format!("{}ABCD{}", &PETER_SIGNATURE[..60], &PETER_SIGNATURE[60..]);
    let note = format!("{TEXT}\n{signature}");
    assert!(matches!(
        peter().verify_note(&note),
        Err(NoteError::BadSignature { .. })
    ));
}

#[test]
fn malformed_notes_fail() {
    let bad_notes = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIGNATURE[..PETER_SIGNATURE.len() - 1]),
        format!("\x01{TEXT}\n{PETER_SIGNATURE}"),
        format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{TEXT}\n{PETER_SIGNATURE}Unexpected line.\n"),
        format!("{TEXT}\n{}", PETER_SIGNATURE.repeat(101)),
    ];
    for note in bad_notes {
        assert!(
            matches!(peter().verify_note(&note), Err(NoteError::Malformed(_))),
            "accepted {note:?}"
        );
    }
}

#[test]
fn mangled_verifier_keys_fail() {
    let key = PETER_VERIFIER_KEY.as_bytes();
    for start in 0..=key.len() {
        for end in start + 1..=key.len() {
            if start == 0 && end == key.len() {
                continue;
            }
            let part = &PETER_VERIFIER_KEY[start..end];
            assert!(VerifierKey::parse(part).is_err(), "accepted {part:?}");
        }
    }
    for index in 0..key.len() {
        let mut changed = key.to_vec();
        changed[index] += 1;
        let changed = String::from_utf8(changed).expect("ASCII stays UTF-8");
        assert!(
            VerifierKey::parse(&changed).is_err(),
            "accepted {changed:?}"
        );
    }
}

#[test]
fn mangled_signer_keys_fail() {
    let key = PETER_SIGNER_KEY.as_bytes();
    for start in 0..=key.len() {
        for end in start + 1..=key.len() {
            if start == 0 && end == key.len() {
                continue;
            }
            let part = &PETER_SIGNER_KEY[start..end];
            assert!(
                NoteSigner::parse(part).is_err(),
                "accepted a substring at {start}..{end}"
            );
        }
    }
    for index in 0..key.len() {
        let mut changed = key.to_vec();
        changed[index] += 1;
        let changed = String::from_utf8(changed).expect("ASCII stays UTF-8");
        assert!(
            NoteSigner::parse(&changed).is_err(),
            "accepted a change at byte {index}"
        );
    }
}

#[test]
fn key_with_wrong_algorithm_fails() {
    // From Go's test: algorithm byte 0x65 ('Z' in base64) with a key hash adjusted to match.
    let result =
        VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    assert!(
        matches!(
            result,
            Err(KeyError::UnknownAlgorithm {
                algorithm: 0x65,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn checkpoint_round_trip() {
    let signer = NoteSigner::generate("vaxledger/test").expect("signer");
    let checkpoint = Checkpoint::new("vaxledger/test", 42, [7; 32]);
    let note = checkpoint.sign(&signer).expect("sign");

    let verified = verify_checkpoint(&note, &signer.verifier_key()).expect("verify");
    assert_eq!(verified, checkpoint);
    let (parsed, signed) = parse_checkpoint(&note).expect("parse");
    assert_eq!(parsed, checkpoint);
    assert_eq!(signed.signatures[0].name, "vaxledger/test");

    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], "vaxledger/test");
    assert_eq!(lines[1], "42");
    assert_eq!(lines[3], "");
    assert!(
        lines[4].starts_with("\u{2014} vaxledger/test "),
        "{}",
        lines[4]
    );
}

#[test]
fn checkpoint_errors_are_typed() {
    let signer = NoteSigner::generate("vaxledger/test").expect("signer");
    let other = NoteSigner::generate("vaxledger/test").expect("other signer");
    let note = Checkpoint::new("vaxledger/test", 42, [7; 32])
        .sign(&signer)
        .expect("sign");

    let unknown = verify_checkpoint(&note, &other.verifier_key());
    assert!(
        matches!(unknown, Err(CheckpointError::UnknownKey { .. })),
        "{unknown:?}"
    );

    let grown = note.replacen("\n42\n", "\n43\n", 1);
    let bad = verify_checkpoint(&grown, &signer.verifier_key());
    assert!(
        matches!(bad, Err(CheckpointError::BadSignature { .. })),
        "{bad:?}"
    );

    let unsigned = verify_checkpoint("vaxledger/test\n42\n", &signer.verifier_key());
    assert!(
        matches!(unsigned, Err(CheckpointError::MalformedNote(_))),
        "{unsigned:?}"
    );

    let not_a_checkpoint = signer
        .sign_note("vaxledger/test\nforty-two\nAAAA\n")
        .expect("sign");
    let malformed = verify_checkpoint(&not_a_checkpoint, &signer.verifier_key());
    assert!(
        matches!(malformed, Err(CheckpointError::MalformedCheckpoint(_))),
        "{malformed:?}"
    );
}
