//! Small PNG charts for BENCHMARKS.md: queue throughput against workers, and how end-to-end
//! render latency is spread.

use std::path::Path;

use plotters::prelude::*;

use crate::queues::Figures;

const FONT: &str = "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf";
const COLOURS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Registers the one font the charts use (fonts-liberation, installed by the setup script).
fn register_font() -> Result<()> {
    let bytes = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (install fonts-liberation)"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| "the chart font is not a TrueType font")?;
    Ok(())
}

/// Claim+complete jobs per second against the number of workers, one line per queue.
pub fn throughput(path: &Path, queues: &[Figures]) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = queues.iter().flat_map(|q| q.throughput.iter().map(|t| t.1)).fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("claim + complete throughput (no-op jobs)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..8.5f64, 0f64..top)?;
    chart.configure_mesh().x_desc("workers").y_desc("jobs / s").x_labels(8).draw()?;
    for (q, colour) in queues.iter().zip(COLOURS) {
        let points: Vec<(f64, f64)> = q.throughput.iter().map(|(w, r)| (*w as f64, *r)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(q.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// The share of jobs finished within each latency, for each named series of latencies (ms).
pub fn latency(path: &Path, series: &[(&str, Vec<f64>)]) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let right = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("small page, one at a time: latency distribution", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..right.max(1.0), 0f64..100f64)?;
    chart.configure_mesh().x_desc("ms").y_desc("% of pages within").draw()?;
    for ((name, values), colour) in series.iter().zip(COLOURS) {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        let points: Vec<(f64, f64)> =
            sorted.iter().enumerate().map(|(i, v)| (*v, (i + 1) as f64 * 100.0 / n)).collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
