//! Sessions encrypted at rest in Redis (`[store] encryption_keys_env`):
//! AES-256-GCM from `ring`, a fresh 96-bit nonce per write, the Redis key
//! as associated data (a value moved to another session's key does not
//! open), and the key id in each value so keys can rotate: the newest key
//! seals, every listed key opens.
//!
//! A sealed value is `hgs1:<key id>:` followed by the nonce and the
//! ciphertext with its tag. A value without that prefix is read as the
//! plain JSON of a store that ran without encryption (so turning it on
//! loses no live session) and is sealed at its next write.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::EncryptionKey;

const MAGIC: &[u8] = b"hgs1:";

/// The keys sessions are sealed and opened with.
pub(crate) struct Sealer {
    /// Newest first: the first seals.
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

/// What an opened value turned out to be.
pub(crate) enum Opened {
    /// Decrypted (or plain, from before encryption was on).
    Plain(Vec<u8>),
    /// Sealed with a key not listed, or tampered with.
    Unreadable,
}

impl Sealer {
    /// `None` without keys. Keys were checked to be 32 bytes at load.
    pub(crate) fn new(keys: &[EncryptionKey]) -> Option<Self> {
        let keys: Vec<_> = keys
            .iter()
            .filter_map(|k| {
                let unbound = UnboundKey::new(&AES_256_GCM, k.bytes()).ok()?;
                Some((k.id.clone(), LessSafeKey::new(unbound)))
            })
            .collect();
        (!keys.is_empty()).then(|| Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// `plain` sealed for the Redis key `aad` with the newest key; `None`
    /// only if the system's random source fails (nothing is written then).
    pub(crate) fn seal(&self, aad: &str, mut plain: Vec<u8>) -> Option<Vec<u8>> {
        let (id, key) = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut plain,
        )
        .ok()?;
        let mut out = Vec::with_capacity(MAGIC.len() + id.len() + 1 + NONCE_LEN + plain.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(id.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plain);
        Some(out)
    }

    /// The value stored at the Redis key `aad`, opened.
    pub(crate) fn open(&self, aad: &str, raw: &[u8]) -> Opened {
        let Some(rest) = raw.strip_prefix(MAGIC) else {
            return Opened::Plain(raw.to_vec());
        };
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            return Opened::Unreadable;
        };
        let (id, sealed) = (&rest[..colon], &rest[colon + 1..]);
        let Some((_, key)) = self.keys.iter().find(|(k, _)| k.as_bytes() == id) else {
            return Opened::Unreadable;
        };
        if sealed.len() < NONCE_LEN {
            return Opened::Unreadable;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let Ok(nonce) = Nonce::try_assume_unique_for_key(nonce) else {
            return Opened::Unreadable;
        };
        let mut buf = ct.to_vec();
        match key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf) {
            Ok(plain) => Opened::Plain(plain.to_vec()),
            Err(_) => Opened::Unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> EncryptionKey {
        EncryptionKey::new(id, vec![byte; 32])
    }

    fn opened(s: &Sealer, aad: &str, raw: &[u8]) -> Option<Vec<u8>> {
        match s.open(aad, raw) {
            Opened::Plain(p) => Some(p),
            Opened::Unreadable => None,
        }
    }

    #[test]
    fn seals_opens_rotates_and_refuses_tampering() {
        let old = Sealer::new(&[key("k1", 1)]).unwrap_or_else(|| panic!("no sealer"));
        let sealed = old.seal("hg:session:a", b"{\"tok\":\"secret-rt\"}".to_vec());
        let sealed = sealed.unwrap_or_default();
        assert!(sealed.starts_with(b"hgs1:k1:"));
        assert!(!sealed.windows(9).any(|w| w == b"secret-rt"));
        assert_eq!(
            opened(&old, "hg:session:a", &sealed).as_deref(),
            Some(&b"{\"tok\":\"secret-rt\"}"[..])
        );
        // Another session's key does not open it.
        assert!(opened(&old, "hg:session:b", &sealed).is_none());
        // A new key seals; the old one still opens what it sealed.
        let rotated =
            Sealer::new(&[key("k2", 2), key("k1", 1)]).unwrap_or_else(|| panic!("no sealer"));
        assert!(opened(&rotated, "hg:session:a", &sealed).is_some());
        assert!(
            rotated
                .seal("x", vec![1])
                .unwrap_or_default()
                .starts_with(b"hgs1:k2:")
        );
        // Dropping k1 makes its values unreadable, never misread.
        let only_new = Sealer::new(&[key("k2", 2)]).unwrap_or_else(|| panic!("no sealer"));
        assert!(opened(&only_new, "hg:session:a", &sealed).is_none());
        let mut flipped = sealed.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(opened(&old, "hg:session:a", &flipped).is_none());
        // Plain values from before encryption still read.
        assert_eq!(opened(&old, "k", b"{}").as_deref(), Some(&b"{}"[..]));
    }
}
