//! Page tokens: opaque, authenticated continuation points.
//!
//! A token pins the viewer cell and epoch of the first page, so later pages use the same bands
//! and order and never repeat or skip a user who stays put. It is encrypted and authenticated
//! (XChaCha20-Poly1305, contract §4.3) with a key derived from the server secret by HKDF-SHA256,
//! and bound to the viewer and the query's filters (the associated data): its holder reads no
//! cell, band or user out of it, and a forged or re-bound token cannot move the viewer. Text
//! form: unpadded base64url of `version | nonce (24 bytes) | ciphertext and tag`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use h3o::CellIndex;

use super::{Cursor, Secret};
use crate::{UserId, ValidationError};

const VERSION: u8 = 2;
const FIELD: &str = "page_token";
/// The nonce's length (XChaCha20: random nonces are safe at any volume).
pub const NONCE_LEN: usize = 24;
/// The longest token text accepted (a token of the longest user id is about 270 characters).
const MAX_TEXT: usize = 512;

/// What a page token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// The order epoch of the first page.
    pub epoch: u64,
    /// The viewer's cell at the first page.
    pub viewer_cell: CellIndex,
    /// The last user returned.
    pub cursor: Cursor,
}

impl PageToken {
    /// Encrypts the token under `secret`'s token key, bound to `binding` (viewer and filters),
    /// with `nonce` (fresh random bytes for every token: the caller draws them).
    pub fn encode(&self, secret: &Secret, binding: &[u8], nonce: [u8; NONCE_LEN]) -> String {
        let mut plain = Vec::with_capacity(28 + self.cursor.user_id.as_str().len());
        plain.extend_from_slice(&self.epoch.to_be_bytes());
        plain.extend_from_slice(&u64::from(self.viewer_cell).to_be_bytes());
        plain.extend_from_slice(&self.cursor.band_m.to_be_bytes());
        plain.extend_from_slice(&self.cursor.key.to_be_bytes());
        plain.extend_from_slice(self.cursor.user_id.as_str().as_bytes());
        let sealed = cipher(secret)
            .encrypt(XNonce::from_slice(&nonce), payload(&plain, binding))
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decrypts and authenticates a token produced by [`PageToken::encode`] with the same
    /// secret and binding (the tag is checked in constant time).
    pub fn decode(text: &str, secret: &Secret, binding: &[u8]) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::new(FIELD, "is not a token this service issued");
        if text.len() > MAX_TEXT {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let (version, rest) = bytes.split_first().ok_or_else(invalid)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(invalid());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = cipher(secret)
            .decrypt(XNonce::from_slice(nonce), payload(sealed, binding))
            .map_err(|_| invalid())?;
        if plain.len() < 29 {
            return Err(invalid());
        }
        let u64_at = |at: usize| u64::from_be_bytes(plain[at..at + 8].try_into().unwrap_or([0; 8]));
        let band = u32::from_be_bytes(plain[16..20].try_into().map_err(|_| invalid())?);
        let user = std::str::from_utf8(&plain[28..]).map_err(|_| invalid())?;
        Ok(Self {
            epoch: u64_at(0),
            viewer_cell: CellIndex::try_from(u64_at(8)).map_err(|_| invalid())?,
            cursor: Cursor {
                band_m: band,
                key: u64_at(20),
                user_id: UserId::parse(user, FIELD).map_err(|_| invalid())?,
            },
        })
    }
}

/// The token cipher, keyed from the secret (see [`Secret::token_key`]).
fn cipher(secret: &Secret) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&secret.token_key().into())
}

/// The message with the version and `binding` as associated data.
fn payload<'a>(msg: &'a [u8], binding: &'a [u8]) -> Payload<'a, 'a> {
    Payload { msg, aad: binding }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> PageToken {
        PageToken {
            epoch: 42,
            viewer_cell: CellIndex::try_from(0x8931aa42853ffff).unwrap(),
            cursor: Cursor {
                band_m: 700,
                key: 0xdead_beef,
                user_id: UserId::parse("bob@x", "user_id").unwrap(),
            },
        }
    }

    #[test]
    fn a_token_round_trips_under_the_same_secret_and_binding() {
        let secret = Secret::from_bytes([1; 32]);
        let text = token().encode(&secret, b"alice|5000|any", [7; NONCE_LEN]);
        assert_eq!(
            PageToken::decode(&text, &secret, b"alice|5000|any").unwrap(),
            token()
        );
    }

    #[test]
    fn tampered_foreign_or_rebound_tokens_are_refused() {
        let secret = Secret::from_bytes([1; 32]);
        let text = token().encode(&secret, b"alice", [7; NONCE_LEN]);
        let other = Secret::from_bytes([2; 32]);
        assert!(PageToken::decode(&text, &other, b"alice").is_err());
        assert!(PageToken::decode(&text, &secret, b"mallory").is_err());
        for at in 0..text.len() {
            let mut flipped = text.clone().into_bytes();
            flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(flipped).unwrap();
            assert!(
                PageToken::decode(&flipped, &secret, b"alice").is_err(),
                "a change at {at} went unnoticed"
            );
        }
        for junk in ["", "zz", "abc", "00", "Ag", &"A".repeat(600)] {
            assert_eq!(
                PageToken::decode(junk, &secret, b"alice")
                    .unwrap_err()
                    .field,
                FIELD
            );
        }
    }

    /// The token was hex of the version, the epoch and the viewer's cell in
    /// the clear; now nothing of the content can be read out of it.
    #[test]
    fn a_token_shows_no_cell_band_or_user_to_its_holder() {
        let secret = Secret::from_bytes([1; 32]);
        let t = token();
        let text = t.encode(&secret, b"alice", [9; NONCE_LEN]);
        let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let cell = u64::from(t.viewer_cell).to_be_bytes();
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&cell), "the viewer's cell reads out of the token");
        assert!(!contains(b"bob@x"), "the user reads out of the token");
        assert!(
            !contains(&700u32.to_be_bytes()),
            "the band reads out of the token"
        );
        assert!(!text.contains(&t.viewer_cell.to_string()));
        let again = t.encode(&secret, b"alice", [8; NONCE_LEN]);
        assert_ne!(text, again, "two tokens of one page do not look alike");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn any_token() -> impl Strategy<Value = PageToken> {
            (
                any::<u64>(),
                -80.0f64..80.0,
                -179.0f64..179.0,
                (0u32..60).prop_map(|b| 500 + b * 100),
                any::<u64>(),
                "[A-Za-z0-9._:@-]{1,128}",
            )
                .prop_map(|(epoch, lat, lng, band_m, key, user)| PageToken {
                    epoch,
                    viewer_cell: h3o::LatLng::new(lat, lng)
                        .unwrap()
                        .to_cell(h3o::Resolution::Nine),
                    cursor: Cursor {
                        band_m,
                        key,
                        user_id: UserId::parse(&user, "user_id").unwrap(),
                    },
                })
        }

        proptest! {
            /// Round trip under the same secret and binding; any other binding, secret, or
            /// any single changed character is refused.
            #[test]
            fn tokens_round_trip_and_refuse_any_tampering(
                token in any_token(),
                binding in prop::collection::vec(any::<u8>(), 0..64),
                nonce in any::<[u8; NONCE_LEN]>(),
                at in any::<prop::sample::Index>(),
                to in "[A-Za-z0-9_-]",
            ) {
                let secret = Secret::from_bytes([5; 32]);
                let text = token.encode(&secret, &binding, nonce);
                prop_assert_eq!(PageToken::decode(&text, &secret, &binding).unwrap(), token);
                let mut other = binding.clone();
                other.push(0);
                prop_assert!(PageToken::decode(&text, &secret, &other).is_err());
                prop_assert!(PageToken::decode(&text, &Secret::from_bytes([6; 32]), &binding).is_err());
                let i = at.index(text.len());
                if text.as_bytes()[i] != to.as_bytes()[0] {
                    let mut changed = text.clone().into_bytes();
                    changed[i] = to.as_bytes()[0];
                    let changed = String::from_utf8(changed).unwrap();
                    prop_assert!(PageToken::decode(&changed, &secret, &binding).is_err());
                }
            }
        }
    }
}
