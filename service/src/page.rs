//! Pages of a listing: how many rows, from which position.

/// The most rows one page holds.
pub const MAX_PAGE: u64 = 1000;

/// A page of a listing: `limit` rows (1 to [`MAX_PAGE`]) after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    limit: u64,
    offset: u64,
}

/// A page size outside 1..=[`MAX_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page size {0} is outside 1..={MAX_PAGE}")]
pub struct InvalidPage(pub u64);

impl Page {
    /// The page of `limit` rows after `offset`; [`InvalidPage`] for a size outside
    /// 1..=[`MAX_PAGE`].
    pub fn new(limit: u64, offset: u64) -> Result<Self, InvalidPage> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(InvalidPage(limit));
        }
        Ok(Self { limit, offset })
    }

    /// The first page of `limit` rows.
    pub fn first(limit: u64) -> Result<Self, InvalidPage> {
        Self::new(limit, 0)
    }

    /// The next page of the same size.
    pub fn next(self) -> Self {
        Self {
            offset: self.offset + self.limit,
            ..self
        }
    }

    /// How many rows.
    pub fn limit(self) -> u64 {
        self.limit
    }

    /// How many rows are skipped.
    pub fn offset(self) -> u64 {
        self.offset
    }
}

impl Default for Page {
    /// The first 100 rows.
    fn default() -> Self {
        Self {
            limit: 100,
            offset: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_refuse_sizes_outside_the_range_and_step_by_their_size() {
        assert_eq!(Page::new(0, 0), Err(InvalidPage(0)));
        assert_eq!(Page::new(MAX_PAGE + 1, 0), Err(InvalidPage(MAX_PAGE + 1)));
        let page = Page::first(25).expect("valid").next();
        assert_eq!((page.limit(), page.offset()), (25, 25));
    }
}
