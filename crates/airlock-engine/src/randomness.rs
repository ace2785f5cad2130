//! Randomness, injected so that runs can be simulated from a seed: the executor draws
//! retry jitter and run ids only through a [`Randomness`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of random bits.
pub trait Randomness: Send + Sync {
    /// 128 fresh random bits.
    fn bits(&self) -> u128;

    /// A number in [0, 1), from the top 53 bits of [`Randomness::bits`] (a double's
    /// precision): a retry's jitter.
    fn unit(&self) -> f64 {
        (self.bits() >> 75) as f64 / (1u64 << 53) as f64
    }
}

/// The operating system's randomness (through `rand`'s thread-local generator, seeded
/// from it).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandomness;

impl Randomness for OsRandomness {
    fn bits(&self) -> u128 {
        rand::random()
    }
}

/// Bits that follow from a seed: SplitMix64 (the generator of Java's `SplittableRandom`),
/// whose every output is a bijective mix of a counter, so the same seed gives the same
/// sequence on every machine and every build. Not for secrets.
#[derive(Debug)]
pub struct SeededRandomness {
    state: AtomicU64,
}

impl SeededRandomness {
    /// The sequence of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 bits.
    pub fn next_u64(&self) -> u64 {
        const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Randomness for SeededRandomness {
    fn bits(&self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence_and_another_seed_another() {
        let (a, b, c) = (
            SeededRandomness::new(7),
            SeededRandomness::new(7),
            SeededRandomness::new(8),
        );
        let first: Vec<u128> = (0..4).map(|_| a.bits()).collect();
        assert_eq!(first, (0..4).map(|_| b.bits()).collect::<Vec<_>>());
        assert_ne!(first, (0..4).map(|_| c.bits()).collect::<Vec<_>>());
        // SplitMix64's published first output for seed 0.
        assert_eq!(SeededRandomness::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn a_unit_draw_stays_in_the_unit_interval() {
        struct Extreme(u128);
        impl Randomness for Extreme {
            fn bits(&self) -> u128 {
                self.0
            }
        }
        assert_eq!(Extreme(0).unit(), 0.0);
        let top = Extreme(u128::MAX).unit();
        assert!(top < 1.0 && top > 0.999_999, "{top}");
        let seeded = SeededRandomness::new(1);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&seeded.unit())));
    }
}
