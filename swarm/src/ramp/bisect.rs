//! `--refine`: narrowing the threshold between the last healthy and the
//! first failing user count by bisection.

/// The bracket being narrowed: `healthy` users passed (0 stands for "no
/// load", healthy by definition), `failing` users did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bisection {
    /// The highest user count known healthy.
    pub healthy: u64,
    /// The lowest user count known to break a limit.
    pub failing: u64,
}

impl Bisection {
    /// Starts from a bracket; `None` unless `healthy < failing`.
    pub fn new(healthy: u64, failing: u64) -> Option<Bisection> {
        (healthy < failing).then_some(Bisection { healthy, failing })
    }

    /// The next user count to try, midway; `None` once the two are adjacent
    /// and the threshold is exact.
    pub fn probe(&self) -> Option<u64> {
        let gap = self.failing - self.healthy;
        (gap > 1).then(|| self.healthy + gap / 2)
    }

    /// Narrows the bracket with the verdict on `users` (a probe inside it);
    /// a count outside the bracket is ignored.
    pub fn record(&mut self, users: u64, healthy: bool) {
        if users <= self.healthy || users >= self.failing {
            return;
        }
        if healthy {
            self.healthy = users;
        } else {
            self.failing = users;
        }
    }

    /// Probes needed at most from here: ceil(log2(gap)).
    pub fn probes_left(&self) -> u32 {
        let gap = self.failing - self.healthy;
        if gap <= 1 {
            0
        } else {
            u64::BITS - (gap - 1).leading_zeros()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bisects against a target that fails from `threshold` users on.
    fn run(healthy: u64, failing: u64, threshold: u64) -> (Bisection, u32) {
        let mut b = Bisection::new(healthy, failing).expect("bracket");
        let budget = b.probes_left();
        let mut probes = 0;
        while let Some(users) = b.probe() {
            probes += 1;
            assert!(probes <= budget, "more probes than log2 of the gap");
            b.record(users, users < threshold);
        }
        (b, probes)
    }

    #[test]
    fn finds_the_exact_threshold() {
        for threshold in 5..=10 {
            let (b, _) = run(4, 10, threshold);
            assert_eq!(b.failing, threshold);
            assert_eq!(b.healthy, threshold - 1);
        }
        assert_eq!(run(0, 100, 1).0.failing, 1);
        assert_eq!(run(1000, 2000, 1337).0.failing, 1337);
    }

    #[test]
    fn adjacent_counts_need_no_probe() {
        let b = Bisection::new(4, 5).expect("bracket");
        assert_eq!(b.probe(), None);
        assert_eq!(b.probes_left(), 0);
        assert_eq!(Bisection::new(5, 5), None);
        assert_eq!(Bisection::new(6, 5), None);
    }

    #[test]
    fn probe_counts_are_logarithmic() {
        assert_eq!(Bisection::new(0, 2).map(|b| b.probes_left()), Some(1));
        assert_eq!(Bisection::new(0, 1024).map(|b| b.probes_left()), Some(10));
        assert_eq!(Bisection::new(0, 1025).map(|b| b.probes_left()), Some(11));
        assert_eq!(run(0, u64::MAX, u64::MAX / 3).0.failing, u64::MAX / 3);
    }

    #[test]
    fn out_of_bracket_results_are_ignored() {
        let mut b = Bisection::new(4, 8).expect("bracket");
        b.record(2, false);
        b.record(9, true);
        assert_eq!(
            b,
            Bisection {
                healthy: 4,
                failing: 8
            }
        );
    }
}
