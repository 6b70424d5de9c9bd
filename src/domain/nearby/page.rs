//! Page tokens: opaque, authenticated continuation points.
//!
//! A token pins the viewer cell and epoch of the first page, so later pages use the same bands
//! and order and never repeat or skip a user who stays put. It is MACed with the server secret
//! and bound to the viewer and the query's filters: a forged token cannot move the viewer.

use std::hash::Hasher;

use h3o::CellIndex;

use super::{Cursor, Secret};
use crate::domain::{UserId, ValidationError};

const VERSION: u8 = 1;
const FIELD: &str = "page_token";

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
    /// Encodes the token as hex, MACed over its content and `binding` (viewer and filters).
    pub fn encode(&self, secret: &Secret, binding: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(40 + self.cursor.user_id.as_str().len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.epoch.to_be_bytes());
        bytes.extend_from_slice(&u64::from(self.viewer_cell).to_be_bytes());
        bytes.extend_from_slice(&self.cursor.band_m.to_be_bytes());
        bytes.extend_from_slice(&self.cursor.key.to_be_bytes());
        bytes.extend_from_slice(self.cursor.user_id.as_str().as_bytes());
        let mac = mac(secret, &bytes, binding);
        bytes.extend_from_slice(&mac.to_be_bytes());
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Decodes and authenticates a token produced by [`PageToken::encode`] with the same
    /// secret and binding.
    pub fn decode(text: &str, secret: &Secret, binding: &[u8]) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::new(FIELD, "is not a token this service issued");
        let bytes = from_hex(text).ok_or_else(invalid)?;
        if bytes.len() < 1 + 8 + 8 + 4 + 8 + 1 + 8 || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(bytes.len() - 8);
        let tag = u64::from_be_bytes(tag.try_into().map_err(|_| invalid())?);
        if mac(secret, body, binding) != tag {
            return Err(invalid());
        }
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
        let band = u32::from_be_bytes(body[17..21].try_into().map_err(|_| invalid())?);
        let user = std::str::from_utf8(&body[29..]).map_err(|_| invalid())?;
        Ok(Self {
            epoch: u64_at(1),
            viewer_cell: CellIndex::try_from(u64_at(9)).map_err(|_| invalid())?,
            cursor: Cursor {
                band_m: band,
                key: u64_at(21),
                user_id: UserId::parse(user, FIELD).map_err(|_| invalid())?,
            },
        })
    }
}

fn mac(secret: &Secret, body: &[u8], binding: &[u8]) -> u64 {
    let mut hasher = secret.mac_hasher();
    hasher.write(&(body.len() as u64).to_be_bytes());
    hasher.write(body);
    hasher.write(binding);
    hasher.finish()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 1024 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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
        let text = token().encode(&secret, b"alice|5000|any");
        assert_eq!(
            PageToken::decode(&text, &secret, b"alice|5000|any").unwrap(),
            token()
        );
    }

    #[test]
    fn tampered_foreign_or_rebound_tokens_are_refused() {
        let secret = Secret::from_bytes([1; 32]);
        let text = token().encode(&secret, b"alice");
        let other = Secret::from_bytes([2; 32]);
        assert!(PageToken::decode(&text, &other, b"alice").is_err());
        assert!(PageToken::decode(&text, &secret, b"mallory").is_err());
        let mut flipped = text.clone().into_bytes();
        flipped[20] = if flipped[20] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(PageToken::decode(&flipped, &secret, b"alice").is_err());
        for junk in ["", "zz", "abc", "00"] {
            assert_eq!(
                PageToken::decode(junk, &secret, b"alice")
                    .unwrap_err()
                    .field,
                FIELD
            );
        }
    }
}
