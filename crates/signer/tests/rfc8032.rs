//! Ed25519 test vectors from RFC 8032 section 7.1 (TEST 1, 2, 3 and TEST SHA(abc)), run through
//! the ed25519-dalek calls that the signer uses.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

/// One RFC 8032 section 7.1 vector, all fields in hex.
struct Vector {
    name: &'static str,
    secret_key: &'static str,
    public_key: &'static str,
    message: &'static str,
    signature: &'static str,
}

const VECTORS: [Vector; 4] = [
    Vector {
        name: "TEST 1",
        secret_key: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        public_key: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        message: "",
        signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    },
    Vector {
        name: "TEST 2",
        secret_key: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        public_key: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        message: "72",
        signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    },
    Vector {
        name: "TEST 3",
        secret_key: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        public_key: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        message: "af82",
        signature: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    },
    Vector {
        name: "TEST SHA(abc)",
        secret_key: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        public_key: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        message: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        signature: "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    },
];

fn signing_key(vector: &Vector) -> SigningKey {
    let bytes: [u8; 32] = hex::decode(vector.secret_key).unwrap().try_into().unwrap();
    SigningKey::from_bytes(&bytes)
}

#[test]
fn rfc8032_public_key_derivation() {
    for vector in &VECTORS {
        let derived = signing_key(vector).verifying_key();
        assert_eq!(
            hex::encode(derived.as_bytes()),
            vector.public_key,
            "{}",
            vector.name
        );
    }
}

#[test]
fn rfc8032_signatures_match() {
    for vector in &VECTORS {
        let message = hex::decode(vector.message).unwrap();
        let signature = signing_key(vector).sign(&message);
        assert_eq!(
            hex::encode(signature.to_bytes()),
            vector.signature,
            "{}",
            vector.name
        );
    }
}

#[test]
fn rfc8032_signatures_verify_strict() {
    for vector in &VECTORS {
        let public: [u8; 32] = hex::decode(vector.public_key).unwrap().try_into().unwrap();
        let key = VerifyingKey::from_bytes(&public).unwrap();
        let message = hex::decode(vector.message).unwrap();
        let signature = Signature::from_slice(&hex::decode(vector.signature).unwrap()).unwrap();
        assert!(
            key.verify_strict(&message, &signature).is_ok(),
            "{}",
            vector.name
        );
    }
}

#[test]
fn rfc8032_rejects_changed_message() {
    for vector in &VECTORS {
        let public: [u8; 32] = hex::decode(vector.public_key).unwrap().try_into().unwrap();
        let key = VerifyingKey::from_bytes(&public).unwrap();
        let mut message = hex::decode(vector.message).unwrap();
        message.push(0);
        let signature = Signature::from_slice(&hex::decode(vector.signature).unwrap()).unwrap();
        assert!(
            key.verify_strict(&message, &signature).is_err(),
            "{}",
            vector.name
        );
    }
}

#[test]
fn rfc8032_sha_abc_message_is_sha512_of_abc() {
    let digest = Sha512::digest(b"abc");
    assert_eq!(hex::encode(digest), VECTORS[3].message);
}
