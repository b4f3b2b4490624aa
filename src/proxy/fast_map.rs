//! The hash map for tables a request looks up on every request: virtual
//! hosts by listen address, server names, exact locations (and pools by
//! name, which requests now reach through their location instead).
//!
//! std's SipHash made these two to four lookups about 1.4 % of a proxied
//! request's user time (perf, 2026-12-05); foldhash is several times
//! cheaper on short keys. Its seed is still drawn per process, and every
//! key in these tables comes from the config, so a client can only look
//! keys up, never add colliding ones.

use std::collections::HashMap;

/// A [`HashMap`] with foldhash's fast hasher.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
