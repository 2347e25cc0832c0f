//! What [`super::CacheCore::get_or_compute`] returns: the value and how it was got.

use serde::Serialize;

/// How [`super::CacheCore::get_or_compute`] got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Stored already: read at once (one round trip).
    Hit,
    /// Missing: this caller computed it and stored it.
    Computed,
    /// Missing at first, then stored by another caller (a task of this process or
    /// another process) that held the key's lock: this one waited and read its result.
    Waited,
}

impl std::fmt::Display for Origin {
    /// `hit`, `computed` or `waited`, as serde names them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Hit => "hit",
            Origin::Computed => "computed",
            Origin::Waited => "waited",
        })
    }
}

/// A value from [`super::CacheCore::get_or_compute`], and how it was got.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched<V> {
    /// The value.
    pub value: V,
    /// Whether it was stored already, computed by this caller, or computed by another
    /// while this one waited.
    pub origin: Origin,
}

impl<V> Fetched<V> {
    /// Whether this caller computed the value (the compute closure ran).
    pub fn computed(&self) -> bool {
        self.origin == Origin::Computed
    }

    /// The value, without how it was got.
    pub fn into_value(self) -> V {
        self.value
    }
}
