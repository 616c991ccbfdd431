//! The page as one self-contained HTML file: inline CSS and inline SVG plots drawn by
//! `plotters` (its SVG backend, with no font files: text is left to the browser), no script
//! and no reference to anything outside the file, so it opens offline and from an archive.

use std::fmt::Write as _;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::model::{Curve, Page};
use crate::tournament::Role;

/// A plot that could not be drawn (plotters reports layout failures as errors).
type DrawResult = Result<(), String>;

const FONT: &str = "sans-serif";
const BAR_BLUE: RGBColor = RGBColor(31, 119, 180);
const BAR_ORANGE: RGBColor = RGBColor(230, 140, 20);
const BAR_RED: RGBColor = RGBColor(200, 40, 40);

pub fn html(page: &Page) -> String {
    let r = &page.report;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>gradients: {task}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>Task {task}</h1><p class=\"summary\">{}</p></header>\n",
        esc(&summary(page)),
        task = esc(&r.task),
    );
    leaderboard(&mut out, page);
    weights(&mut out, page);
    curves(&mut out, page);
    losses(&mut out, page);
    budget(&mut out, page);
    store(&mut out, page);
    let _ = write!(
        out,
        "<footer>run directory <code>{dir}</code> · audit: <code>gradients score --input {dir}/records.json</code>\
         </footer>\n</body>\n</html>\n",
        dir = esc(&r.run_dir)
    );
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.9em}th,td{padding:.25em .6em;text-align:right;border-bottom:1px solid #eee}\
th:first-child,td:first-child,td.text{text-align:left}tr.failed td{color:#a33}tr.reference td{color:#666}\
.grid{display:flex;flex-wrap:wrap;gap:.8em}figure{margin:0}figcaption{font-size:.85em;color:#555}\
p.empty{color:#777;font-style:italic}\
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}\
ul.legend span{display:inline-block;width:1.4em;height:.35em;margin-right:.4em;vertical-align:middle}footer{margin-top:2em;font-size:.8em;color:#555}code{font-size:.95em}";

fn summary(page: &Page) -> String {
    let r = &page.report;
    let mut parts = vec![r.task_type.clone(), format!("{:?}", r.phase)];
    if let Some(h) = r.hours {
        parts.push(format!("{:.0} s of training per entrant ({h} h)", h * 3600.0));
    }
    match (&r.winner, r.winner_beats_baseline_pct) {
        (Some(w), Some(pct)) if pct >= 0.0 => parts.push(format!("winner {w} beats the baseline by {pct:.1} %")),
        (Some(w), Some(pct)) => parts.push(format!("winner {w} is worse than the baseline by {:.1} %", -pct)),
        (Some(w), None) => parts.push(format!("winner {w}")),
        (None, _) => parts.push("no winner".into()),
    }
    if let Some(message) = &r.message {
        parts.push(message.clone());
    }
    parts.join(" · ")
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn leaderboard(out: &mut String, page: &Page) {
    let (a, b) = if page.text_type { ("test loss", "synth loss") } else { ("text-guided", "no-text") };
    let _ = write!(
        out,
        "<section id=\"leaderboard\"><h2>Leaderboard</h2>\n<table>\n<thead><tr><th>entrant</th><th>rank</th>\
         <th>strategy</th><th>{a}</th><th>{b}</th><th>weighted loss</th><th>train loss</th><th>score</th>\
         <th>status</th></tr></thead>\n<tbody>\n"
    );
    for row in &page.report.rows {
        let (x, y) =
            if page.text_type { (row.test_loss, row.synth_loss) } else { (row.text_guided_loss, row.no_text_loss) };
        let class = match (row.role, row.status.as_str()) {
            (_, "failed") => "entrant failed",
            (Role::Miner, _) => "entrant",
            _ => "entrant reference",
        };
        let status = match &row.reason {
            Some(why) => format!("{}: {}", row.status, why.lines().next().unwrap_or_default()),
            None => row.status.clone(),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\" data-entrant=\"{name}\" data-role=\"{role}\"><td>{name}</td><td>{rank}</td>\
             <td class=\"text\">{strategy}</td><td>{x}</td><td>{y}</td><td>{w}</td><td>{t}</td><td>{score}</td>\
             <td class=\"text\">{status}</td></tr>",
            name = esc(&row.entrant),
            role = role_name(row.role),
            rank = row.rank.map_or_else(|| "-".into(), |n| n.to_string()),
            strategy = esc(row.strategy.as_deref().unwrap_or("-")),
            x = num(x),
            y = num(y),
            w = num(row.weighted_loss),
            t = num(row.train_loss),
            score = row.score.map_or_else(|| "-".into(), |s| format!("{s:+.1}")),
            status = esc(&truncate(&status, 160)),
        );
    }
    out.push_str("</tbody>\n</table></section>\n");
}

fn weights(out: &mut String, page: &Page) {
    out.push_str(
        "<section id=\"weights\"><h2>Weights</h2>\n<p>This task's miners on the leaderboard over every run in the \
         data directory.</p>\n",
    );
    if page.report.weights.is_empty() {
        out.push_str("<p class=\"empty\">no weights (the task did not finish)</p></section>\n");
        return;
    }
    out.push_str("<table>\n<thead><tr><th>miner</th><th>weight</th><th>on chain (u16)</th></tr></thead>\n<tbody>\n");
    for w in &page.report.weights {
        let _ = writeln!(
            out,
            "<tr class=\"weight\" data-miner=\"{m}\"><td>{m}</td><td>{:.6}</td><td>{}</td></tr>",
            w.weight,
            w.weight_u16,
            m = esc(&w.miner)
        );
    }
    out.push_str("</tbody>\n</table></section>\n");
}

fn curves(out: &mut String, page: &Page) {
    out.push_str("<section id=\"training\"><h2>Training loss</h2>\n<div class=\"grid\">\n");
    for curve in &page.curves {
        let _ = write!(out, "<figure class=\"loss-curve\" data-entrant=\"{}\">", esc(&curve.entrant));
        if curve.points.is_empty() {
            let _ = write!(out, "<p class=\"empty\">{}: no training progress logged</p>", esc(&curve.entrant));
        } else {
            out.push_str(&svg((340, 220), |area| curve_plot(area, curve)));
        }
        out.push_str("</figure>\n");
    }
    out.push_str("</div></section>\n");
}

fn losses(out: &mut String, page: &Page) {
    let (a, b) = if page.text_type { ("test loss", "synthetic loss") } else { ("text-guided loss", "no-text loss") };
    let _ = write!(
        out,
        "<section id=\"losses\"><h2>{} vs {b}</h2>\n<p>A submission far above the diagonal did much worse on the \
         synthetic data than on the test data.</p>\n<figure id=\"test-vs-synth\">",
        capitalise(a)
    );
    if page.losses.is_empty() {
        out.push_str("<p class=\"empty\">no entrant has both losses</p>");
    } else {
        out.push_str(&svg((560, 420), |area| loss_plot(area, page, a, b)));
    }
    out.push_str("</figure></section>\n");
}

fn budget(out: &mut String, page: &Page) {
    out.push_str(
        "<section id=\"budget\"><h2>Time budget</h2>\n<p>Seconds each entrant's training ran; the line is the \
         time it was given. Blue: finished its planned epochs; orange: stopped by its deadline; red: failed.</p>\n\
         <figure id=\"time-budget\">",
    );
    if page.budgets.iter().all(|b| b.used_s.is_none()) {
        out.push_str("<p class=\"empty\">no training has run</p>");
    } else {
        let height = 90 + 30 * page.budgets.len() as u32;
        out.push_str(&svg((720, height), |area| budget_plot(area, page)));
    }
    out.push_str("</figure></section>\n");
}

fn store(out: &mut String, page: &Page) {
    let history = &page.store;
    let _ = write!(
        out,
        "<section id=\"store\"><h2>Leaderboard store</h2>\n<p>Standings after the latest of the {} task(s) recorded \
         in the data directory, and every miner's weight after each one.</p>\n",
        history.snapshots.len()
    );
    if history.standings.is_empty() {
        out.push_str("<p class=\"empty\">the store has no miner yet</p></section>\n");
        return;
    }
    out.push_str(
        "<table id=\"standings\">\n<thead><tr><th>miner</th><th>weight</th><th>quality</th><th>tasks</th>\
         <th>window sums</th></tr></thead>\n<tbody>\n",
    );
    for m in &history.standings {
        let sums: Vec<String> = m.window_sums.iter().map(|s| format!("{s:+.2}")).collect();
        let _ = writeln!(
            out,
            "<tr class=\"standing\" data-miner=\"{name}\"><td>{name}</td><td>{:.6}</td><td>{:.4}</td><td>{}</td>\
             <td>{}</td></tr>",
            m.weight,
            m.quality,
            m.tasks,
            sums.join(" / "),
            name = esc(&m.miner),
        );
    }
    out.push_str("</tbody>\n</table>\n<figure id=\"weights-over-time\">");
    out.push_str(&svg((720, 360), |area| history_plot(area, page)));
    // The legend in HTML, beside the plot: plotters' own would hide lines.
    out.push_str("<figcaption><ul class=\"legend\">");
    for (i, m) in history.standings.iter().enumerate() {
        let RGBAColor(r, g, b, _) = Palette99::pick(i).to_rgba();
        let _ = write!(out, "<li><span style=\"background:#{r:02x}{g:02x}{b:02x}\"></span>{}</li>", esc(&m.miner));
    }
    out.push_str("</ul></figcaption></figure></section>\n");
}

/// Draws with `plot` into an SVG document of `size` pixels; a failure shows as a note.
fn svg(size: (u32, u32), plot: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult) -> String {
    let mut text = String::new();
    let drawn = {
        let area = SVGBackend::with_string(&mut text, size).into_drawing_area();
        let drawn = area.fill(&WHITE).map_err(|e| e.to_string()).and_then(|()| plot(&area));
        drawn.and_then(|()| area.present().map_err(|e| e.to_string()))
    };
    match drawn {
        Ok(()) => text,
        Err(e) => format!("<p class=\"empty\">this plot could not be drawn: {}</p>", esc(&e)),
    }
}

fn curve_plot(area: &DrawingArea<SVGBackend, Shift>, curve: &Curve) -> DrawResult {
    let last_step = curve.points.last().map_or(1.0, |p| p.0);
    let x_max = curve.total_steps.map_or(last_step, |t| (t as f64).max(last_step)).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({})", curve.entrant, role_name(curve.role)), (FONT, 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..x_max, padded(curve.points.iter().map(|p| p.1)))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("train loss")
        .x_labels(5)
        .y_labels(5)
        .label_style((FONT, 11))
        .draw()
        .map_err(|e| e.to_string())?;
    let colour = BAR_BLUE;
    chart
        .draw_series(LineSeries::new(curve.points.iter().copied(), colour.stroke_width(2)))
        .map_err(|e| e.to_string())?;
    chart.draw_series(curve.points.iter().map(|p| Circle::new(*p, 2, colour.filled()))).map_err(|e| e.to_string())?;
    Ok(())
}

fn loss_plot(area: &DrawingArea<SVGBackend, Shift>, page: &Page, x_desc: &str, y_desc: &str) -> DrawResult {
    let range = padded(page.losses.iter().flat_map(|p| [p.x, p.y]));
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(range.clone(), range.clone())
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).label_style((FONT, 12)).draw().map_err(|e| e.to_string())?;
    // The diagonal: equal losses on both sets.
    chart
        .draw_series(LineSeries::new([(range.start, range.start), (range.end, range.end)], BLACK.mix(0.3)))
        .map_err(|e| e.to_string())?;
    for (i, p) in page.losses.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let marker = match p.role {
            Role::Miner => Circle::new((p.x, p.y), 5, colour.filled()).into_dyn(),
            _ => TriangleMarker::new((p.x, p.y), 6, colour.filled()).into_dyn(),
        };
        chart.draw_series(std::iter::once(marker)).map_err(|e| e.to_string())?;
        // The name next to its marker (an offset in pixels).
        let label = Text::new(format!("{} ({})", p.entrant, p.status), (8, -6), (FONT, 12).into_font());
        chart.draw_series(std::iter::once(EmptyElement::at((p.x, p.y)) + label)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn budget_plot(area: &DrawingArea<SVGBackend, Shift>, page: &Page) -> DrawResult {
    let budgets = &page.budgets;
    let given = budgets.iter().find_map(|b| b.budget_s);
    let longest = budgets.iter().filter_map(|b| b.used_s).fold(given.unwrap_or(1.0), f64::max);
    let names: Vec<String> = budgets.iter().map(|b| b.entrant.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..longest * 1.1, (0..budgets.len()).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("seconds of training")
        .y_labels(budgets.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, b) in budgets.iter().enumerate() {
        let Some(used) = b.used_s else { continue };
        let colour = match (b.outcome.as_str(), b.stopped_by_deadline) {
            ("failed", _) => BAR_RED.mix(0.8),
            (_, Some(true)) => BAR_ORANGE.mix(0.9),
            _ => BAR_BLUE.mix(0.8),
        };
        let mut bar =
            Rectangle::new([(0.0, SegmentValue::Exact(i)), (used, SegmentValue::Exact(i + 1))], colour.filled());
        bar.set_margin(4, 4, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(|e| e.to_string())?;
    }
    if let Some(given) = given {
        let line = [(given, SegmentValue::Exact(0)), (given, SegmentValue::Last)];
        chart
            .draw_series(LineSeries::new(line, BLACK.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("budget: {given:.0} s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn history_plot(area: &DrawingArea<SVGBackend, Shift>, page: &Page) -> DrawResult {
    let snapshots = &page.store.snapshots;
    let Some(first) = snapshots.first().map(|s| s.at) else { return Ok(()) };
    let span_s = snapshots.last().map_or(0, |s| (s.at - first).num_seconds()) as f64;
    // Minutes for a day of runs, hours for a few days, days for the leaderboard's windows.
    let (unit_s, unit) = match span_s {
        s if s <= 3.0 * 3600.0 => (60.0, "minutes"),
        s if s <= 72.0 * 3600.0 => (3600.0, "hours"),
        _ => (86400.0, "days"),
    };
    let since = |at: chrono::DateTime<chrono::Utc>| (at - first).num_seconds() as f64 / unit_s;
    let x_max = (span_s / unit_s).max(1.0);
    let top = snapshots.iter().flat_map(|s| s.weights.iter().map(|w| w.1)).fold(0.0, f64::max).max(0.01);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.02 * x_max..x_max * 1.02, 0.0..top * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(format!("{unit} since {}", first.format("%Y-%m-%d %H:%M UTC")))
        .y_desc("weight")
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, standing) in page.store.standings.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        // A miner absent from a snapshot had weight 0 then.
        let series: Vec<(f64, f64)> = snapshots
            .iter()
            .map(|s| (since(s.at), s.weights.iter().find(|w| w.0 == standing.miner).map_or(0.0, |w| w.1)))
            .collect();
        chart
            .draw_series(LineSeries::new(series.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart.draw_series(series.iter().map(|p| Circle::new(*p, 3, colour.filled()))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The range of `values` with a margin (a single value gets a unit-wide range).
fn padded(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { 0.5 };
    lo - pad..hi + pad
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Miner => "miner",
        Role::Baseline => "baseline",
        Role::BaseModel => "base model",
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() > max { format!("{}…", text.chars().take(max).collect::<String>()) } else { text.into() }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
