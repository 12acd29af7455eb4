//! A fixed, release-independent hash for holdout, A/B and spread shares: FNV-1a over
//! the bytes of the campaign id, a purpose salt and the member's external id,
//! finished with the SplitMix64 mixer. The same inputs give the same bucket on
//! every run, replica and Rust release (`DefaultHasher` promises none of that).

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// An FNV-1a state that has absorbed a prefix (campaign id and salt), so each
/// member only hashes their own id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seed(u64);

impl Seed {
    /// The state after `campaign_id`, a separator and `salt`.
    pub(crate) fn new(campaign_id: &str, salt: &str) -> Self {
        let state = absorb(FNV_OFFSET, campaign_id.as_bytes());
        let state = absorb(state, &[0xff]);
        Self(absorb(absorb(state, salt.as_bytes()), &[0xff]))
    }

    /// A uniform 64-bit value for one member.
    pub(crate) fn hash(self, external_id: &str) -> u64 {
        mix(absorb(self.0, external_id.as_bytes()))
    }

    /// A uniform value in `[0, 1)` for one member.
    pub(crate) fn unit(self, external_id: &str) -> f64 {
        (self.hash(external_id) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn absorb(mut state: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        state ^= u64::from(byte);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fixed_across_releases() {
        // Pinned values: a change here reshuffles every running experiment.
        let seed = Seed::new("autumn-moisturizer-2027", "holdout");
        assert_eq!(seed.hash("m-000001"), 0x26a9_822c_f3f3_532e);
        assert_ne!(seed.hash("m-000001"), seed.hash("m-000002"));
        assert_eq!(absorb(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(Seed::new("a", "holdout").hash("x"), Seed::new("a", "variant").hash("x"));
    }
}
