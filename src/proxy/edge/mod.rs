//! Edge controls at request time: the client's real address
//! ([`real_ip`]), rate and concurrency limits ([`limit_req`],
//! [`limit_conn`], over the lock-free [`table`]).
//!
//! The settings come validated from `config::edge`; this module holds
//! the live state (zones shared by every worker) and the pure decisions.

pub(crate) mod limit_conn;
pub(crate) mod limit_req;
pub(crate) mod real_ip;
pub(crate) mod table;
