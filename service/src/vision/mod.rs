//! Seed 004's AI vision annotations: the bounding boxes they carry.

pub mod bounding_box;

pub use bounding_box::{BoundingBox, InvalidBox, Point};
