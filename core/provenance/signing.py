"""C2PA manifests on the videos this system makes: what made them, signed with the operator's key.

An operator signs with a certificate chain and its private key (PEM files, e.g. from a Secret). Without one, a
development key is made once and kept beside the avatars: a certificate authority and a signer both named
"DEVELOPMENT" — manifests signed with it prove nothing to anyone else, and readers report them as untrusted.
"""

import datetime
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.atomic import write_bytes

GENERATOR = "conversational-avatar"
GENERATED_BY_A_MODEL = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
DEVELOPMENT_SIGNER = "DEVELOPMENT signer (not for production)"
ASSERTION = "org.conversational-avatar.generation"  # what made the media: avatar, models, audio's origin


@dataclass(frozen=True)
class SigningKey:
    chain_pem: bytes  # the signer's certificate first, then the ones that issued it
    key_pem: bytes

    @classmethod
    def from_files(cls, chain: str | Path, key: str | Path) -> "SigningKey":
        return cls(Path(chain).read_bytes(), Path(key).read_bytes())

    @classmethod
    def development(cls, folder: str | Path) -> "SigningKey":
        """The development key kept in `folder`, made there the first time."""
        path = Path(folder) / "development-signer.pem"  # key and chain in one file: written whole, never mismatched
        if not path.is_file():
            made = _development_key()
            write_bytes(path, made.key_pem + made.chain_pem)
            os.chmod(path, 0o600)
        text = path.read_bytes()
        start = text.index(b"-----BEGIN CERTIFICATE-----")
        return cls(text[start:], text[:start])

    @property
    def signer_name(self) -> str:
        leaf = x509.load_pem_x509_certificate(self.chain_pem)
        return leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def generation_manifest(title: str, avatar_id: str, models: dict[str, str], audio: str, consent: dict) -> dict:
    """The manifest of a video whose frames a model made: `models` names each model by its role, `audio` says
    where the sound came from, `consent` whose face it is and the hash of their consent's evidence."""
    return {
        "claim_generator_info": [{"name": GENERATOR, "version": "1"}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": GENERATED_BY_A_MODEL,
                            "softwareAgent": {"name": GENERATOR},
                            "description": "a face animated by a speech-driven model",
                        }
                    ]
                },
            },
            {"label": ASSERTION,
             "data": {"avatar_id": avatar_id, "models": models, "audio": audio, "consent": consent}},
        ],
    }


def sign(media: bytes, mime: str, manifest: dict, key: SigningKey) -> bytes:
    """`media` with `manifest` embedded and signed (ES256)."""
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, key.chain_pem, key.key_pem, None)
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, mime, io.BytesIO(media), out)
    return out.getvalue()


def _development_key() -> SigningKey:
    now = datetime.datetime.now(datetime.timezone.utc)
    authority_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, GENERATOR)])

    def usage(sign_certificates: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=not sign_certificates, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=sign_certificates,
                             crl_sign=sign_certificates, encipher_only=False, decipher_only=False)

    authority_name = name("DEVELOPMENT certificate authority (not for production)")
    authority = (
        x509.CertificateBuilder().subject_name(authority_name).issuer_name(authority_name)
        .public_key(authority_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(authority_key.public_key()), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    # C2PA refuses a self-signed signer: the signer is issued by the authority, for signing documents only.
    signer = (
        x509.CertificateBuilder().subject_name(name(DEVELOPMENT_SIGNER)).issuer_name(authority_name)
        .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SigningKey(
        signer.public_bytes(pem) + authority.public_bytes(pem),
        signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
