//! Signed consent receipts (contract §4.8): each consent change is written as a record with the
//! mandatory fields of ISO/IEC TS 27560 and returned as a receipt the user can check offline.
//!
//! A receipt is a JSON Web Signature in compact form (RFC 7515, `alg` `EdDSA` as RFC 8037
//! names Ed25519): `BASE64URL(header).BASE64URL(record).BASE64URL(signature)`, so any JOSE
//! library verifies it with the service's published public key, and `vicinity consent verify`
//! does without one. The header's `kid` names the key (the first 8 bytes of the SHA-256 of the
//! raw public key, in hex), so keys can rotate: a verifier is given every public key the
//! operator ever published and picks the one the receipt names.
//!
//! No record holds a position: its fields are the consent event's (who, which feature, what
//! notice, when, granted or withdrawn) and the operator's terms.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use ring::{
    digest,
    signature::{self, Ed25519KeyPair, KeyPair},
};
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer, pem::PemObject};
use serde_json::{Value, json};

use crate::domain::{ConsentRecord, ConsentState, Feature, Retention};

/// The record's schema, named in every record.
pub const SCHEMA_VERSION: &str = "vicinity-consent-record/1 (ISO/IEC TS 27560:2023)";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the raw 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A receipt that cannot be made or checked, or a key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReceiptError(String);

/// The operator's side of every record: who controls the data and on what terms
/// (`serve --consent-*` flags; docs/operations.md).
#[derive(Debug, Clone)]
pub struct Terms {
    /// The controller's legal name.
    pub controller: String,
    /// How to reach the controller (or its data-protection officer).
    pub contact: String,
    /// The language of the notice the user was shown (BCP 47).
    pub language: String,
    /// Where the data is stored (a region or country).
    pub storage_location: String,
    /// The jurisdiction whose law governs the processing.
    pub jurisdiction: String,
    /// How the user withdraws.
    pub withdrawal_method: String,
    /// How long location data lives after the user's last activity.
    pub retention: Retention,
}

/// The signer in force and the key file it came from (`--consent-signing-key`), and the key
/// set the node publishes (`--consent-key-set`), read again on SIGHUP: a key or a set that does
/// not load, or a set without the signing key, is refused and the pair in force stays, so a
/// reload never turns receipts off and the node never signs with a key it does not publish.
/// Receipts signed before a rotation still verify against the old public key (each names its
/// key id), which the set keeps.
pub struct Receipts {
    path: PathBuf,
    key_set_path: Option<PathBuf>,
    terms: Terms,
    in_force: RwLock<InForce>,
}

/// The signer and the key set served, swapped together.
#[derive(Clone)]
struct InForce {
    signer: Arc<Signer>,
    /// The key set's JSON as served (`None`: no `--consent-key-set`).
    key_set: Option<Arc<str>>,
}

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipts")
            .field("signer", &self.current())
            .finish()
    }
}

impl Receipts {
    /// The key of `path`, signing under `terms`, and the key set of `key_set` (when given),
    /// which must hold that key.
    pub fn from_files(
        path: &Path,
        key_set: Option<&Path>,
        terms: Terms,
    ) -> Result<Self, ReceiptError> {
        let key_set_path = key_set.map(Path::to_owned);
        let in_force = load(path, key_set_path.as_deref(), &terms, None)?;
        Ok(Self {
            path: path.to_owned(),
            key_set_path,
            terms,
            in_force: RwLock::new(in_force),
        })
    }

    /// The signer in force.
    pub fn current(&self) -> Arc<Signer> {
        let in_force = self.in_force.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&in_force.signer)
    }

    /// The key set in force as a JSON Web Key Set (`None`: none configured).
    pub fn key_set(&self) -> Option<Arc<str>> {
        let in_force = self.in_force.read().unwrap_or_else(|p| p.into_inner());
        in_force.key_set.clone()
    }

    /// Reads the key file and the key set again; on success the new key signs from now on, the
    /// new set is served, and the key's id is returned; otherwise both in force stay. The new
    /// set must hold the new key and the one in force until now (receipts it signed must go on
    /// verifying against the set served).
    pub fn reload(&self) -> Result<String, ReceiptError> {
        let signing = self.current();
        let in_force = load(
            &self.path,
            self.key_set_path.as_deref(),
            &self.terms,
            Some(signing.key_id()),
        )?;
        let kid = in_force.signer.key_id().to_owned();
        *self.in_force.write().unwrap_or_else(|p| p.into_inner()) = in_force;
        Ok(kid)
    }
}

/// The signer of `path` and the key set of `key_set`, which must hold its key and `also` (the
/// key in force before a reload).
fn load(
    path: &Path,
    key_set: Option<&Path>,
    terms: &Terms,
    also: Option<&str>,
) -> Result<InForce, ReceiptError> {
    let signer = Signer::from_pem_file(path, terms.clone())
        .map_err(|ReceiptError(e)| ReceiptError(format!("--consent-signing-key {e}")))?;
    let key_set = match key_set {
        Some(set) => {
            let held: Vec<&str> = [Some(signer.key_id()), also]
                .into_iter()
                .flatten()
                .collect();
            Some(published_set(set, &held)?)
        }
        None => None,
    };
    Ok(InForce {
        signer: Arc::new(signer),
        key_set,
    })
}

/// The key set of `path` as served: its Ed25519 keys, written again by [`jwks`]; refused unless
/// it holds every key `held` names (receipts signed with them would not verify against it).
fn published_set(path: &Path, held: &[&str]) -> Result<Arc<str>, ReceiptError> {
    let bad = |what: String| ReceiptError(format!("--consent-key-set {}: {what}", path.display()));
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read ({})", e.kind())))?;
    let keys = PublicKey::from_jwks(&text).map_err(|ReceiptError(e)| bad(e))?;
    if let Some(kid) = held.iter().find(|kid| !keys.iter().any(|k| k.kid == **kid)) {
        return Err(bad(format!(
            "the key set does not hold signing key {kid}; add it (vicinity consent jwks)"
        )));
    }
    Ok(Arc::from(jwks(&keys).to_string()))
}

/// Signs receipts with the service's Ed25519 key.
pub struct Signer {
    key: Ed25519KeyPair,
    kid: String,
    terms: Terms,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never reaches a log.
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// Reads an Ed25519 private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519`
    /// writes it) from `path`.
    pub fn from_pem_file(path: &Path, terms: Terms) -> Result<Self, ReceiptError> {
        let pem = std::fs::read(path).map_err(|e| {
            ReceiptError(format!("{}: cannot be read ({})", path.display(), e.kind()))
        })?;
        Self::from_pem(&pem, terms)
            .map_err(|ReceiptError(e)| ReceiptError(format!("{}: {e}", path.display())))
    }

    /// [`Signer::from_pem_file`] on the file's contents.
    pub fn from_pem(pem: &[u8], terms: Terms) -> Result<Self, ReceiptError> {
        let der = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der,
            Ok(_) => return Err(ReceiptError("not a PKCS#8 private key".into())),
            Err(_) => return Err(ReceiptError("no PEM private key in it".into())),
        };
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|_| ReceiptError("not an Ed25519 private key".into()))?;
        let kid = key_id(key.public_key().as_ref());
        Ok(Self { key, kid, terms })
    }

    /// The id of the signing key, as receipts name it.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as a PEM SubjectPublicKeyInfo, for operators to publish.
    pub fn public_key_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    }

    /// The signed receipt of `event`.
    pub fn sign(&self, event: &ConsentRecord) -> String {
        let header = json!({"alg": "EdDSA", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(record(event, &self.terms).to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.as_ref()))
    }
}

/// The record of `event` under `terms`: the mandatory fields of ISO/IEC TS 27560.
pub fn record(event: &ConsentRecord, terms: &Terms) -> Value {
    let (event_type, state) = match event.state {
        ConsentState::Granted => ("given", "active"),
        ConsentState::Withdrawn => ("withdrawn", "withdrawn"),
        ConsentState::Undecided => ("none", "none"),
    };
    let time = event.changed_at.map(|t| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.as_millis() as u64);
        humantime::format_rfc3339_millis(at).to_string()
    });
    let (purpose, categories, recipients) = match event.feature {
        Feature::PeopleNearby => (
            "People Nearby: list other opted-in users near you, with a coarse distance band",
            [
                "location snapped to a grid cell",
                "gender",
                "last active time",
            ],
            "other opted-in users of People Nearby see a distance band, never a position",
        ),
        Feature::Shake => (
            "Shake: pair you with a user who shakes at the same moment nearby",
            ["location snapped to a grid cell", "shake time", "matches"],
            "the user you are matched with sees that you matched, never a position",
        ),
    };
    json!({
        "schema_version": SCHEMA_VERSION,
        "record_id": event.consent_id,
        "principal": {"id": event.user_id.as_str()},
        "notice": {"version": event.notice_version, "language": terms.language},
        "source": event.source,
        "purpose": {"feature": event.feature.to_string(), "description": purpose},
        "data_categories": categories,
        "controller": {"name": terms.controller, "contact": terms.contact},
        "storage_location": terms.storage_location,
        "retention": {
            "location": format!("PT{}S after the last activity", terms.retention.window().as_secs()),
            "record": "until the user is erased (ForgetUser)",
        },
        "jurisdiction": terms.jurisdiction,
        "recipients": recipients,
        "withdrawal_method": terms.withdrawal_method,
        "event": {"time": time, "type": event_type, "state": state},
    })
}

/// The id of a raw Ed25519 public key: 8 bytes of its SHA-256, in hex.
fn key_id(raw: &[u8]) -> String {
    hex::encode(&digest::digest(&digest::SHA256, raw).as_ref()[..8])
}

/// A published public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    kid: String,
    raw: Vec<u8>,
}

impl PublicKey {
    /// Reads an Ed25519 public key (PEM SubjectPublicKeyInfo, as `openssl pkey -pubout`
    /// writes it).
    pub fn from_pem_file(path: &Path) -> Result<Self, ReceiptError> {
        let bad = |what: &str| ReceiptError(format!("{}: {what}", path.display()));
        let der = SubjectPublicKeyInfoDer::from_pem_file(path)
            .map_err(|_| bad("no PEM public key in it"))?;
        let raw = der
            .as_ref()
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .filter(|raw| raw.len() == 32)
            .ok_or_else(|| bad("not an Ed25519 public key"))?;
        Ok(Self {
            kid: key_id(raw),
            raw: raw.to_vec(),
        })
    }

    /// The key as a JSON Web Key (RFC 8037: `OKP`, `Ed25519`, the raw key in `x`), with its
    /// `kid`, for a JWKS a JOSE library can be given.
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": B64.encode(&self.raw),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// The Ed25519 keys of a JSON Web Key Set (`{"keys": [...]}`, as [`jwks`] writes it). A
    /// key of another type is skipped; an Ed25519 key whose `x` is not 32 bytes, or whose
    /// `kid` is not the one this service derives from it, is refused (a receipt names its key
    /// by that `kid`).
    pub fn from_jwks(text: &str) -> Result<Vec<Self>, ReceiptError> {
        let bad = |what: String| ReceiptError(format!("the key set: {what}"));
        let set: Value = serde_json::from_str(text).map_err(|_| bad("not JSON".into()))?;
        let keys = set["keys"]
            .as_array()
            .ok_or_else(|| bad("no \"keys\" array".into()))?;
        let mut out = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
                continue;
            }
            let raw = jwk["x"]
                .as_str()
                .and_then(|x| B64.decode(x).ok())
                .filter(|raw| raw.len() == 32)
                .ok_or_else(|| bad(format!("key {i}: \"x\" is not a 32-byte base64url key")))?;
            let kid = key_id(&raw);
            if let Some(given) = jwk["kid"].as_str()
                && given != kid
            {
                return Err(bad(format!(
                    "key {i}: \"kid\" {given:?} is not this key's id ({kid})"
                )));
            }
            out.push(Self { kid, raw });
        }
        if out.is_empty() {
            return Err(bad("no Ed25519 key in it".into()));
        }
        Ok(out)
    }
}

/// A JSON Web Key Set of `keys` (`{"keys": [...]}`): what an operator publishes so any JOSE
/// library verifies receipts (every key ever used, so receipts made before a rotation verify).
pub fn jwks(keys: &[PublicKey]) -> Value {
    json!({ "keys": keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
}

/// A receipt whose signature checked out.
#[derive(Debug)]
pub struct Verified {
    /// The key that signed it.
    pub kid: String,
    /// The record it holds.
    pub record: Value,
}

/// Checks `receipt` against `keys` (the one its header names).
pub fn verify(receipt: &str, keys: &[PublicKey]) -> Result<Verified, ReceiptError> {
    let malformed = || ReceiptError("not a receipt (three base64url parts expected)".into());
    let receipt = receipt.trim();
    let mut parts = receipt.split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let json_of = |part: &str| -> Result<Value, ReceiptError> {
        let bytes = B64.decode(part).map_err(|_| malformed())?;
        serde_json::from_slice(&bytes).map_err(|_| malformed())
    };
    let head = json_of(header)?;
    // EdDSA (RFC 8037) or its fully specified name Ed25519 (RFC 9864), nothing else: the key
    // type is fixed, so no other algorithm can be smuggled in.
    if head["alg"] != "EdDSA" && head["alg"] != "Ed25519" {
        return Err(ReceiptError("not signed with EdDSA (Ed25519)".into()));
    }
    // RFC 7515 §4.1.11: a critical extension this verifier does not know must be refused.
    if !head["crit"].is_null() {
        return Err(ReceiptError(
            "a critical header extension not understood".into(),
        ));
    }
    let kid = head["kid"].as_str().unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| ReceiptError(format!("signed by key {kid:?}, which was not given")))?;
    let sig = B64.decode(sig).map_err(|_| malformed())?;
    let signed = &receipt[..header.len() + 1 + payload.len()];
    signature::UnparsedPublicKey::new(&signature::ED25519, &key.raw)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| ReceiptError("the signature does not match: altered or forged".into()))?;
    Ok(Verified {
        kid: key.kid.clone(),
        record: json_of(payload)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NoticeVersion, Source, Timestamp, UserId};

    /// An Ed25519 key in PKCS#8 PEM, made for these tests.
    fn pem() -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n").into_bytes()
    }

    pub(crate) fn terms() -> Terms {
        Terms {
            controller: "Example Ltd".into(),
            contact: "dpo@example.com".into(),
            language: "en".into(),
            storage_location: "EU".into(),
            jurisdiction: "IE".into(),
            withdrawal_method: "Settings > Privacy > People Nearby".into(),
            retention: Retention::default(),
        }
    }

    fn granted() -> ConsentRecord {
        let user = UserId::parse("alice", "user_id").unwrap();
        ConsentRecord::undecided(user, Feature::PeopleNearby)
            .grant(
                &NoticeVersion::parse("2026-12").unwrap(),
                &Source::parse("app 7.1").unwrap(),
                Timestamp::from_millis(1_780_000_000_000),
                "0123456789abcdef0123456789abcdef".into(),
            )
            .unwrap()
    }

    fn public(signer: &Signer) -> PublicKey {
        let dir = std::env::temp_dir().join(format!("vicinity-receipt-{}", signer.key_id()));
        std::fs::write(&dir, signer.public_key_pem()).unwrap();
        let key = PublicKey::from_pem_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        key
    }

    #[test]
    fn a_receipt_verifies_with_its_key_and_holds_the_record() {
        let signer = Signer::from_pem(&pem(), terms()).unwrap();
        let receipt = signer.sign(&granted());
        let verified = verify(&receipt, &[public(&signer)]).unwrap();
        assert_eq!(verified.kid, signer.key_id());
        assert_eq!(verified.record, record(&granted(), &terms()));
        assert_eq!(verified.record["event"]["type"], "given");
    }

    #[test]
    fn a_receipt_with_any_byte_changed_fails() {
        let signer = Signer::from_pem(&pem(), terms()).unwrap();
        let key = public(&signer);
        let receipt = signer.sign(&granted());
        for i in 0..receipt.len() {
            let mut altered = receipt.clone().into_bytes();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(
                verify(&altered, std::slice::from_ref(&key)).is_err(),
                "byte {i} altered"
            );
        }
    }

    /// The JWKS of two keys verifies the receipts of either, as the PEM files do, and fails
    /// a changed one; a `kid` that is not the key's, or a short key, is refused.
    #[test]
    fn a_key_set_verifies_receipts_of_every_key_in_it() {
        let (old, new) = (
            Signer::from_pem(&pem(), terms()).unwrap(),
            Signer::from_pem(&pem(), terms()).unwrap(),
        );
        let set = jwks(&[public(&old), public(&new)]).to_string();
        let keys = PublicKey::from_jwks(&set).unwrap();
        for signer in [&old, &new] {
            let receipt = signer.sign(&granted());
            assert_eq!(verify(&receipt, &keys).unwrap().kid, signer.key_id());
            let mut altered = receipt.into_bytes();
            let at = altered.len() / 2;
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            assert!(verify(&String::from_utf8(altered).unwrap(), &keys).is_err());
        }
        let mut wrong: Value = serde_json::from_str(&set).unwrap();
        wrong["keys"][1]["kid"] = json!(old.key_id());
        let refused = PublicKey::from_jwks(&wrong.to_string()).unwrap_err();
        assert!(
            refused.to_string().contains("is not this key's id"),
            "{refused}"
        );
        let mut short: Value = serde_json::from_str(&set).unwrap();
        short["keys"][0]["x"] = json!(B64.encode([1u8; 16]));
        assert!(PublicKey::from_jwks(&short.to_string()).is_err());
        let others = json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}).to_string();
        assert!(PublicKey::from_jwks(&others).is_err(), "no Ed25519 key");
    }

    #[test]
    fn a_receipt_signed_by_another_key_fails() {
        let signer = Signer::from_pem(&pem(), terms()).unwrap();
        let other = Signer::from_pem(&pem(), terms()).unwrap();
        let receipt = signer.sign(&granted());
        assert!(verify(&receipt, &[public(&other)]).is_err());
        // After a rotation the verifier holds both keys and picks the one named.
        let both = [public(&other), public(&signer)];
        assert_eq!(verify(&receipt, &both).unwrap().kid, signer.key_id());
    }

    /// The signing key rotates without a restart. A reload takes the file's new key;
    /// one that does not load is refused and the key in force keeps signing.
    #[test]
    fn a_reload_takes_the_new_key_and_a_bad_file_keeps_the_key_in_force() {
        let dir = std::env::temp_dir().join(format!("vicinity-receipts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing.pem");
        std::fs::write(&path, pem()).unwrap();
        let receipts = Receipts::from_files(&path, None, terms()).unwrap();
        let first = receipts.current();

        std::fs::write(&path, pem()).unwrap();
        let rotated = receipts.reload().expect("a new key loads");
        assert_ne!(rotated, first.key_id(), "the new key signs");
        assert_eq!(receipts.current().key_id(), rotated);

        std::fs::write(&path, b"not a key").unwrap();
        assert!(receipts.reload().is_err(), "a bad file is refused");
        assert_eq!(
            receipts.current().key_id(),
            rotated,
            "the key in force stays"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The key set served must hold the signing key: at start, and at every reload, where a
    /// new key missing from the set is refused with the set, and both in force stay.
    #[test]
    fn the_key_set_served_always_holds_the_signing_key() {
        let dir = std::env::temp_dir().join(format!("vicinity-key-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, set) = (dir.join("signing.pem"), dir.join("keys.jwks.json"));
        let (first, other, next) = (pem(), pem(), pem());
        let public_of = |pem: &[u8]| public(&Signer::from_pem(pem, terms()).unwrap());
        let write_set = |keys: &[&[u8]]| {
            let keys: Vec<PublicKey> = keys.iter().map(|k| public_of(k)).collect();
            std::fs::write(&set, jwks(&keys).to_string()).unwrap();
        };
        std::fs::write(&key, &first).unwrap();
        write_set(&[&other]);
        let refused = Receipts::from_files(&key, Some(&set), terms()).unwrap_err();
        assert!(
            refused.to_string().contains("does not hold signing key"),
            "{refused}"
        );

        write_set(&[&first]);
        let receipts = Receipts::from_files(&key, Some(&set), terms()).unwrap();
        let served = |r: &Receipts| PublicKey::from_jwks(&r.key_set().unwrap()).unwrap();
        assert_eq!(served(&receipts)[0].kid, receipts.current().key_id());

        // A new signing key the set lacks: refused, the key and the set in force stay.
        std::fs::write(&key, &next).unwrap();
        assert!(receipts.reload().is_err());
        assert_eq!(receipts.current().key_id(), public_of(&first).kid);
        assert_eq!(served(&receipts).len(), 1);
        // A set of the new key alone would stop publishing the key that signed until now.
        write_set(&[&next]);
        let dropped = receipts.reload().unwrap_err();
        assert!(
            dropped.to_string().contains(&public_of(&first).kid),
            "{dropped}"
        );
        assert_eq!(receipts.current().key_id(), public_of(&first).kid);
        // Published beside the old one: both swap in.
        write_set(&[&first, &next]);
        let kid = receipts.reload().expect("the new key and its set load");
        assert_eq!(kid, public_of(&next).kid);
        let kids: Vec<String> = served(&receipts).into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [public_of(&first).kid, kid]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_that_are_not_ed25519_pkcs8_are_refused() {
        assert!(Signer::from_pem(b"not a key", terms()).is_err());
        let rng = ring::rand::SystemRandom::new();
        let p256 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(p256.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        assert!(Signer::from_pem(pem.as_bytes(), terms()).is_err());
    }

    #[test]
    fn the_signer_never_prints_its_key() {
        let signer = Signer::from_pem(&pem(), terms()).unwrap();
        assert_eq!(
            format!("{signer:?}"),
            format!("Signer {{ kid: {:?} }}", signer.key_id())
        );
    }
}
