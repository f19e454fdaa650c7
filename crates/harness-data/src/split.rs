//! Splits and subsets for the paired design: a fixed stratified test set, nested stratified
//! training subsets per seed, and a validation split carved from each subset.
//!
//! Everything here is a pure function of its seed, built on a small generator whose output is
//! fixed forever (SplitMix64), so the same seed gives the same subset on any machine and version.

use anyhow::{Result, ensure};

/// SplitMix64: a tiny generator with a fixed, documented output sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` in the named `stream`, so different uses of one seed are independent.
    pub fn new(seed: u64, stream: &str) -> Rng {
        let mut h = 0xcbf2_9ce4_8422_2325u64; // FNV-1a of the stream name
        for b in stream.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = Rng(seed ^ h);
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Indices of each class, in index order.
pub fn by_class(labels: &[u16], classes: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        out[l as usize].push(i);
    }
    out
}

/// `n` of the examples, each class keeping its share of the whole (largest remainders, ties to
/// the lower class index), drawn with `seed`; sorted. For capping a pre-training pool whose
/// classes may be very unequal (Debian sections run from 15 to 6,456 descriptions).
pub fn proportional_subset(labels: &[u16], classes: usize, n: usize, seed: u64) -> Vec<usize> {
    let total = labels.len();
    if n >= total {
        return (0..total).collect();
    }
    let members = by_class(labels, classes);
    let mut quotas: Vec<usize> = members.iter().map(|m| m.len() * n / total).collect();
    let mut by_remainder: Vec<usize> = (0..classes).collect();
    by_remainder.sort_by_key(|&c| (std::cmp::Reverse(members[c].len() * n % total), c));
    let short = n - quotas.iter().sum::<usize>();
    for &c in by_remainder.iter().take(short) {
        quotas[c] += 1;
    }
    let mut rng = Rng::new(seed, "proportional-subset");
    let mut out = Vec::with_capacity(n);
    for (mut m, quota) in members.into_iter().zip(quotas) {
        rng.shuffle(&mut m);
        out.extend_from_slice(&m[..quota]);
    }
    out.sort_unstable();
    out
}

/// Splits examples into (training pool, test set) with `test_per_class` test examples of each
/// class drawn with `seed`. Both lists come back sorted.
pub fn stratified_test_split(
    labels: &[u16],
    classes: usize,
    test_per_class: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut rng = Rng::new(seed, "test-split");
    let mut pool = Vec::new();
    let mut test = Vec::new();
    for (class, mut members) in by_class(labels, classes).into_iter().enumerate() {
        ensure!(
            members.len() > test_per_class,
            "class {class} has {} examples, not more than the {test_per_class} the test set takes",
            members.len()
        );
        rng.shuffle(&mut members);
        test.extend_from_slice(&members[..test_per_class]);
        pool.extend_from_slice(&members[test_per_class..]);
    }
    pool.sort_unstable();
    test.sort_unstable();
    Ok((pool, test))
}

/// How many of `n` examples each class gets: `n / K` each, and the remainder to the classes
/// ranked first by `seed`. Non-decreasing in `n` for every class, which makes subsets nest.
fn class_quotas(n: usize, classes: usize, seed: u64) -> Vec<usize> {
    let mut rank: Vec<usize> = (0..classes).collect();
    Rng::new(seed, "class-rank").shuffle(&mut rank);
    let mut quotas = vec![n / classes; classes];
    for &class in rank.iter().take(n % classes) {
        quotas[class] += 1;
    }
    quotas
}

/// How large a stratified subset a pool allows: each class is asked for up to
/// `ceil(n / classes)` examples, so the smallest class bounds `n` at `classes × its size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StratifiedLimit {
    /// The largest `n_train` whose stratified subset every seed can draw.
    pub n_train: usize,
    /// The class that bounds it, and its number of examples.
    pub smallest_class: usize,
    pub smallest_size: usize,
}

/// The [`StratifiedLimit`] of a pool with these labels.
pub fn largest_stratified_n(labels: &[u16], classes: usize) -> StratifiedLimit {
    let sizes: Vec<usize> = by_class(labels, classes).iter().map(Vec::len).collect();
    let (smallest_class, smallest_size) = sizes
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(_, size)| size)
        .unwrap_or((0, 0));
    StratifiedLimit {
        n_train: smallest_size * classes,
        smallest_class,
        smallest_size,
    }
}

/// A stratified training subset of the pool, as the pool's example indices grouped by class.
/// For one seed, the subset of size `n` contains the subset of every smaller size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    /// Examples the model fits, in a seed-fixed order.
    pub fit: Vec<usize>,
    /// Examples held out for early stopping and model selection.
    pub validation: Vec<usize>,
}

impl Subset {
    pub fn all(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self.fit.iter().chain(&self.validation).copied().collect();
        all.sort_unstable();
        all
    }
}

/// Draws the nested subset of size `n` for `seed` from a pool (given as dataset indices with
/// their labels), then carves the validation split: `round(fraction × quota)` examples of each
/// class, at least one, leaving at least one to fit. A class whose quota is a single example
/// (when `n` < 2 × classes) puts it in the fitting split, so it has no validation example.
pub fn training_subset(
    pool: &[usize],
    labels: &[u16],
    classes: usize,
    n: usize,
    seed: u64,
    validation_fraction: f64,
) -> Result<Subset> {
    ensure!(
        n <= pool.len(),
        "n_train = {n} is larger than the training pool ({} examples)",
        pool.len()
    );
    let quotas = class_quotas(n, classes, seed);
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for &i in pool {
        per_class[labels[i] as usize].push(i);
    }
    let mut fit = Vec::with_capacity(n);
    let mut validation = Vec::new();
    for (class, members) in per_class.iter_mut().enumerate() {
        let quota = quotas[class];
        ensure!(
            members.len() >= quota,
            "class {class} has {} examples in the pool; n_train = {n} needs {quota}",
            members.len()
        );
        ensure!(
            quota >= 1,
            "n_train = {n} leaves class {class} without an example"
        );
        // The permutation depends on the seed and class only, so smaller n take a prefix.
        Rng::new(seed ^ (class as u64).wrapping_mul(0x9e37), "subset").shuffle(members);
        let chosen = &members[..quota];
        let n_val = if quota < 2 {
            0
        } else {
            ((quota as f64 * validation_fraction).round() as usize).clamp(1, quota - 1)
        };
        fit.extend_from_slice(&chosen[..quota - n_val]);
        validation.extend_from_slice(&chosen[quota - n_val..]);
    }
    Rng::new(seed, "fit-order").shuffle(&mut fit);
    validation.sort_unstable();
    Ok(Subset { fit, validation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_largest_stratified_size_is_drawable_by_every_seed_and_one_more_is_not() {
        // Classes of 9, 4 and 7 examples: the class of 4 bounds n at 12.
        let labels: Vec<u16> = [0u16; 9]
            .iter()
            .chain(&[1; 4])
            .chain(&[2; 7])
            .copied()
            .collect();
        let pool: Vec<usize> = (0..labels.len()).collect();
        assert_eq!(largest_stratified_n(&labels, 3).n_train, 12);
        for seed in 0..20 {
            training_subset(&pool, &labels, 3, 12, seed, 0.2).unwrap();
        }
        let refused = (0..20)
            .filter(|&seed| training_subset(&pool, &labels, 3, 13, seed, 0.2).is_err())
            .count();
        assert!(
            refused > 0,
            "n = 13 needs 5 from the class of 4 for some seed"
        );
        assert_eq!(
            largest_stratified_n(&[0, 0, 2], 3).n_train,
            0,
            "a class without examples"
        );
    }

    fn labels(per_class: usize, classes: usize) -> Vec<u16> {
        (0..per_class * classes)
            .map(|i| (i % classes) as u16)
            .collect()
    }

    #[test]
    fn the_generator_output_is_fixed() {
        let mut rng = Rng::new(0, "x");
        let a: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        let mut again = Rng::new(0, "x");
        let b: Vec<u64> = (0..3).map(|_| again.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::new(0, "y").next_u64(), a[0], "streams are independent");
    }

    #[test]
    fn the_test_split_is_stratified_disjoint_and_fixed() {
        let labels = labels(50, 10);
        let (pool, test) = stratified_test_split(&labels, 10, 5, 7).unwrap();
        assert_eq!(test.len(), 50);
        assert_eq!(pool.len(), 450);
        for c in 0..10 {
            assert_eq!(test.iter().filter(|&&i| labels[i] == c).count(), 5);
        }
        let t: HashSet<_> = test.iter().collect();
        assert!(pool.iter().all(|i| !t.contains(i)));
        assert_eq!(stratified_test_split(&labels, 10, 5, 7).unwrap().1, test);
    }

    #[test]
    fn subsets_are_nested_across_n_train_for_one_seed() {
        let labels = labels(100, 10);
        let pool: Vec<usize> = (0..1000).collect();
        for seed in 0..5 {
            let mut previous: HashSet<usize> = HashSet::new();
            for n in [20, 35, 50, 200, 555, 1000] {
                let s = training_subset(&pool, &labels, 10, n, seed, 0.2).unwrap();
                let all: HashSet<usize> = s.all().into_iter().collect();
                assert_eq!(all.len(), n);
                assert!(
                    previous.is_subset(&all),
                    "seed {seed}: subset of {n} misses smaller ones"
                );
                previous = all;
            }
        }
    }

    #[test]
    fn subsets_are_stratified_and_validation_is_carved_from_them() {
        let labels = labels(100, 10);
        let pool: Vec<usize> = (0..1000).collect();
        let s = training_subset(&pool, &labels, 10, 50, 3, 0.2).unwrap();
        assert_eq!(s.fit.len(), 40);
        assert_eq!(s.validation.len(), 10);
        for c in 0..10u16 {
            assert_eq!(s.validation.iter().filter(|&&i| labels[i] == c).count(), 1);
            assert_eq!(s.fit.iter().filter(|&&i| labels[i] == c).count(), 4);
        }
        let fit: HashSet<_> = s.fit.iter().collect();
        assert!(s.validation.iter().all(|i| !fit.contains(i)));
    }

    #[test]
    fn different_seeds_give_different_subsets_and_the_same_seed_the_same() {
        let labels = labels(100, 10);
        let pool: Vec<usize> = (0..1000).collect();
        let a = training_subset(&pool, &labels, 10, 50, 0, 0.2).unwrap();
        let b = training_subset(&pool, &labels, 10, 50, 1, 0.2).unwrap();
        assert_ne!(a.all(), b.all());
        assert_eq!(a, training_subset(&pool, &labels, 10, 50, 0, 0.2).unwrap());
    }

    #[test]
    fn with_fewer_than_two_examples_per_class_singletons_are_fitted() {
        // 35 classes and n = 50: 15 classes get two examples (one validates), 20 get one.
        let labels = labels(10, 35);
        let pool: Vec<usize> = (0..350).collect();
        let s = training_subset(&pool, &labels, 35, 50, 4, 0.2).unwrap();
        assert_eq!(s.all().len(), 50);
        assert_eq!(s.validation.len(), 15);
        assert_eq!(s.fit.len(), 35);
        for c in 0..35u16 {
            assert_eq!(s.fit.iter().filter(|&&i| labels[i] == c).count(), 1);
        }
        let bigger = training_subset(&pool, &labels, 35, 100, 4, 0.2).unwrap();
        let all: HashSet<usize> = bigger.all().into_iter().collect();
        assert!(s.all().iter().all(|i| all.contains(i)), "still nested");
        assert!(training_subset(&pool, &labels, 35, 34, 4, 0.2).is_err());
    }

    #[test]
    fn asking_more_than_the_pool_is_an_error() {
        let labels = labels(10, 2);
        let pool: Vec<usize> = (0..20).collect();
        assert!(training_subset(&pool, &labels, 2, 21, 0, 0.2).is_err());
    }

    #[test]
    fn proportional_subsets_keep_each_class_share_and_are_reproducible() {
        // 3 classes of 10, 30 and 60 examples.
        let labels: Vec<u16> = (0..100u16)
            .map(|i| {
                if i < 10 {
                    0
                } else if i < 40 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let a = proportional_subset(&labels, 3, 25, 7);
        assert_eq!(a.len(), 25);
        let count = |c: u16| a.iter().filter(|&&i| labels[i] == c).count();
        // 2.5, 7.5, 15 → the two .5 remainders go to the lower class index first: 3, 7, 15.
        assert_eq!((count(0), count(1), count(2)), (3, 7, 15));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, proportional_subset(&labels, 3, 25, 7));
        assert_ne!(a, proportional_subset(&labels, 3, 25, 8));
        assert_eq!(proportional_subset(&labels, 3, 500, 7).len(), 100);
    }
}
