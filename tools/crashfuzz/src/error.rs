//! The fuzzer's errors: a configuration or a replay token it cannot use. Violations found in
//! the stack are results, not errors (see `Violation`).

/// The fuzzer's result type: a [`FuzzError`] unless said otherwise.
pub type Result<T, E = FuzzError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why a run or a replay could not start.
pub enum FuzzError {
    #[error("bad fuzzing configuration: {reason}")]
    /// The configuration is inconsistent or out of range.
    BadConfig {
        /// What is wrong with it.
        reason: String,
    },

    #[error("deliberately wrong variants need the `deliberate-bugs` feature of txdisk-crashfuzz")]
    /// A deliberate bug was asked for in a build without the `deliberate-bugs` feature.
    BugsNotBuilt,

    #[error("bad replay token: {reason}")]
    /// The replay token does not decode.
    BadToken {
        /// What is wrong with it.
        reason: String,
    },

    #[error("the token was made for layer {expected:?}, not {found:?}")]
    /// The token names another layer than the one asked to replay it.
    WrongLayer {
        /// The layer asked to replay it.
        expected: String,
        /// The layer the token names.
        found: String,
    },

    /// Formatting the starting image failed: the stack refused the geometry.
    #[error("could not set up the starting image: {detail}")]
    Setup {
        /// The stack's error, on one line.
        detail: String,
    },
}
