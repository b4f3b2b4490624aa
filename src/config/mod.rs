//! Configuration: the TOML file schema, its validation, and the validated
//! form the rest of vigil reads.

pub mod error;
pub mod units;
