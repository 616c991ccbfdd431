//! The per-entrant display on stderr. On a terminal: one line per entrant with its phase, a
//! bar of its time budget, elapsed / allotted time, steps and the latest train loss, redrawn
//! in place (indicatif) and fitted to the terminal's width. Otherwise a line whenever an
//! entrant's phase changes, so logs stay readable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::tournament::{Entrant, TaskState, Work, WorkKind, WorkOutput, WorkloadId};

/// `(step, total steps, loss)` from a trainer's latest progress line.
pub type StepLoss = (u64, u64, Option<f64>);

/// What the executor knows beyond the state: running workloads (elapsed seconds and the
/// latest `(step, total, loss)` progress line) and queued ones.
#[derive(Debug, Default)]
pub struct Live {
    pub running: BTreeMap<WorkloadId, (f64, Option<StepLoss>)>,
    pub queued: BTreeSet<WorkloadId>,
}

/// One entrant as shown: `used` of `budget` seconds of its training time.
#[derive(Debug, Clone, PartialEq)]
pub struct EntrantView {
    pub name: String,
    pub phase: String,
    pub used_s: f64,
    pub budget_s: f64,
    pub detail: String,
}

pub struct Progress {
    mode: Mode,
}

enum Mode {
    Off,
    /// Not a terminal: a line per phase change.
    Plain {
        last_phase: BTreeMap<String, String>,
    },
    Terminal(Board),
}

impl Progress {
    pub fn new(enabled: bool, run_dir: &Path) -> Self {
        if !enabled {
            return Self { mode: Mode::Off };
        }
        eprintln!("run directory: {}", run_dir.display());
        if std::io::stderr().is_terminal() {
            Self::on_screen(Screen::stderr(), FRAME)
        } else {
            Self { mode: Mode::Plain { last_phase: BTreeMap::new() } }
        }
    }

    /// The live view drawn on `screen` (a terminal, or an emulated one in tests), at most one
    /// frame per `every` (and at once after a resize).
    pub fn on_screen(screen: Screen, every: Duration) -> Self {
        Self { mode: Mode::Terminal(Board::new(screen, every)) }
    }

    /// A lifecycle event (phase change, retry) on its own line(s).
    pub fn event(&mut self, reason: &str, message: &str) {
        let text = format!("[{reason}] {message}");
        match &mut self.mode {
            Mode::Off => {}
            Mode::Plain { .. } => eprintln!("{text}"),
            Mode::Terminal(board) => board.event(&text),
        }
    }

    pub fn draw(&mut self, state: &TaskState, live: &Live, _now: DateTime<Utc>) {
        if state.entrants.is_empty() {
            return;
        }
        let hours = state.hours.unwrap_or(0.0);
        let views = state.entrants.iter().map(|e| view(e, hours, live));
        match &mut self.mode {
            Mode::Off => {}
            Mode::Plain { last_phase } => {
                for v in views {
                    if last_phase.get(&v.name) != Some(&v.phase) {
                        eprintln!("  {:<16} {:<10} {}", v.name, v.phase, v.detail);
                        last_phase.insert(v.name, v.phase);
                    }
                }
            }
            Mode::Terminal(board) => board.draw(views),
        }
    }

    /// Removes the live lines: the final report follows.
    pub fn finish(&mut self) {
        if let Mode::Terminal(board) = &mut self.mode {
            board.finish();
        }
    }
}

/// Width of the name and phase columns.
const NAME: usize = 14;
const PHASE: usize = 10;
/// Events kept to re-print after a resize clears the screen.
const KEPT_EVENTS: usize = 50;
/// A frame a second on a terminal.
const FRAME: Duration = Duration::from_millis(900);

struct Board {
    screen: Screen,
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    /// The width the bars were made for.
    styled_for: Option<u16>,
    drawn_at: Option<Instant>,
    every: Duration,
}

fn multi_on(screen: &Screen) -> MultiProgress {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), 1));
    // Every frame rewrites every line in place; the screen adapter clears what is left over.
    multi.set_move_cursor(true);
    multi
}

impl Board {
    fn new(screen: Screen, every: Duration) -> Self {
        let multi = multi_on(&screen);
        Self { screen, multi, bars: BTreeMap::new(), styled_for: None, drawn_at: None, every }
    }

    /// After a resize, bars drawn for the old width would be drawn again (and wrap) until each
    /// is updated: start over with new bars on a new board, the old one silenced.
    fn rebuild(&mut self) {
        // Detaching clears the old lines: not on this screen, which starts over by itself.
        self.screen.0.state().muted = true;
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        self.screen.0.state().muted = false;
        self.bars.clear();
        self.multi = multi_on(&self.screen);
    }

    fn event(&mut self, text: &str) {
        let width = usize::from(self.screen.0.usable_width());
        for chunk in chunks(text, width) {
            if self.bars.is_empty() {
                // Nothing drawn yet: a plain line (indicatif would draw over a lone text line).
                let _ = self.screen.0.write(&format!("{chunk}\r\n"));
            } else {
                let _ = self.multi.println(&chunk);
            }
        }
        let mut state = self.screen.0.state();
        state.events.push_back(text.to_string());
        if state.events.len() > KEPT_EVENTS {
            state.events.pop_front();
        }
    }

    /// One frame. Each bar is drawn explicitly after its update: indicatif's rate limiter
    /// would otherwise drop some of the updates of a frame and leave lines behind.
    fn draw(&mut self, views: impl Iterator<Item = EntrantView>) {
        let width = self.screen.0.usable_width();
        let resized = self.styled_for.is_some_and(|w| w != width);
        if !resized && self.drawn_at.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        if resized {
            self.rebuild();
        }
        self.drawn_at = Some(Instant::now());
        self.styled_for = Some(width);
        for v in views {
            let bar = self.bars.entry(v.name.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(1));
                bar.set_style(style(width));
                bar
            });
            let (prefix, message) = columns(&v, width);
            bar.set_length((v.budget_s * 1000.0).max(1.0) as u64);
            bar.set_position((v.used_s.max(0.0) * 1000.0) as u64);
            bar.set_prefix(prefix);
            bar.set_message(message);
            bar.force_draw();
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The template for a usable width: a bar when there is room for it, else text only.
fn style(width: u16) -> ProgressStyle {
    let width = usize::from(width);
    let fixed = 2 + NAME + 1 + PHASE + 1;
    // Room for the bar after the columns and at least 30 columns of detail.
    let bar = width.saturating_sub(fixed + 2 + 30).min(24);
    // indicatif fits `wide_msg` to the full width; the trailing space keeps the text out of
    // the last column (see `Screen`).
    let template = if width < fixed + 10 {
        "{wide_msg} ".to_string()
    } else if bar >= 6 {
        format!("{{prefix}} {{bar:{bar}.cyan/blue}} {{wide_msg}} ")
    } else {
        "{prefix} {wide_msg} ".to_string()
    };
    ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("█▌ ")
}

/// `(prefix, message)` for a line: on very narrow screens the columns move into the message.
fn columns(v: &EntrantView, width: u16) -> (String, String) {
    let name = console::truncate_str(&v.name, NAME, "…");
    let prefix = format!("  {name:<NAME$} {:<PHASE$}", v.phase);
    let times = if v.budget_s > 0.0 { format!("{}/{}", clock(v.used_s), clock(v.budget_s)) } else { String::new() };
    let message = [times.as_str(), v.detail.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>();
    let message = message.join("  ");
    if usize::from(width) < 2 + NAME + 1 + PHASE + 1 + 10 {
        (String::new(), format!("{} {message}", prefix.trim_start()))
    } else {
        (prefix, message)
    }
}

/// Splits `text` into pieces of at most `width` columns (events are never cut off).
fn chunks(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        let mut used = 0;
        for c in line.chars() {
            let w = console::measure_text_width(c.encode_utf8(&mut [0; 4]));
            if used + w > width && !current.is_empty() {
                out.push(std::mem::take(&mut current));
                used = 0;
            }
            current.push(c);
            used += w;
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// What one entrant's line shows.
pub fn view(e: &Entrant, hours: f64, live: &Live) -> EntrantView {
    let budget_s = if e.role == crate::tournament::Role::BaseModel { 0.0 } else { hours * 3600.0 };
    let strategy = e.strategy.clone().unwrap_or_else(|| "-".into());
    let train_id = e.workload_id(WorkKind::Train);
    let eval_id = e.workload_id(WorkKind::Evaluate);
    let trained_s = match &e.training {
        Work::Succeeded { started_at, finished_at, .. } => (*finished_at - *started_at).num_milliseconds() as f64 / 1e3,
        _ => 0.0,
    };
    let make = |phase: &str, used_s: f64, detail: String| EntrantView {
        name: e.name.clone(),
        phase: phase.to_string(),
        used_s,
        budget_s,
        detail,
    };
    if let Some((elapsed, progress)) = live.running.get(&train_id) {
        let detail = match progress {
            Some((step, total, Some(loss))) => format!("step {step}/{total}  loss {loss:.4}  {strategy}"),
            Some((step, total, None)) => format!("step {step}/{total}  {strategy}"),
            None => format!("starting  {strategy}"),
        };
        return make("training", *elapsed, detail);
    }
    if let Some((elapsed, _)) = live.running.get(&eval_id) {
        return make("evaluating", trained_s, format!("for {}  {strategy}", clock(*elapsed)));
    }
    let train_loss = match e.training.output() {
        Some(WorkOutput::Trained(t)) => t.final_train_loss.map(|l| format!("train {l:.4}")).unwrap_or_default(),
        _ => String::new(),
    };
    let (phase, detail) = match (&e.training, &e.evaluation) {
        (Work::Failed { reason, .. }, _) | (_, Work::Failed { reason, .. }) => ("failed", first_line(reason)),
        (_, Work::Succeeded { output: WorkOutput::Evaluated(r), .. }) => match r.failure_reason() {
            None => {
                let losses = [r.test_loss, r.synth_loss, r.text_guided_loss, r.no_text_loss];
                let shown: Vec<String> = losses.iter().flatten().map(|l| format!("{l:.4}")).collect();
                ("evaluated", format!("loss {}  {train_loss}", shown.join("/")))
            }
            Some(why) => ("rejected", first_line(&why)),
        },
        (Work::Succeeded { .. }, _) if live.queued.contains(&eval_id) => {
            ("trained", format!("{train_loss}  eval queued"))
        }
        _ if live.queued.contains(&train_id) || live.queued.contains(&eval_id) => ("queued", strategy.clone()),
        (Work::Succeeded { .. }, _) => ("trained", train_loss),
        _ => ("waiting", strategy.clone()),
    };
    make(phase, trained_s, detail.trim().to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// A terminal for indicatif that never lets the terminal wrap a line: indicatif pads each
/// line with spaces to the full width (so the terminal soft-wraps every line into the next,
/// which a reflowing terminal joins on resize); here the padding becomes "clear to the end of
/// the line" and lines end with a real line break. When the width changes between frames
/// the old frame's rows are unknown (terminals differ in how they reflow), so the screen is
/// cleared and the recent events are printed again above the new frame.
#[derive(Clone)]
pub struct Screen(Arc<ScreenInner>);

type Size = Box<dyn Fn() -> (u16, u16) + Send + Sync>;

struct ScreenInner {
    out: Mutex<Box<dyn Write + Send>>,
    /// (rows, columns) now.
    size: Size,
    state: Mutex<ScreenState>,
}

#[derive(Default)]
struct ScreenState {
    /// A line was written and its padding cleared: the next text starts a new line.
    line_open: bool,
    /// The width of the last frame.
    drawn_width: Option<u16>,
    /// Output dropped (an old board letting go of the screen).
    muted: bool,
    /// The next `write_str` is a line's padding.
    padding_next: bool,
    events: VecDeque<String>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Screen")
    }
}

impl Screen {
    /// Standard error, with the terminal's size read at every frame.
    pub fn stderr() -> Self {
        let term = console::Term::stderr();
        Self::new(Box::new(std::io::stderr()), Box::new(move || term.size_checked().unwrap_or((24, 80))))
    }

    /// Any writer, with `size` giving `(rows, columns)` (tests use an emulated terminal).
    pub fn new(out: Box<dyn Write + Send>, size: Size) -> Self {
        Self(Arc::new(ScreenInner { out: Mutex::new(out), size, state: Mutex::new(ScreenState::default()) }))
    }
}

impl ScreenInner {
    /// One column less than the terminal's: a line that ends in the last column leaves the
    /// cursor in the terminal's pending-wrap state, where clearing would eat its last character.
    fn usable_width(&self) -> u16 {
        (self.size)().1.saturating_sub(1).max(1)
    }

    fn write(&self, text: &str) -> std::io::Result<()> {
        if self.state().muted {
            return Ok(());
        }
        self.out.lock().unwrap_or_else(|e| e.into_inner()).write_all(text.as_bytes())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ScreenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TermLike for Screen {
    /// The real width, so that indicatif counts rows as the terminal wraps them (a line drawn
    /// for the old width, in the frames just after a resize); new lines are one column shorter.
    fn width(&self) -> u16 {
        (self.0.size)().1.max(1)
    }

    fn height(&self) -> u16 {
        (self.0.size)().0.max(1)
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        let (rows, columns) = (self.0.size)();
        let mut state = self.0.state();
        if state.muted {
            return Ok(());
        }
        state.line_open = false;
        state.padding_next = false;
        if state.drawn_width.is_some_and(|w| w != columns) {
            // Resized: start over at the top with the events that still fit above the frame.
            state.drawn_width = None;
            let width = usize::from(columns.saturating_sub(1).max(1));
            let mut lines: Vec<String> = state.events.iter().flat_map(|e| chunks(e, width)).collect();
            let room = usize::from(rows).saturating_sub(n + 2);
            lines.drain(..lines.len().saturating_sub(room));
            drop(state);
            let mut text = String::from("\x1b[H\x1b[2J");
            for line in lines {
                text.push_str(&line);
                text.push_str("\r\n");
            }
            return self.0.write(&text);
        }
        drop(state);
        if n == 0 { Ok(()) } else { self.0.write(&format!("\x1b[{n}A")) }
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n == 0 { Ok(()) } else { self.0.write(&format!("\x1b[{n}B")) }
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n == 0 { Ok(()) } else { self.0.write(&format!("\x1b[{n}C")) }
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n == 0 { Ok(()) } else { self.0.write(&format!("\x1b[{n}D")) }
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut state = self.0.state();
        let open = std::mem::replace(&mut state.line_open, false);
        state.padding_next = false;
        drop(state);
        self.0.write(&format!("{}{s}\x1b[K\r\n", if open { "\r\n" } else { "" }))
    }

    /// indicatif writes each line then its padding: the padding becomes "clear to the end of
    /// the line", and the next line starts on a new row.
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut state = self.0.state();
        if state.muted {
            return Ok(());
        }
        if s == "\r" {
            drop(state);
            return self.0.write(s);
        }
        let padding = state.padding_next;
        state.padding_next = !padding;
        if padding {
            state.line_open = true;
            drop(state);
            return self.0.write("\x1b[K");
        }
        let open = std::mem::replace(&mut state.line_open, false);
        drop(state);
        if open {
            self.0.write("\r\n")?;
        }
        self.0.write(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        let mut state = self.0.state();
        if state.muted {
            return Ok(());
        }
        state.line_open = false;
        state.padding_next = false;
        drop(state);
        self.0.write("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        let columns = (self.0.size)().1;
        let mut state = self.0.state();
        if state.muted {
            return Ok(());
        }
        state.drawn_width = Some(columns);
        let open = state.line_open;
        drop(state);
        if open {
            // Whatever an earlier, taller frame left below the last line.
            self.0.write("\x1b[J")?;
        }
        self.0.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
