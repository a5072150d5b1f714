//! Spreading users over workers and user classes.
//!
//! Workers get equal shares (the first ones one more when it does not
//! divide); within a worker, classes get shares by weight with the largest
//! remainders rounded up, so every total is exact.

use std::collections::BTreeMap;

/// A user class (a goose scenario) and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClass {
    /// The scenario's name, as workers and `spawn` orders key their counts.
    pub name: String,
    /// Its share of the users relative to the other classes' weights.
    pub weight: u64,
}

/// Per-class user counts for one worker.
pub type ClassCounts = BTreeMap<String, u64>;

/// Splits `users` over `workers` (in order) and then over `classes`.
pub fn dispatch(
    users: u64,
    workers: &[String],
    classes: &[UserClass],
) -> BTreeMap<String, ClassCounts> {
    let n = workers.len() as u64;
    workers
        .iter()
        .enumerate()
        .map(|(i, id)| {
            // No workers, no shares; else the first `users % n` get one more.
            let share = users
                .checked_div(n)
                .map_or(0, |even| even + u64::from((i as u64) < users % n));
            (id.clone(), split_by_weight(share, classes))
        })
        .collect()
}

/// Splits `users` over classes by weight, largest remainder first.
/// Works in `u128`, so no user count or weight can overflow it.
pub fn split_by_weight(users: u64, classes: &[UserClass]) -> ClassCounts {
    let total_weight: u128 = classes.iter().map(|c| u128::from(c.weight.max(1))).sum();
    if classes.is_empty() || total_weight == 0 {
        return ClassCounts::new();
    }
    let mut counts: Vec<(String, u64, u128)> = classes
        .iter()
        .map(|c| {
            let exact = u128::from(users) * u128::from(c.weight.max(1));
            // exact / total_weight <= users, so it fits in u64.
            let share = u64::try_from(exact / total_weight).unwrap_or(users);
            (c.name.clone(), share, exact % total_weight)
        })
        .collect();
    let assigned: u64 = counts.iter().map(|c| c.1).sum();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|a, b| counts[*b].2.cmp(&counts[*a].2).then(a.cmp(b)));
    // Fewer leftovers than classes: largest remainders get one more each.
    let leftover = usize::try_from(users.saturating_sub(assigned)).unwrap_or(usize::MAX);
    for i in order.into_iter().take(leftover) {
        counts[i].1 += 1;
    }
    counts.into_iter().map(|(name, n, _)| (name, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<UserClass> {
        vec![
            UserClass {
                name: "A".into(),
                weight: 3,
            },
            UserClass {
                name: "B".into(),
                weight: 1,
            },
        ]
    }

    #[test]
    fn totals_are_exact() {
        let workers: Vec<String> = (0..3).map(|i| format!("w{i}")).collect();
        for users in [0, 1, 2, 7, 10, 101] {
            let plan = dispatch(users, &workers, &classes());
            let sum: u64 = plan.values().flat_map(|c| c.values()).sum();
            assert_eq!(sum, users);
            let shares: Vec<u64> = plan.values().map(|c| c.values().sum()).collect();
            assert!(shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1);
        }
    }

    #[test]
    fn weights_are_respected() {
        let counts = split_by_weight(8, &classes());
        assert_eq!(counts["A"], 6);
        assert_eq!(counts["B"], 2);
        assert_eq!(split_by_weight(1, &classes())["A"], 1);
    }

    #[test]
    fn huge_counts_and_weights_do_not_overflow() {
        let heavy = vec![
            UserClass {
                name: "A".into(),
                weight: u64::MAX,
            },
            UserClass {
                name: "B".into(),
                weight: u64::MAX,
            },
        ];
        let counts = split_by_weight(u64::MAX, &heavy);
        assert_eq!(counts["A"].checked_add(counts["B"]), Some(u64::MAX));
        let workers: Vec<String> = (0..3).map(|i| format!("w{i}")).collect();
        let plan = dispatch(u64::MAX, &workers, &heavy);
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn no_workers_no_users() {
        assert!(dispatch(10, &[], &classes()).is_empty());
    }
}
