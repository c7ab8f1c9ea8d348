//! Zones: polygons in normalised picture coordinates (0..=1 on both axes).

use super::config::{RuleError, invalid};

/// Distance within which a point counts as on a polygon's edge, so that a box touching the
/// picture's border is inside a zone drawn along that border.
const EDGE_EPSILON: f32 = 1e-5;

/// A closed polygon in normalised picture coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<[f32; 2]>,
}

impl Polygon {
    /// Checks a polygon from config; `key` names it in errors, e.g. `rules[0].zones[1]`.
    pub fn parse(points: &[[f32; 2]], key: &str) -> Result<Self, RuleError> {
        if points.len() < 3 {
            return Err(invalid(key, format!("a polygon needs at least 3 points, got {}", points.len())));
        }
        for (k, p) in points.iter().enumerate() {
            if !p.iter().all(|v| (0.0..=1.0).contains(v)) {
                return Err(invalid(
                    format!("{key}[{k}]"),
                    format!("coordinates are fractions of the picture in 0..=1, got [{}, {}]", p[0], p[1]),
                ));
            }
        }
        Ok(Self { points: points.to_vec() })
    }

    /// The corners.
    pub fn points(&self) -> &[[f32; 2]] {
        &self.points
    }

    /// Whether (x, y) lies inside or on the edge of the polygon.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        on_edge(&self.points, x, y) || point_in_polygon(&self.points, x, y)
    }
}

/// Even-odd ray casting: whether (x, y) is strictly inside `points`; false for NaN or < 3 points.
pub fn point_in_polygon(points: &[[f32; 2]], x: f32, y: f32) -> bool {
    if points.len() < 3 || !x.is_finite() || !y.is_finite() {
        return false;
    }
    let mut inside = false;
    let mut j = points.len() - 1;
    for i in 0..points.len() {
        let [xi, yi] = points[i];
        let [xj, yj] = points[j];
        // The straddle test guarantees yj != yi, so the division is safe.
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn on_edge(points: &[[f32; 2]], x: f32, y: f32) -> bool {
    if points.len() < 2 || !x.is_finite() || !y.is_finite() {
        return false;
    }
    let mut j = points.len() - 1;
    for i in 0..points.len() {
        if segment_distance(points[j], points[i], x, y) <= EDGE_EPSILON {
            return true;
        }
        j = i;
    }
    false
}

fn segment_distance(a: [f32; 2], b: [f32; 2], x: f32, y: f32) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((x - a[0]) * dx + (y - a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let (px, py) = (a[0] + t * dx, a[1] + t * dy);
    ((x - px).powi(2) + (y - py).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [[f32; 2]; 4] = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];

    #[test]
    fn ray_casting_square_triangle_and_concave() {
        assert!(point_in_polygon(&SQUARE, 0.5, 0.5));
        assert!(!point_in_polygon(&SQUARE, 1.5, 0.5));
        assert!(!point_in_polygon(&SQUARE, 0.5, -0.1));
        let tri = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        assert!(point_in_polygon(&tri, 0.2, 0.2));
        assert!(!point_in_polygon(&tri, 0.8, 0.8));
        // A "U": the notch between the arms is outside.
        let u = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.7], [0.7, 0.7], [0.7, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert!(!point_in_polygon(&u, 0.5, 0.3));
        assert!(point_in_polygon(&u, 0.15, 0.3));
        assert!(point_in_polygon(&u, 0.5, 0.9));
    }

    #[test]
    fn degenerate_input_is_outside() {
        assert!(!point_in_polygon(&SQUARE[..2], 0.5, 0.0));
        assert!(!point_in_polygon(&SQUARE, f32::NAN, 0.5));
        assert!(!point_in_polygon(&[], 0.5, 0.5));
        let p = Polygon::parse(&SQUARE, "z").expect("valid");
        assert!(!p.contains(f32::NAN, f32::NAN));
        assert!(!p.contains(f32::INFINITY, 0.5));
    }

    #[test]
    fn border_points_count_as_inside() {
        let p = Polygon::parse(&SQUARE, "z").expect("valid");
        assert!(p.contains(0.5, 1.0), "a box touching the bottom edge");
        assert!(p.contains(0.0, 0.0));
        assert!(p.contains(1.0, 0.3));
        assert!(!p.contains(0.5, 1.01));
    }

    #[test]
    fn parse_names_the_bad_key() {
        let e = Polygon::parse(&SQUARE[..2], "rules[1].zones[0]").unwrap_err();
        assert_eq!(e.key(), "rules[1].zones[0]");
        let e = Polygon::parse(&[[0.0, 0.0], [1.2, 0.0], [0.0, 1.0]], "rules[1].zones[0]").unwrap_err();
        assert_eq!(e.key(), "rules[1].zones[0][1]");
        let e = Polygon::parse(&[[0.0, 0.0], [f32::NAN, 0.0], [0.0, 1.0]], "z").unwrap_err();
        assert_eq!(e.key(), "z[1]");
    }
}
