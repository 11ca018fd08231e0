//! The fuzzer's errors: a configuration or a replay token it cannot use. Violations found in
//! the stack are results, not errors (see `Violation`).

pub type Result<T, E = FuzzError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FuzzError {
    #[error("bad fuzzing configuration: {reason}")]
    BadConfig { reason: String },

    #[error("deliberately wrong variants need the `deliberate-bugs` feature of txdisk-crashfuzz")]
    BugsNotBuilt,

    #[error("bad replay token: {reason}")]
    BadToken { reason: String },

    #[error("the token was made for layer {expected:?}, not {found:?}")]
    WrongLayer { expected: String, found: String },

    /// Formatting the starting image failed: the stack refused the geometry.
    #[error("could not set up the starting image: {detail}")]
    Setup { detail: String },
}
