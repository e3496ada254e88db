//! The summary chart: one horizontal bar per measure, its ratio to the baseline measured in the
//! same run, the goal marked on it. SVG through `plotters` (SVG backend only: no fonts or system
//! libraries are read; text is left to the viewer's sans-serif).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar.
pub struct Bar {
    /// What was measured (shown left of the bar).
    pub label: String,
    /// Its ratio to the baseline.
    pub ratio: f64,
    /// The goal as a ratio to the same baseline, if it has one.
    pub goal: Option<f64>,
    /// Whether the goal was met (`None`: no goal).
    pub met: Option<bool>,
}

/// Longest label drawn, in characters.
const LABEL_CHARS: usize = 62;
const WIDTH: u32 = 1100;
const ROW_HEIGHT: u32 = 26;
const MET: RGBColor = RGBColor(60, 150, 90);
const NOT_MET: RGBColor = RGBColor(210, 90, 80);
const NO_GOAL: RGBColor = RGBColor(140, 140, 150);
const FONT: &str = "sans-serif";

/// Draws `bars` under `title` to the SVG file at `path`.
pub fn render(path: &Path, title: &str, bars: &[Bar]) -> Result<(), String> {
    draw(path, title, bars).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(path: &Path, title: &str, bars: &[Bar]) -> Result<(), Box<dyn std::error::Error>> {
    let n = bars.len().max(1);
    let height = 120 + ROW_HEIGHT * n as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = bars
        .iter()
        .flat_map(|b| [b.ratio, b.goal.unwrap_or(0.0)])
        .fold(1.0, f64::max)
        * 1.15;
    let labels: Vec<String> = bars.iter().map(|b| shorten(&b.label)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(430)
        .build_cartesian_2d(0f64..x_max, (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (n - 1)
                .checked_sub(*i)
                .and_then(|row| labels.get(row).cloned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio to the baseline measured in the same run")
        .x_label_formatter(&|x| format!("{x:.1}×"))
        .label_style((FONT, 12))
        .draw()?;
    // The first bar on top: row i is drawn at segment n - 1 - i.
    let row = |i: usize| n - 1 - i;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let colour = match b.met {
            Some(true) => MET,
            Some(false) => NOT_MET,
            None => NO_GOAL,
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row(i))),
                (b.ratio, SegmentValue::Exact(row(i) + 1)),
            ],
            colour.filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        bar
    }))?;
    let value_style =
        TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!("{:.2}×", b.ratio),
            (b.ratio + x_max * 0.006, SegmentValue::CenterOf(row(i))),
            value_style.clone(),
        )
    }))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
            BLUE.stroke_width(1),
        )))?
        .label("baseline (1.0×)")
        .legend(|(x, y)| PathElement::new(vec![(x, y - 7), (x, y + 7)], BLUE.stroke_width(1)));
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            b.goal.map(|goal| {
                PathElement::new(
                    vec![
                        (goal, SegmentValue::Exact(row(i))),
                        (goal, SegmentValue::Exact(row(i) + 1)),
                    ],
                    BLACK.stroke_width(3),
                )
            })
        }))?
        .label("goal (absolute goals at their ratio to the run's baseline)")
        .legend(|(x, y)| PathElement::new(vec![(x, y - 7), (x, y + 7)], BLACK.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The label without markdown backticks, cut to [`LABEL_CHARS`].
fn shorten(label: &str) -> String {
    let plain = label.replace('`', "");
    if plain.chars().count() <= LABEL_CHARS {
        plain
    } else {
        let cut: String = plain.chars().take(LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::{Bar, render};

    #[test]
    fn draws_bars_goals_and_labels() {
        let path = std::env::temp_dir().join(format!("keel-chart-{}.svg", std::process::id()));
        let bars = [
            Bar {
                label: "healthz: keel `GET /healthz`".to_owned(),
                ratio: 0.96,
                goal: None,
                met: None,
            },
            Bar {
                label: "ledger: batched transfers".to_owned(),
                ratio: 4.03,
                goal: Some(2.0),
                met: Some(true),
            },
        ];
        let drawn = render(&path, "test", &bars);
        let svg = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        assert!(drawn.is_ok(), "{drawn:?}");
        assert!(svg.contains("<svg"));
        assert!(svg.contains("healthz: keel GET /healthz"));
        assert!(svg.contains("4.03×"));
    }
}
