//! `[vrrp]` config section: file schema and validation.

use serde::Deserialize;

use crate::config::error::Problems;

/// `[vrrp]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpFile {}

/// Validated `[vrrp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpConfig {}

/// Validates `[vrrp]` found at key path `key`, recording problems.
pub fn validate(_file: &VrrpFile, _key: &str, _problems: &mut Problems) -> Option<VrrpConfig> {
    Some(VrrpConfig {})
}
