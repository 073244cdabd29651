"""Point-wise mutual information of a rectified-flow model with its prompt: conventions, the draw density,
the estimators (exact per image, and the paper's), the trajectory accumulators, the sampler taps, phrase MI,
scores and closed-form test fields."""
