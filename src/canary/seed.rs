//! Everything a write contains is drawn from its seed: the canary's id and the write's time.
//! Reading it back needs nothing remembered but that time.

use sha2::{Digest, Sha256};

/// The source of one write's ids and values.
#[derive(Debug, Clone)]
pub struct Seed {
    prefix: Vec<u8>,
}

impl Seed {
    /// `at`: the write's time in Unix nanoseconds.
    pub fn new(canary_id: &str, at: u64) -> Seed {
        let mut prefix = Vec::with_capacity(canary_id.len() + 9);
        prefix.extend_from_slice(canary_id.as_bytes());
        prefix.push(0);
        prefix.extend_from_slice(&at.to_le_bytes());
        Seed { prefix }
    }

    fn digest(&self, label: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(&self.prefix);
        hasher.update(label.as_bytes());
        hasher.finalize().into()
    }

    /// `N` bytes (at most 32) for `label`, never all zero (OTLP's "invalid id").
    pub fn id<const N: usize>(&self, label: &str) -> [u8; N] {
        let digest = self.digest(label);
        let mut id = [0u8; N];
        id.copy_from_slice(&digest[..N]);
        if id.iter().all(|b| *b == 0) {
            id[N - 1] = 1;
        }
        id
    }

    pub fn number(&self, label: &str) -> u64 {
        u64::from_le_bytes(self.id::<8>(label))
    }

    /// Lower-case hex of `bytes` bytes for `label`: text that can hold no analysis keyword
    /// (`fail`, `critical`), whatever the seed.
    pub fn hex(&self, label: &str, bytes: usize) -> String {
        self.digest(label)[..bytes.min(32)].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_and_time_give_the_same_values_and_nothing_else_does() {
        let seed = Seed::new("c1", 1_700_000_000_123_456_789);
        assert_eq!(seed.id::<16>("trace"), Seed::new("c1", 1_700_000_000_123_456_789).id::<16>("trace"));
        assert_ne!(seed.id::<16>("trace"), Seed::new("c2", 1_700_000_000_123_456_789).id::<16>("trace"));
        assert_ne!(seed.id::<16>("trace"), Seed::new("c1", 1_700_000_000_123_456_790).id::<16>("trace"));
        assert_ne!(seed.id::<16>("trace"), seed.id::<16>("span"));
        assert_eq!(seed.hex("x", 4).len(), 8);
    }
}
