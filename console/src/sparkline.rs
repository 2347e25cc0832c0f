//! A sparkline drawn on the server: counts as an inline SVG polyline.

/// `counts` (oldest first) as an inline SVG of `width` × `height` pixels: a
/// polyline scaled to the largest count, with a `<title>` giving the total and the
/// peak for screen readers and hover.
pub fn sparkline(counts: &[i64], width: u32, height: u32) -> String {
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: i64 = counts.iter().sum();
    let peak = counts.iter().copied().max().unwrap_or(0);
    let step = if counts.len() > 1 {
        f64::from(width) / (counts.len() - 1) as f64
    } else {
        0.0
    };
    let h = f64::from(height) - 2.0;
    let points: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| format!("{:.1},{:.1}", i as f64 * step, 1.0 + h - c as f64 / max * h))
        .collect();
    format!(
        "<svg class=\"sparkline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"{total} completed in the last hour, peak {peak} a minute\">\
         <title>{total} completed in the last hour, peak {peak} a minute</title>\
         <polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peak_touches_the_top_and_zero_the_bottom() {
        let svg = super::sparkline(&[0, 5, 10], 100, 22);
        assert!(
            svg.contains("points=\"0.0,21.0 50.0,11.0 100.0,1.0\""),
            "{svg}"
        );
        assert!(svg.contains("15 completed in the last hour, peak 10 a minute"));
        let flat = super::sparkline(&[0; 60], 120, 22);
        assert!(flat.contains("0.0,21.0"), "{flat}");
    }
}
