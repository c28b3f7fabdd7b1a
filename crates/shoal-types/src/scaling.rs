//! UpdateShardCount's uniform scaling, step by step, the way Kinesis does it.
//!
//! Kinesis scales up by splitting every open shard once and then merging adjacent
//! pairs back down to the target; it scales down by passes of pairwise merges of
//! adjacent shards. The shards this leaves behind (closed ones included) are what
//! users observe in ListShards, so Shoal follows the same steps: 2→4 gives 6
//! shards, 4→5 gives 15, 10→13 gives 37, 4→2 gives 6, 5→3 gives 7, 10→3 gives 17.

/// One step of a uniform scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingStep {
    /// Split every open shard at the middle of its hash key range.
    SplitAll,
    /// Merge this many pairs of adjacent open shards, pairing them in hash key
    /// order: the first with the second, the third with the fourth, and so on.
    MergePairs(u32),
}

/// The steps that take `current` open shards to `target`.
pub fn uniform_scaling_steps(current: u32, target: u32) -> Vec<ScalingStep> {
    let mut steps = Vec::new();
    let mut open = current;
    if open == 0 || target == 0 {
        return steps;
    }
    if open < target {
        steps.push(ScalingStep::SplitAll);
        open *= 2;
    }
    while open > target {
        let merges = (open / 2).min(open - target);
        steps.push(ScalingStep::MergePairs(merges));
        open -= merges;
    }
    steps
}

/// How many shards the stream lists after scaling from `current` (a stream whose
/// shards are all open) to `target`, closed ones included.
pub fn shards_after_scaling(current: u32, target: u32) -> u32 {
    uniform_scaling_steps(current, target).iter().fold(current, |total, step| match step {
        ScalingStep::SplitAll => total + 2 * current,
        ScalingStep::MergePairs(n) => total + n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_match_what_kinesis_produces() {
        // (initial, target, shards listed afterwards), as observed on AWS.
        for (initial, target, total) in [(2, 4, 6), (4, 5, 15), (10, 13, 37), (4, 2, 6), (5, 3, 7), (10, 3, 17)] {
            assert_eq!(shards_after_scaling(initial, target), total, "{initial} -> {target}");
        }
    }

    #[test]
    fn steps_reach_the_target() {
        for current in 1..=40u32 {
            for target in current.div_ceil(2)..=current * 2 {
                let open = uniform_scaling_steps(current, target).iter().fold(current, |open, step| match step {
                    ScalingStep::SplitAll => open * 2,
                    ScalingStep::MergePairs(n) => {
                        assert!(*n <= open / 2, "{current} -> {target}: more merges than pairs");
                        open - n
                    }
                });
                assert_eq!(open, target, "{current} -> {target}");
            }
        }
    }

    #[test]
    fn no_change_needs_no_steps() {
        assert!(uniform_scaling_steps(7, 7).is_empty());
    }
}
