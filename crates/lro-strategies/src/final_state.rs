//! `final-state-via`: where the final resource of a finished operation comes from.

use std::fmt;
use std::str::FromStr;

/// Where to GET the final resource once the operation succeeded (the OpenAPI
/// `x-ms-long-running-operation-options.final-state-via` option).
///
/// Parsing is case-insensitive (`"Operation-Location"` works); azure-core compares the raw
/// string case-sensitively and silently ignores other spellings — a deliberate difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FinalStateVia {
    /// The status monitor's own body is the result for POST (no final GET).
    AzureAsyncOperation,
    /// GET the `Location` URL of the initial response.
    Location,
    /// GET the URL of the initial request. azure-core does not recognise this value (it falls
    /// back to its defaults); here it means what the OpenAPI extension says.
    OriginalUri,
    /// Like `AzureAsyncOperation`, for the `Operation-Location` header.
    OperationLocation,
}

impl FinalStateVia {
    /// The option's spelling in OpenAPI documents (`"azure-async-operation"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStateVia::AzureAsyncOperation => "azure-async-operation",
            FinalStateVia::Location => "location",
            FinalStateVia::OriginalUri => "original-uri",
            FinalStateVia::OperationLocation => "operation-location",
        }
    }
}

impl fmt::Display for FinalStateVia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `final-state-via` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFinalStateVia(String);

impl UnknownFinalStateVia {
    /// The value that was not recognised.
    pub fn value(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnknownFinalStateVia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown final-state-via {:?}: expected azure-async-operation, location, original-uri or operation-location",
            self.0
        )
    }
}

impl std::error::Error for UnknownFinalStateVia {}

impl FromStr for FinalStateVia {
    type Err = UnknownFinalStateVia;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            FinalStateVia::AzureAsyncOperation,
            FinalStateVia::Location,
            FinalStateVia::OriginalUri,
            FinalStateVia::OperationLocation,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| UnknownFinalStateVia(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_is_case_insensitive_and_round_trips() {
        assert_eq!("Operation-Location".parse(), Ok(FinalStateVia::OperationLocation));
        for v in ["azure-async-operation", "location", "original-uri", "operation-location"] {
            assert_eq!(v.parse::<FinalStateVia>().map(|f| f.to_string()).as_deref(), Ok(v));
        }
        assert!("final".parse::<FinalStateVia>().is_err());
    }
}
