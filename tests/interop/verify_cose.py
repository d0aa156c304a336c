"""Verify a vaxledger certificate with an implementation independent of the Rust code.

Reads the tagged COSE_Sign1 bytes and the issuer's raw Ed25519 public key, checks the
structure against RFC 9052 (tag 18, protected header with alg EdDSA (-8) and a kid, the
Sig_structure "Signature1"), verifies the signature with `cryptography`, decodes the CWT
claims (RFC 8392) and prints them as JSON on stdout. Exits non-zero with a message on stderr
when anything is wrong.

Usage: verify_cose.py COSE_FILE PUBLIC_KEY_FILE
"""

import hashlib
import json
import sys

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
CLAIM_ISS = 1
CLAIM_IAT = 6
CLAIM_CTI = 7
CLAIM_RECORD = -65537


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def main():
    cose_path, key_path = sys.argv[1], sys.argv[2]
    with open(cose_path, "rb") as handle:
        item = cbor2.loads(handle.read())
    with open(key_path, "rb") as handle:
        public_key = handle.read()

    if not isinstance(item, cbor2.CBORTag) or item.tag != COSE_SIGN1_TAG:
        fail("not a tagged COSE_Sign1 (tag 18)")
    protected_bytes, unprotected, payload, signature = item.value
    protected = cbor2.loads(protected_bytes)
    if protected.get(HEADER_ALG) != ALG_EDDSA:
        fail(f"alg is {protected.get(HEADER_ALG)!r}, expected EdDSA (-8)")
    kid = protected.get(HEADER_KID)
    expected_kid = hashlib.sha256(public_key).digest()[:8]
    if kid != expected_kid:
        fail("kid is not the first 8 bytes of SHA-256 of the public key")

    sig_structure = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, sig_structure)
    except InvalidSignature:
        fail("bad signature")

    claims = cbor2.loads(payload)
    record = claims[CLAIM_RECORD]
    print(json.dumps({
        "iss": claims[CLAIM_ISS],
        "iat": claims[CLAIM_IAT],
        "cti_hex": claims[CLAIM_CTI].hex(),
        "kid_hex": kid.hex(),
        "unprotected": {str(key): str(value) for key, value in unprotected.items()},
        "record": record,
    }, default=str))


if __name__ == "__main__":
    main()
