//! Published Merkle proof vectors from transparency-dev/merkle (`testdata/inclusion` and
//! `testdata/consistency`), read unchanged at test time from the vectors folder beside the
//! repository (see [`merkle_vectors_dir`]).
//!
//! Each JSON file gives a proof, the sizes, the hashes in base64 and `wantErr`. Every file must
//! verify or fail exactly as its `wantErr` states. When the vectors folder is missing these tests
//! fail in CI (`CI=true`) and skip elsewhere with a printed message.
//!
//! The `consistency/additional` files expect every proof from size 0 to fail, including size 0 to
//! size 0 with equal roots, so `verify_consistency` rejects `size1 == 0` before anything else.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::Value;
use store::merkle::{verify_consistency, verify_inclusion, ProofError};

/// Minimum number of files in each folder, so that a moved or emptied folder fails the test
/// instead of passing with nothing checked. The published folders contain 98 each.
const MIN_FILES_PER_KIND: usize = 90;

/// Returns the vectors folder, `None` (after a printed notice) when it is missing outside CI;
/// panics when it is missing in CI.
fn merkle_vectors_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/merkle");
    if dir.is_dir() {
        return Some(dir);
    }

    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    assert!(
        !in_ci,
        "test vectors folder {} is missing; CI must provide ../shared/vectors beside the clone",
        dir.display()
    );
    eprintln!(
        "SKIPPED: test vectors folder {} is missing; place the shared vectors beside the \
         repository to run this test",
        dir.display()
    );
    None
}

/// Lists every `.json` file under `dir`, recursively, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = fs::read_dir(&folder)
            .unwrap_or_else(|err| panic!("listing {}: {err}", folder.display()));
        for entry in entries {
            let path = entry.expect("read a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "json")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

fn number(json: &Value, field: &str, path: &Path) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: {field} is not an unsigned integer", path.display()))
}

fn bytes(json: &Value, field: &str, path: &Path) -> Vec<u8> {
    let text = json[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {field} is not a string", path.display()));
    BASE64
        .decode(text)
        .unwrap_or_else(|err| panic!("{}: {field} is not base64: {err}", path.display()))
}

/// Decodes the `proof` array; `null` is an empty proof.
fn proof(json: &Value, path: &Path) -> Vec<Vec<u8>> {
    match &json["proof"] {
        Value::Null => Vec::new(),
        Value::Array(hashes) => hashes
            .iter()
            .map(|hash| {
                let text = hash
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: a proof hash is not a string", path.display()));
                BASE64.decode(text).unwrap_or_else(|err| {
                    panic!("{}: a proof hash is not base64: {err}", path.display())
                })
            })
            .collect(),
        other => panic!(
            "{}: proof is {other}, expected an array or null",
            path.display()
        ),
    }
}

fn want_err(json: &Value, path: &Path) -> bool {
    json["wantErr"]
        .as_bool()
        .unwrap_or_else(|| panic!("{}: wantErr is not a boolean", path.display()))
}

#[test]
fn inclusion_vectors() {
    let Some(dir) = merkle_vectors_dir() else {
        return;
    };
    let files = json_files(&dir.join("inclusion"));
    assert!(
        files.len() >= MIN_FILES_PER_KIND,
        "found only {} inclusion vectors",
        files.len()
    );

    let mut wrong = Vec::new();
    for path in &files {
        let json = read_json(path);
        let result = verify_inclusion(
            &bytes(&json, "leafHash", path),
            number(&json, "leafIdx", path),
            number(&json, "treeSize", path),
            &proof(&json, path),
            &bytes(&json, "root", path),
        );
        if result.is_err() != want_err(&json, path) {
            wrong.push(format!("{}: got {result:?}", path.display()));
        }
    }

    assert!(
        wrong.is_empty(),
        "vectors with the wrong outcome:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn consistency_vectors() {
    let Some(dir) = merkle_vectors_dir() else {
        return;
    };
    let files = json_files(&dir.join("consistency"));
    assert!(
        files.len() >= MIN_FILES_PER_KIND,
        "found only {} consistency vectors",
        files.len()
    );

    let mut wrong = Vec::new();
    for path in &files {
        let json = read_json(path);
        let result = verify_consistency(
            number(&json, "size1", path),
            number(&json, "size2", path),
            &proof(&json, path),
            &bytes(&json, "root1", path),
            &bytes(&json, "root2", path),
        );
        if result.is_err() != want_err(&json, path) {
            wrong.push(format!("{}: got {result:?}", path.display()));
        }
    }

    assert!(
        wrong.is_empty(),
        "vectors with the wrong outcome:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn happy_paths_name_the_mismatch() {
    let Some(dir) = merkle_vectors_dir() else {
        return;
    };

    // A flipped bit in the expected root of a passing vector must fail with the root error,
    // not with a length or shape error.
    let mut checked = 0;
    for path in json_files(&dir.join("inclusion")) {
        let json = read_json(&path);
        if want_err(&json, &path)
            || path
                .file_name()
                .is_some_and(|name| name != "happy-path.json")
        {
            continue;
        }
        let mut root = bytes(&json, "root", &path);
        root[0] ^= 1;
        let result = verify_inclusion(
            &bytes(&json, "leafHash", &path),
            number(&json, "leafIdx", &path),
            number(&json, "treeSize", &path),
            &proof(&json, &path),
            &root,
        );
        assert_eq!(result, Err(ProofError::RootMismatch), "{}", path.display());
        checked += 1;
    }

    for path in json_files(&dir.join("consistency")) {
        let json = read_json(&path);
        let size1 = number(&json, "size1", &path);
        let size2 = number(&json, "size2", &path);
        if want_err(&json, &path) || size1 == size2 {
            continue;
        }
        let mut root2 = bytes(&json, "root2", &path);
        root2[0] ^= 1;
        let result = verify_consistency(
            size1,
            size2,
            &proof(&json, &path),
            &bytes(&json, "root1", &path),
            &root2,
        );
        assert_eq!(
            result,
            Err(ProofError::SecondRootMismatch),
            "{}",
            path.display()
        );
        checked += 1;
    }

    assert!(
        checked >= 8,
        "found only {checked} passing vectors to mutate"
    );
}
