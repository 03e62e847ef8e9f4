//! The one error type of running a program (interpreter and executor alike).

use std::fmt;

/// Why a program could not be loaded or a step could not run: bad inputs or symbols, missing
/// weights, or (in the interpreter) a kernel that broke a Kernel IR rule at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError {
    pub message: String,
}

impl ExecError {
    pub fn new(message: impl Into<String>) -> ExecError {
        ExecError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecError {}

pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T, ExecError> {
    Err(ExecError::new(message))
}
