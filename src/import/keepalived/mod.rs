//! keepalived.conf: the parser (keepalived's line grammar, includes) and
//! the translation to `[vrrp]`.

pub mod nginx_check;
pub mod parse;
pub mod translate;
