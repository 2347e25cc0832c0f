//! The bounding box of seed 004's annotations: `{topLeft: {x, y}, bottomRight: {x, y},
//! width, height}`, normalised to the image (0..1), checked here as the schema's
//! `check_bounding_box_*` constraints check it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A point of the image, each coordinate 0..1 of its width or height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// From the left edge.
    pub x: f64,
    /// From the top edge.
    pub y: f64,
}

/// A box around what an annotation marks. Made by [`BoundingBox::new`] or
/// [`BoundingBox::from_json`], which refuse what the schema would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundingBox {
    /// The top-left corner.
    pub top_left: Point,
    /// The bottom-right corner.
    pub bottom_right: Point,
    /// `bottom_right.x - top_left.x`.
    pub width: f64,
    /// `bottom_right.y - top_left.y`.
    pub height: f64,
}

/// A box the schema would refuse, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid bounding box {value}: {reason}")]
pub struct InvalidBox {
    /// The box as given.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// How far `width` and `height` may differ from the corners' distance (the schema's
/// tolerance).
const TOLERANCE: f64 = 0.001;

impl BoundingBox {
    /// The box from `top_left` (x1, y1) to `bottom_right` (x2, y2); its width and
    /// height are rounded to 9 decimals, so they read back from `jsonb` as written.
    pub fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Result<Self, InvalidBox> {
        let round = |v: f64| (v * 1e9).round() / 1e9;
        let b = Self {
            top_left: Point { x: x1, y: y1 },
            bottom_right: Point { x: x2, y: y2 },
            width: round(x2 - x1),
            height: round(y2 - y1),
        };
        b.check()?;
        Ok(b)
    }

    /// The box a JSON value describes, in the schema's shape.
    pub fn from_json(value: &Value) -> Result<Self, InvalidBox> {
        let b: Self = serde_json::from_value(value.clone()).map_err(|_| InvalidBox {
            value: value.to_string(),
            reason: "needs topLeft {x, y}, bottomRight {x, y}, width and height, all numbers",
        })?;
        b.check()?;
        Ok(b)
    }

    /// The box as the schema stores it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "topLeft": {"x": self.top_left.x, "y": self.top_left.y},
            "bottomRight": {"x": self.bottom_right.x, "y": self.bottom_right.y},
            "width": self.width,
            "height": self.height,
        })
    }

    fn check(&self) -> Result<(), InvalidBox> {
        let bad = |reason| InvalidBox {
            value: self.to_json().to_string(),
            reason,
        };
        let coords = [
            self.top_left.x,
            self.top_left.y,
            self.bottom_right.x,
            self.bottom_right.y,
        ];
        if !coords.iter().all(|c| (0.0..=1.0).contains(c)) {
            return Err(bad("coordinates are 0 to 1"));
        }
        if self.bottom_right.x <= self.top_left.x || self.bottom_right.y <= self.top_left.y {
            return Err(bad("bottomRight is right of and below topLeft"));
        }
        let (w, h) = (
            self.bottom_right.x - self.top_left.x,
            self.bottom_right.y - self.top_left.y,
        );
        if (self.width - w).abs() > TOLERANCE || (self.height - h).abs() > TOLERANCE {
            return Err(bad("width and height are the corners' distances"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn boxes_are_checked_as_the_schema_checks_them() {
        let b = BoundingBox::new(0.1, 0.2, 0.5, 0.9).expect("valid");
        assert_eq!(BoundingBox::from_json(&b.to_json()), Ok(b));
        assert!(BoundingBox::new(0.5, 0.2, 0.1, 0.9).is_err(), "inverted");
        assert!(BoundingBox::new(0.1, 0.2, 1.5, 0.9).is_err(), "outside");
        assert!(BoundingBox::new(f64::NAN, 0.2, 0.5, 0.9).is_err(), "NaN");
        let wrong_width = json!({"topLeft": {"x": 0.1, "y": 0.1}, "bottomRight": {"x": 0.3, "y": 0.3},
                                 "width": 0.5, "height": 0.2});
        assert!(BoundingBox::from_json(&wrong_width).is_err());
        assert!(BoundingBox::from_json(&json!({"x": 1})).is_err());
    }
}
