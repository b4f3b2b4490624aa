//! nginx.conf: the tokenizer and parser (the real grammar, includes
//! expanded), what is known about each directive, and the translation.

pub mod check;
pub mod directives;
pub mod lex;
pub mod parse;
pub mod print;
pub mod translate;
pub mod values;

pub use parse::{Directive, Parsed, Place};
