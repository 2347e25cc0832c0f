//! Development database infrastructure, shared by the migration binary, the `strata`
//! CLI, the tests and the examples — never by the `service` library, which connects to
//! the URL it is given — and small on purpose: it depends on sea-orm and nothing of the
//! migration CLI.
//!
//! - [`embedded`]: the embedded default PostgreSQL cluster (started on demand when
//!   `DATABASE_URL` is unset).

pub mod embedded;
