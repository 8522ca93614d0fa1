//! The loss curve of a run as an SVG (plotters' SVG backend): training loss against the step, and
//! the evaluation loss and headline metric when the run evaluated.

use std::path::Path;

use plotters::prelude::*;

use crate::checkpoint::LogEntry;
use crate::error::{Result, TrainError};
use crate::output_dir::write_whole;

/// A named series of (step, value) points and its colour.
type Series<'a> = (&'a str, &'a Vec<(f64, f64)>, RGBColor);

/// Draws the curves of `log` (`metric`: the `eval_*` key to plot beside the loss) into `path`,
/// replaced whole: drawn in memory, then written beside it and renamed, so a killed run never
/// leaves a truncated SVG.
pub fn write_curve(path: &Path, log: &[LogEntry], metric: Option<&str>) -> Result<()> {
    let mut svg = String::new();
    draw_curve(&mut svg, path, log, metric)?;
    write_whole(path, svg.as_bytes())
}

fn draw_curve(svg: &mut String, path: &Path, log: &[LogEntry], metric: Option<&str>) -> Result<()> {
    let plot_error = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: path.into(),
        reason: e.to_string(),
    };
    let train: Vec<(f64, f64)> = log
        .iter()
        .filter_map(|e| Some((e.step as f64, e.loss?)))
        .collect();
    let eval_loss: Vec<(f64, f64)> = log
        .iter()
        .filter_map(|e| Some((e.step as f64, *e.eval.get("eval_loss")?)))
        .collect();
    let eval_metric: Vec<(f64, f64)> = match metric {
        Some(m) => log
            .iter()
            .filter_map(|e| Some((e.step as f64, *e.eval.get(m)?)))
            .collect(),
        None => Vec::new(),
    };
    let root = SVGBackend::with_string(svg, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(&e))?;
    let (top, bottom) = root.split_vertically(300);
    let draw = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                title: &str,
                series: &[Series]|
     -> Result<()> {
        let points = series.iter().flat_map(|s| s.1.iter());
        let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in points.filter(|p| p.1.is_finite()) {
            x1 = x1.max(*x);
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        if !y0.is_finite() {
            return Ok(());
        }
        let pad = ((y1 - y0) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| plot_error(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| plot_error(&e))?;
        for (name, data, color) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(data.iter().copied(), color))
                .map_err(|e| plot_error(&e))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_error(&e))
    };
    draw(
        &top,
        "loss",
        &[("train loss", &train, BLUE), ("eval loss", &eval_loss, RED)],
    )?;
    if let Some(m) = metric {
        draw(&bottom, m, &[(m, &eval_metric, GREEN)])?;
    }
    root.present().map_err(|e| plot_error(&e))
}
