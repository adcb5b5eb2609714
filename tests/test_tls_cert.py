"""The libp2p TLS certificate: the spec's vectors, ours, and every refusal."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from guts.crypto import KeyPair
from guts.errors import HandshakeError, PeerIdMismatch
from guts.peer import PeerId
from guts.security.tls import (
    EXTENSION_OID,
    MAX_CERTIFICATE_SIZE,
    SIGNING_PREFIX,
    CertificateError,
    TlsError,
    TlsIdentity,
    UnsupportedHostKey,
    make_certificate,
    verify_certificate,
    verify_certificate_chain,
)
from guts.security.tls._cert import decode_signed_key, encode_signed_key

VECTORS = json.loads((Path(__file__).parent / "data" / "tls" / "spec_vectors.json").read_text())["vectors"]
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class EncodedKey:
    """Any libp2p PublicKey protobuf, for PeerId.from_public_key."""

    data: bytes

    def to_protobuf(self) -> bytes:
        return self.data


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def craft(
    keypair: KeyPair,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
    signed_spki: bytes | None = None,
    extension: bytes | None | bool = True,
    critical: bool = True,
    others: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    not_before: datetime.datetime = NOW - HOUR,
    not_after: datetime.datetime = NOW + 100 * 365 * 24 * HOUR,
    subject: str | None = None,
    issuer: str | None = None,
    hash_algorithm: hashes.HashAlgorithm = hashes.SHA256(),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate built by hand, to break one rule at a time."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(subject) if subject else x509.Name([]))
        .issuer_name(x509.Name.from_rfc4514_string(issuer) if issuer else x509.Name([]))
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if extension is True:
        signature = keypair.sign(SIGNING_PREFIX + (signed_spki if signed_spki is not None else spki(key)))
        extension = encode_signed_key(keypair.public_key.to_protobuf(), signature)
    if isinstance(extension, bytes):
        builder = builder.add_extension(x509.UnrecognizedExtension(EXTENSION_OID, extension), critical=critical)
    for value, is_critical in others:
        builder = builder.add_extension(value, critical=is_critical)
    return builder.sign(signer or key, hash_algorithm), key


# -- the spec's test vectors -------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_spec_vector(vector: dict[str, str]) -> None:
    certificate = bytes.fromhex(vector["certificate"])
    now = datetime.datetime.now(datetime.UTC)  # the vectors are valid 1975-4096
    if vector["expect"] == "ok":
        assert str(verify_certificate_chain([certificate], now=now)) == vector["peer_id"]
    elif vector["expect"] == "unsupported":
        # Guts identities are Ed25519: a clean, typed refusal, which still
        # says which peer the certificate claimed.
        with pytest.raises(UnsupportedHostKey) as info:
            verify_certificate_chain([certificate], now=now)
        assert str(PeerId.from_public_key(EncodedKey(info.value.public_key_protobuf))) == vector["peer_id"]
    else:
        with pytest.raises(CertificateError, match="signature is not valid") as refused:
            verify_certificate_chain([certificate], now=now)
        assert not isinstance(refused.value, UnsupportedHostKey)


def test_vectors_cover_every_case() -> None:
    assert sorted(v["expect"] for v in VECTORS) == ["invalid", "ok", "unsupported", "unsupported"]


def test_vectors_are_refused_outside_their_validity() -> None:
    certificate = bytes.fromhex(VECTORS[0]["certificate"])
    with pytest.raises(CertificateError, match="not valid before"):
        verify_certificate(certificate, now=datetime.datetime(1974, 12, 31, tzinfo=datetime.UTC))


# -- our certificate -----------------------------------------------------------


def test_fixed_keys_give_fixed_extension_bytes() -> None:
    keypair = KeyPair.from_seed(bytes(range(32)))
    key = ec.derive_private_key(0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF, ec.SECP256R1())
    certificate, _ = make_certificate(keypair, now=NOW, certificate_key=key)
    value = certificate.extensions.get_extension_for_oid(EXTENSION_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    assert value.value.hex() == (
        "306804240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b80440cf8880f8b266c0ec5ab34c"
        "075015fdd3d248df264531ee885d963fde51db67adae174244eb0688ecf1917af3fbbc8eda8f9211fe496de79fdd3176dea4bb1c07"
    )
    # The pinned bytes mean what they should: the host key's protobuf, and
    # its signature over the prefix and the certificate key's SPKI.
    host_key, signature = decode_signed_key(value.value)
    assert host_key == b"\x08\x01\x12\x20" + keypair.public_key.raw
    nacl.bindings.crypto_sign_open(signature + SIGNING_PREFIX + spki(key), keypair.public_key.raw)


def test_our_certificate_follows_go_and_js() -> None:
    keypair = KeyPair.generate()
    identity = TlsIdentity.generate(keypair, now=NOW)
    certificate = identity.certificate
    assert isinstance(identity.private_key.curve, ec.SECP256R1)
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)
    assert certificate.not_valid_before_utc == NOW - HOUR
    assert certificate.not_valid_after_utc == NOW + datetime.timedelta(days=36500)
    # js-libp2p reads extensions[0] only: ours is first (and only), critical.
    extensions = list(certificate.extensions)
    assert [e.oid for e in extensions] == [EXTENSION_OID]
    assert extensions[0].critical
    assert certificate.subject == certificate.issuer == x509.Name([])
    assert 0 < certificate.serial_number < 1 << 63
    assert verify_certificate_chain([der(certificate)], now=NOW) == keypair.peer_id
    assert verify_certificate_chain([der(certificate)], now=NOW, expected_peer=keypair.peer_id) == keypair.peer_id
    assert len(der(certificate)) < 500


def test_certificates_are_fresh_each_time() -> None:
    keypair = KeyPair.generate()
    one, two = TlsIdentity.generate(keypair), TlsIdentity.generate(keypair)
    assert spki(one.private_key) != spki(two.private_key)
    assert one.certificate.serial_number != two.certificate.serial_number


def test_make_certificate_wants_an_aware_time() -> None:
    with pytest.raises(ValueError):
        make_certificate(KeyPair.generate(), now=datetime.datetime(2026, 1, 1))


def test_non_critical_extension_is_accepted_as_go_sends_it() -> None:
    keypair = KeyPair.generate()
    certificate, _ = craft(keypair, critical=False)
    assert verify_certificate_chain([der(certificate)], now=NOW) == keypair.peer_id


def test_known_and_unknown_non_critical_extensions_are_ignored() -> None:
    keypair = KeyPair.generate()
    certificate, _ = craft(
        keypair,
        others=(
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
        ),
    )
    assert verify_certificate_chain([der(certificate)], now=NOW) == keypair.peer_id


# -- refusals --------------------------------------------------------------------


def refused(certificate: x509.Certificate | bytes, match: str, *, now: datetime.datetime = NOW) -> CertificateError:
    data = certificate if isinstance(certificate, bytes) else der(certificate)
    with pytest.raises(CertificateError, match=match) as info:
        verify_certificate_chain([data], now=now)
    assert isinstance(info.value, TlsError) and isinstance(info.value, HandshakeError)
    assert info.value.alert is not None
    return info.value


def test_wrong_peer_is_refused() -> None:
    certificate, _ = craft(KeyPair.generate())
    with pytest.raises(PeerIdMismatch):
        verify_certificate_chain([der(certificate)], now=NOW, expected_peer=KeyPair.generate().peer_id)


def test_chain_must_hold_exactly_one_certificate() -> None:
    certificate = der(craft(KeyPair.generate())[0])
    for chain in ([], [certificate, certificate]):
        with pytest.raises(CertificateError, match="exactly one"):
            verify_certificate_chain(chain, now=NOW)


def test_missing_extension_is_refused() -> None:
    refused(craft(KeyPair.generate(), extension=None)[0], "lacks the libp2p Public Key Extension")


def test_signature_over_another_key_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    refused(craft(KeyPair.generate(), signed_spki=spki(other))[0], "signature is not valid")


def test_signature_by_another_host_key_is_refused() -> None:
    keypair, impostor = KeyPair.generate(), KeyPair.generate()
    key = ec.generate_private_key(ec.SECP256R1())
    signature = impostor.sign(SIGNING_PREFIX + spki(key))
    extension = encode_signed_key(keypair.public_key.to_protobuf(), signature)
    refused(craft(keypair, key=key, extension=extension)[0], "signature is not valid")


def test_expired_and_not_yet_valid_are_refused() -> None:
    keypair = KeyPair.generate()
    expired, _ = craft(keypair, not_before=NOW - 48 * HOUR, not_after=NOW - HOUR)
    assert refused(expired, "expired").alert == 45
    early, _ = craft(keypair, not_before=NOW + HOUR, not_after=NOW + 48 * HOUR)
    refused(early, "not valid before")
    # The bounds themselves are inside the period.
    assert verify_certificate_chain([der(expired)], now=NOW - HOUR) == keypair.peer_id


def test_unknown_critical_extension_is_refused() -> None:
    other = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), True)
    refused(craft(KeyPair.generate(), others=(other,))[0], r"critical extension we do not understand \(1.2.3.4.5\)")


def test_bad_self_signature_is_refused() -> None:
    certificate, _ = craft(KeyPair.generate(), signer=ec.generate_private_key(ec.SECP256R1()))
    refused(certificate, "self-signature is not valid")


def test_certificate_issued_by_another_name_is_refused() -> None:
    certificate, _ = craft(KeyPair.generate(), subject="CN=peer", issuer="CN=someone else")
    refused(certificate, "not validly self-signed")


def test_short_hash_signature_is_refused() -> None:
    certificate, _ = craft(KeyPair.generate(), hash_algorithm=hashes.SHA224())
    refused(certificate, "under 256 bits")


def test_ed25519_certificate_key_is_accepted() -> None:
    """The spec lets a peer pick any certificate key TLS can verify."""
    keypair = KeyPair.generate()
    key = ed25519.Ed25519PrivateKey.generate()
    key_spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    extension = encode_signed_key(keypair.public_key.to_protobuf(), keypair.sign(SIGNING_PREFIX + key_spki))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - HOUR)
        .not_valid_after(NOW + HOUR)
        .add_extension(x509.UnrecognizedExtension(EXTENSION_OID, extension), critical=True)
        .sign(key, None)
    )
    assert verify_certificate_chain([der(certificate)], now=NOW) == keypair.peer_id


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"", "truncated"),
        (b"\x04\x00", "tag"),
        (b"\x30\x05\x04\x01a", "runs past"),
        (b"\x30\x03\x04\x01a\x00", "bytes after"),
        (b"\x30\x81\x03\x04\x01a", "not minimal"),
        (b"\x30\x85\x00\x00\x00\x00\x03", "bad length"),
        (b"\x30\x03\x04\x01a", "truncated"),
        (b"\x30\x09\x04\x01a\x04\x01b\x04\x01c", "more than two"),
        (b"\x30\x04\x04\x00\x04\x00", "impossible size"),
        (b"\x30\x06\x04\x01a\x04\x01b", "bad host key"),
    ],
)
def test_malformed_extension_is_refused(value: bytes, match: str) -> None:
    refused(craft(KeyPair.generate(), extension=value)[0], match)


def test_non_certificates_are_refused() -> None:
    refused(b"\x30\x03\x02\x01\x00", "does not parse")
    refused(b"garbage", "does not parse")
    refused(b"\x30" * (MAX_CERTIFICATE_SIZE + 1), "over")


def test_encode_signed_key_long_lengths_round_trip() -> None:
    host_key, signature = b"k" * 300, b"s" * 200
    assert decode_signed_key(encode_signed_key(host_key, signature)) == (host_key, signature)


# -- robustness: whatever the bytes, a typed refusal -------------------------------

OURS = TlsIdentity.generate(KeyPair.generate(), now=NOW)
OURS_DER = der(OURS.certificate)


def test_invalid_x509_version_is_refused() -> None:
    data = bytearray(OURS_DER)
    version = data.index(bytes.fromhex("a003020102")) + 4  # [0] EXPLICIT INTEGER 2 (v3)
    data[version] = 38
    refused(bytes(data), "does not parse")


def test_a_time_python_cannot_hold_is_refused() -> None:
    """notAfter in year 0000: cryptography parses it only when read."""
    data = bytearray(OURS_DER)
    not_after = data.index(b"\x18\x0f") + 2  # GeneralizedTime, YYYYMMDDHHMMSSZ
    data[not_after : not_after + 4] = b"0000"
    refused(bytes(data), "year 0 is out of range")


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, len(OURS_DER) - 1), st.binary(max_size=4)), min_size=1, max_size=3))
def test_mutated_certificates_are_refused_cleanly(edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(OURS_DER)
    for position, replacement in edits:
        data[position : position + 1] = replacement
    try:
        peer = verify_certificate_chain([bytes(data)], now=NOW)
    except CertificateError:
        return
    # Accepted: then it still says who it said (the self-signature covers it).
    assert peer == OURS.keypair.peer_id


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=600))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    with pytest.raises(CertificateError):
        verify_certificate_chain([data], now=NOW)
