//! Deterministic embeddings for the store's tests: the same seed, the same vector.

/// A deterministic unit vector of `dimension` components for `seed` (a linear
/// congruential generator: no dependency, identical on every machine).
pub fn unit_vector(seed: u64, dimension: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<f32> = (0..dimension)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `centre` moved towards the noise of `seed` by `spread` (0: the centre itself),
/// normalised: points of one cluster.
pub fn near(centre: &[f32], seed: u64, spread: f32) -> Vec<f32> {
    let noise = unit_vector(seed, centre.len());
    let mut v: Vec<f32> = centre
        .iter()
        .zip(&noise)
        .map(|(c, n)| c + spread * n)
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
