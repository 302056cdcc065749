//! The budget curve as an SVG (plotters): hit rate against hot budget for the suggested rules
//! (training and holdout), rules with pin lists (holdout), the greedy upper bound on the holdout
//! log, and the version's rules.

use std::path::Path;

use plotters::prelude::*;

use super::suggest::SuggestReport;
use super::{TuningError, TuningErrorKind};

fn plot_error(path: &Path, err: impl std::fmt::Display) -> TuningError {
    TuningError {
        kind: TuningErrorKind::Plot,
        message: format!("plot {}: {err}", path.display()),
    }
}

pub fn draw(report: &SuggestReport, path: &Path) -> Result<(), TuningError> {
    let fail = |err: &dyn std::fmt::Display| plot_error(path, err);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|err| fail(&err))?;
    let corpus = report.corpus_docs.max(1) as f64;
    let current_share = 100.0 * report.current.hot_docs as f64 / corpus;
    let max_budget = report
        .curve
        .iter()
        .map(|point| 100.0 * point.budget_share)
        .fold(current_share, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: hit rate by hot budget (ranked by {})",
                report.index, report.ranked_by
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_budget, 0.0..100.0)
        .map_err(|err| fail(&err))?;
    chart
        .configure_mesh()
        .x_desc("hot documents, % of the corpus")
        .y_desc("queries answered by the hot tier alone, %")
        .draw()
        .map_err(|err| fail(&err))?;
    let series = |pick: &dyn Fn(&super::suggest::CurvePoint) -> f64| -> Vec<(f64, f64)> {
        report
            .curve
            .iter()
            .map(|point| (100.0 * point.budget_share, 100.0 * pick(point)))
            .collect()
    };
    type Line = (&'static str, RGBColor, Vec<(f64, f64)>);
    let lines: [Line; 4] = [
        (
            "ceiling: greedy on the holdout itself",
            RGBColor(190, 190, 190),
            series(&|point| point.upper_bound.holdout_ceiling),
        ),
        (
            "upper bound: greedy on training pages (holdout)",
            RGBColor(100, 100, 100),
            series(&|point| point.upper_bound.holdout_hit_rate),
        ),
        (
            "suggested rule (train)",
            RGBColor(230, 120, 20),
            series(&|point| point.suggested.train_hit_rate),
        ),
        (
            "suggested rule (holdout)",
            RGBColor(30, 90, 200),
            series(&|point| point.suggested.holdout_hit_rate),
        ),
    ];
    let mut lines = lines.to_vec();
    if report.curve.iter().all(|point| point.with_pins.is_some()) {
        lines.push((
            "rule + pin list (holdout)",
            RGBColor(20, 150, 60),
            series(&|point| {
                point
                    .with_pins
                    .as_ref()
                    .map_or(0.0, |scored| scored.holdout_hit_rate)
            }),
        ));
    }
    for (label, color, points) in lines {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|err| fail(&err))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 3, color.filled())),
            )
            .map_err(|err| fail(&err))?;
    }
    let current = (current_share, 100.0 * report.current.holdout_hit_rate);
    chart
        .draw_series(std::iter::once(TriangleMarker::new(
            current,
            7,
            RED.filled(),
        )))
        .map_err(|err| fail(&err))?
        .label("the version's rules (holdout)")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 5, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|err| fail(&err))?;
    root.present().map_err(|err| fail(&err))?;
    Ok(())
}
