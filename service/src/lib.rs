//! Strata's logic over the migrated schema, one module per domain.
//!
//! Every function takes a connection (`&DatabaseConnection` or a transaction) and says
//! in its documentation how many round trips and which locks it costs.

pub mod accounts;
pub mod audit;
pub mod cache;
pub mod db;
mod db_enum;
pub mod doctor;
pub mod error;
pub mod http;
pub mod lectures;
pub mod maintenance;
pub mod page;
pub mod provider;
pub mod queue;
pub mod review;
pub mod runtime;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod text_enum;
pub mod vision;
