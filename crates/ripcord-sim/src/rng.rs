//! A tiny seeded xorshift64* generator for the sim (uids, generated names, fault injection).
//!
//! Deterministic for a given seed so that fault-injection runs can be replayed; not suitable
//! for anything security-related.

/// xorshift64* pseudo-random generator.
#[derive(Clone, Debug)]
pub struct XorShift {
    state: u64,
}

// === impl XorShift ===

impl XorShift {
    /// A generator from `seed` (a zero seed is replaced by a fixed non-zero constant).
    pub fn new(seed: u64) -> XorShift {
        XorShift {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float uniformly distributed in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A value in `0..bound` (`0` when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_floats_in_range() {
        let mut a = XorShift::new(7);
        let mut b = XorShift::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f64();
            b.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert_ne!(XorShift::new(1).next_u64(), XorShift::new(2).next_u64());
        assert_eq!(XorShift::new(0).below(0), 0);
    }
}
