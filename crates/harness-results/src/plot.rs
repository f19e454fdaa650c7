//! SVG figures: test accuracy against n_train (log axis), one line per source with its 95% CI
//! band, one panel per option. Plain SVG text, so it renders on GitHub and in any browser.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use harness_spec::Relation;

use crate::stats::ArmSummary;

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 64.0;
const MARGIN_R: f64 = 24.0;
const MARGIN_T: f64 = 56.0;
const MARGIN_B: f64 = 56.0;
const LEGEND_H: f64 = 34.0;
const COLOURS: [&str; 8] = [
    "#4d4d4d", "#1b7cc4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn option_title(option: i64) -> String {
    match option {
        1 => "Option 1: transferred layers frozen".into(),
        2 => "Option 2: all layers fine-tuned".into(),
        o => format!("Option {o}"),
    }
}

/// Where a panel lies and how values map into it: log-scaled n_train across, accuracy up.
struct Axes {
    x0: f64,
    y0: f64,
    lx: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn sx(&self, n: f64) -> f64 {
        self.x0 + (n.log10() - self.lx.0) / (self.lx.1 - self.lx.0) * PANEL_W
    }

    fn sy(&self, v: f64) -> f64 {
        self.y0 + PANEL_H - (v - self.y.0) / (self.y.1 - self.y.0) * PANEL_H
    }
}

/// The log10 range of the x axis: the measured sizes, padded by 6% each side.
fn x_range(ns: &BTreeSet<i64>) -> (f64, f64) {
    let (n_min, n_max) = (
        *ns.first().unwrap_or(&1) as f64,
        *ns.last().unwrap_or(&10) as f64,
    );
    let (lx_min, lx_max) = if n_max > n_min {
        (n_min.log10(), n_max.log10())
    } else {
        (n_min.log10() - 0.5, n_min.log10() + 0.5)
    };
    let pad = (lx_max - lx_min) * 0.06;
    (lx_min - pad, lx_max + pad)
}

/// The accuracy range of the y axis: every interval (or mean), to the tenth, within [0, 1].
fn y_range(arms: &[&ArmSummary]) -> (f64, f64) {
    let finite_or_mean = |v: f64, a: &ArmSummary| if v.is_finite() { v } else { a.accuracy.mean };
    let lows = arms.iter().map(|a| finite_or_mean(a.accuracy.low, a));
    let highs = arms.iter().map(|a| finite_or_mean(a.accuracy.high, a));
    let y_min = ((lows.fold(1.0f64, f64::min) - 0.02) * 10.0).floor() / 10.0;
    let y_max = ((highs.fold(0.0f64, f64::max) + 0.02) * 10.0).ceil() / 10.0;
    (y_min.max(0.0), y_max.min(1.0).max(y_min.max(0.0) + 0.1))
}

/// The legend entry of each source: its name and how its modality relates to the target's.
fn legend_labels(sources: &[String], arms: &[&ArmSummary]) -> Vec<String> {
    sources
        .iter()
        .map(|source| {
            let relation = arms
                .iter()
                .find(|a| &a.source == source)
                .map_or(Relation::None, |a| a.relation);
            match relation {
                Relation::None if source == "scratch" => "scratch (no pre-training)".to_string(),
                Relation::None => format!("{source}, no pre-training"),
                Relation::Matched => format!("{source} (same modality)"),
                Relation::Mismatched => format!("{source} (other modality)"),
                Relation::Floor => "floor (logistic regression on the raw input)".to_string(),
            }
        })
        .collect()
}

/// The legend's rows: (label index, entry width) each, wrapped to fit `width`.
fn legend_rows(labels: &[String], width: f64) -> Vec<Vec<(usize, f64)>> {
    // Width of each entry from its text (about 7.5 px per character at 13 px).
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new()];
    for (s, label) in labels.iter().enumerate() {
        let w = 32.0 + 6.8 * label.chars().count() as f64 + 20.0;
        let row_w: f64 = rows.last().unwrap().iter().map(|(_, w)| w).sum();
        if row_w + w > width - 20.0 && !rows.last().unwrap().is_empty() {
            rows.push(Vec::new());
        }
        rows.last_mut().unwrap().push((s, w));
    }
    rows
}

/// One figure for `target`: a panel per option, a line per source.
pub fn accuracy_figure(target: &str, arms: &[ArmSummary]) -> String {
    let arms: Vec<&ArmSummary> = arms.iter().filter(|a| a.target == target).collect();
    let options: BTreeSet<i64> = arms.iter().map(|a| a.option).collect();
    // Scratch first, then the others in name order, so colours are stable.
    let mut sources: Vec<String> = arms
        .iter()
        .map(|a| a.source.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sources.sort_by_key(|s| (!s.starts_with("scratch"), s.clone()));
    let ns: BTreeSet<i64> = arms.iter().map(|a| a.n_train).collect();
    let (lx, y) = (x_range(&ns), y_range(&arms));
    let panels = options.len().max(1) as f64;
    let width = MARGIN_L + panels * PANEL_W + (panels - 1.0) * MARGIN_L + MARGIN_R;
    let labels = legend_labels(&sources, &arms);
    let rows = legend_rows(&labels, width);
    let height = MARGIN_T + PANEL_H + MARGIN_B + LEGEND_H + (rows.len() - 1) as f64 * 22.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="{:.0}" y="22" text-anchor="middle" font-size="16" font-weight="bold">{}: test accuracy against training-set size (mean and 95% CI over seeds)</text>
"#,
        width / 2.0,
        escape(target)
    );
    for (p, option) in options.iter().enumerate() {
        let axes = Axes {
            x0: MARGIN_L + p as f64 * (PANEL_W + MARGIN_L),
            y0: MARGIN_T,
            lx,
            y,
        };
        panel_frame(&mut svg, &axes, *option, &ns);
        for (s, source) in sources.iter().enumerate() {
            let mut pts: Vec<&ArmSummary> = arms
                .iter()
                .copied()
                .filter(|a| a.option == *option && &a.source == source)
                .collect();
            pts.sort_by_key(|a| a.n_train);
            series(&mut svg, &axes, &pts, COLOURS[s % COLOURS.len()]);
        }
    }
    legend(&mut svg, &rows, &labels, width);
    svg.push_str("</svg>\n");
    svg
}

/// A panel's title, box, grid, ticks at the measured sizes and axis titles.
fn panel_frame(svg: &mut String, axes: &Axes, option: i64, ns: &BTreeSet<i64>) {
    let (x0, y0) = (axes.x0, axes.y0);
    let (y_min, y_max) = axes.y;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + PANEL_W / 2.0,
        y0 - 10.0,
        escape(&option_title(option))
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{x0:.1}" y="{y0:.1}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
    let steps = ((y_max - y_min) / 0.1).round() as usize;
    let stride = if steps > 6 { 2 } else { 1 };
    for i in (0..=steps).step_by(stride) {
        let v = y_min + i as f64 * 0.1;
        let y = axes.sy(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            x0 + PANEL_W
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"#,
            x0 - 6.0,
            y + 4.0
        );
    }
    for &n in ns {
        let x = axes.sx(n as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/>"##,
            y0 + PANEL_H
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{n}</text>"#,
            y0 + PANEL_H + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">training examples (n_train, log scale)</text>"#,
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 40.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">test accuracy</text>"#,
        x0 - 44.0,
        y0 + PANEL_H / 2.0
    );
}

/// One source's line in a panel: its interval band and whiskers, the line of means and a
/// point per size (with its numbers as a tooltip).
fn series(svg: &mut String, axes: &Axes, pts: &[&ArmSummary], colour: &str) {
    let (y_min, y_max) = axes.y;
    let band: Vec<(f64, f64, f64)> = pts
        .iter()
        .filter(|a| a.accuracy.low.is_finite())
        .map(|a| {
            (
                axes.sx(a.n_train as f64),
                axes.sy(a.accuracy.low.max(y_min)),
                axes.sy(a.accuracy.high.min(y_max)),
            )
        })
        .collect();
    if band.len() >= 2 {
        let mut d = String::new();
        for (i, (x, _, hi)) in band.iter().enumerate() {
            let _ = write!(d, "{}{x:.1},{hi:.1} ", if i == 0 { "M" } else { "L" });
        }
        for (x, lo, _) in band.iter().rev() {
            let _ = write!(d, "L{x:.1},{lo:.1} ");
        }
        let _ = writeln!(
            svg,
            r#"<path d="{d}Z" fill="{colour}" fill-opacity="0.15" stroke="none"/>"#
        );
    }
    for (x, lo, hi) in &band {
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{lo:.1}" x2="{x:.1}" y2="{hi:.1}" stroke="{colour}" stroke-width="1.5"/>"#
        );
    }
    if pts.is_empty() {
        return;
    }
    let line: Vec<String> = pts
        .iter()
        .map(|a| {
            format!(
                "{:.1},{:.1}",
                axes.sx(a.n_train as f64),
                axes.sy(a.accuracy.mean)
            )
        })
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2.5"/>"#,
        line.join(" ")
    );
    for a in pts {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{} option {} n={}: {:.3} [{:.3}, {:.3}]</title></circle>"#,
            axes.sx(a.n_train as f64),
            axes.sy(a.accuracy.mean),
            escape(&a.source),
            a.option,
            a.n_train,
            a.accuracy.mean,
            a.accuracy.low,
            a.accuracy.high
        );
    }
}

/// The legend, centred under the panels, in as many rows as it needs.
fn legend(svg: &mut String, rows: &[Vec<(usize, f64)>], labels: &[String], width: f64) {
    for (row, entries) in rows.iter().enumerate() {
        let ly = MARGIN_T + PANEL_H + MARGIN_B + 18.0 + row as f64 * 22.0;
        let mut x = width / 2.0 - entries.iter().map(|(_, w)| w).sum::<f64>() / 2.0;
        for &(s, w) in entries {
            let colour = COLOURS[s % COLOURS.len()];
            let _ = writeln!(
                svg,
                r#"<line x1="{x:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/>"#,
                x + 26.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 32.0,
                ly + 4.0,
                escape(&labels[s])
            );
            x += w;
        }
    }
}

/// One square of the gain heat map: a pre-trained source against scratch on one target, at one
/// option and n_train.
#[derive(Debug, Clone)]
pub struct GainCell {
    pub target: String,
    pub source: String,
    /// `matched` or `mismatched`.
    pub relation: Relation,
    pub option: i64,
    pub n_train: i64,
    /// Mean paired difference in test accuracy, source − scratch.
    pub gain: f64,
    /// Whether the 95% interval of the difference excludes 0.
    pub significant: bool,
}

/// Blue for a gain, red for a loss, white for none; `t` in [−1, 1].
fn diverging(t: f64) -> String {
    let t = t.clamp(-1.0, 1.0);
    let (r, g, b) = if t >= 0.0 {
        (
            255.0 - t * (255.0 - 33.0),
            255.0 - t * (255.0 - 102.0),
            255.0 - t * (255.0 - 172.0),
        )
    } else {
        let t = -t;
        (
            255.0 - t * (255.0 - 178.0),
            255.0 - t * (255.0 - 24.0),
            255.0 - t * (255.0 - 43.0),
        )
    };
    format!("#{:02x}{:02x}{:02x}", r as u8, g as u8, b as u8)
}

/// The heat map of gains over scratch: one panel per (n_train, option), targets down, sources
/// across; the number in each square is the gain in accuracy points.
/// Height of a square of the heat map.
const GAIN_CELL_H: f64 = 30.0;
/// Height of a heat-map panel's title and source names.
const GAIN_HEAD: f64 = 44.0;
/// Width of the heat map's target names, left of the panels.
const GAIN_LABEL_W: f64 = 150.0;

pub fn gain_figure(cells: &[GainCell]) -> String {
    const CELL_H: f64 = GAIN_CELL_H;
    const LABEL_W: f64 = GAIN_LABEL_W;
    const GAP: f64 = 28.0;
    const HEAD: f64 = GAIN_HEAD;
    let targets: Vec<String> = cells
        .iter()
        .map(|c| c.target.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sources: Vec<String> = cells
        .iter()
        .map(|c| c.source.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let options: Vec<i64> = cells
        .iter()
        .map(|c| c.option)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sizes: Vec<i64> = cells
        .iter()
        .map(|c| c.n_train)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Wide enough for the longest source name (11 px text, about 6.6 px a character).
    let cell_w = sources
        .iter()
        .map(|s| 6.6 * s.chars().count() as f64 + 16.0)
        .fold(112.0f64, f64::max);
    let scale = cells
        .iter()
        .map(|c| c.gain.abs())
        .filter(|g| g.is_finite())
        .fold(0.05f64, f64::max);
    let panel_w = sources.len() as f64 * cell_w;
    let panel_h = HEAD + targets.len() as f64 * CELL_H;
    let top = 64.0;
    // At least as wide as the title line.
    let width = (LABEL_W + options.len() as f64 * (panel_w + GAP) + 10.0).max(720.0);
    let legend_y = top + sizes.len() as f64 * (panel_h + GAP) + 6.0;
    let height = legend_y + 64.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{:.0}" y="22" text-anchor="middle" font-size="16" font-weight="bold">Gain over scratch: test accuracy points, pre-trained − scratch (mean over seeds)</text>
<text x="{:.0}" y="42" text-anchor="middle" fill="#444">Bold: 95% interval of the paired difference excludes 0. Outlined: source of the target's own modality.</text>
"##,
        width / 2.0,
        width / 2.0
    );
    for (row, &n) in sizes.iter().enumerate() {
        for (col, &option) in options.iter().enumerate() {
            let x0 = LABEL_W + col as f64 * (panel_w + GAP);
            let y0 = top + row as f64 * (panel_h + GAP);
            let panel = GainPanel {
                origin: (x0, y0),
                n,
                option,
                first: col == 0,
                cell_w,
                scale,
            };
            panel.draw(&mut svg, &targets, &sources, cells);
        }
    }
    colour_scale(&mut svg, width, legend_y, scale);
    svg.push_str("</svg>\n");
    svg
}

/// One square of the heat map at `(x, y)`: grey without a comparison; else coloured by the
/// gain against `scale`, outlined for a source of the target's modality, its number in bold
/// when the interval excludes 0.
fn gain_square(
    svg: &mut String,
    (x, y): (f64, f64),
    cell_w: f64,
    scale: f64,
    cell: Option<&GainCell>,
) {
    const CELL_H: f64 = GAIN_CELL_H;
    let Some(c) = cell else {
        let _ = writeln!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{cell_w}" height="{CELL_H}" fill="#f4f4f4" stroke="white"/>"##
        );
        return;
    };
    let _ = writeln!(
        svg,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{cell_w}" height="{CELL_H}" fill="{}" stroke="white"/>"#,
        diverging(c.gain / scale)
    );
    if c.relation == Relation::Matched {
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#111" stroke-width="2.5"/>"##,
            x + 1.5,
            y + 1.5,
            cell_w - 3.0,
            CELL_H - 3.0
        );
    }
    let dark = (c.gain / scale).abs() > 0.6;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}"{}>{:+.1}</text>"#,
        x + cell_w / 2.0,
        y + CELL_H / 2.0 + 4.0,
        if dark { "white" } else { "#111" },
        if c.significant {
            r#" font-weight="bold""#
        } else {
            ""
        },
        c.gain * 100.0
    );
}

/// The colour scale under the heat map, from −`scale` to +`scale` points.
fn colour_scale(svg: &mut String, width: f64, legend_y: f64, scale: f64) {
    let bar_w = 300.0;
    let bx = (width - bar_w) / 2.0;
    for k in 0..60 {
        let t = -1.0 + 2.0 * (k as f64 + 0.5) / 60.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{:.2}" y="{legend_y:.1}" width="{:.2}" height="14" fill="{}"/>"#,
            bx + k as f64 * bar_w / 60.0,
            bar_w / 60.0 + 0.3,
            diverging(t)
        );
    }
    for (t, label) in [
        (-1.0, format!("{:+.0}", -scale * 100.0)),
        (0.0, "0".to_string()),
        (1.0, format!("{:+.0} points", scale * 100.0)),
    ] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{label}</text>"#,
            bx + (t + 1.0) / 2.0 * bar_w,
            legend_y + 30.0
        );
    }
}

/// One panel of the heat map (one n_train and option): targets down, sources across.
struct GainPanel {
    origin: (f64, f64),
    n: i64,
    option: i64,
    /// The leftmost panel, which names the targets.
    first: bool,
    cell_w: f64,
    scale: f64,
}

impl GainPanel {
    fn draw(&self, svg: &mut String, targets: &[String], sources: &[String], cells: &[GainCell]) {
        const CELL_H: f64 = GAIN_CELL_H;
        const HEAD: f64 = GAIN_HEAD;
        const LABEL_W: f64 = GAIN_LABEL_W;
        let ((x0, y0), n, option) = (self.origin, self.n, self.option);
        let panel_w = sources.len() as f64 * self.cell_w;
        let (cell_w, scale) = (self.cell_w, self.scale);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">n_train {n}, option {option}</text>"#,
            x0 + panel_w / 2.0,
            y0 + 14.0
        );
        for (j, source) in sources.iter().enumerate() {
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#333">{}</text>"##,
                x0 + (j as f64 + 0.5) * cell_w,
                y0 + HEAD - 8.0,
                escape(source)
            );
        }
        for (i, target) in targets.iter().enumerate() {
            let y = y0 + HEAD + i as f64 * CELL_H;
            if self.first {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    LABEL_W - 10.0,
                    y + CELL_H / 2.0 + 4.0,
                    escape(target)
                );
            }
            for (j, source) in sources.iter().enumerate() {
                let x = x0 + j as f64 * cell_w;
                let cell = cells.iter().find(|c| {
                    &c.target == target
                        && &c.source == source
                        && c.option == option
                        && c.n_train == n
                });
                gain_square(svg, (x, y), cell_w, scale, cell);
            }
        }
    }
}
