//! The live view on an emulated terminal (vt100): what a user sees after each frame.

use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;
use crate::tournament::{EvalReport, Role, TrainingSummary};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A terminal of a size that can change, fed with everything the view wrote.
struct Terminal {
    bytes: Shared,
    size: Arc<Mutex<(u16, u16)>>,
    parser: vt100::Parser,
}

fn nz(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

impl Terminal {
    fn new(rows: u16, columns: u16) -> (Self, Progress) {
        let bytes = Shared::default();
        let size = Arc::new(Mutex::new((rows, columns)));
        let read = size.clone();
        let screen = Screen::new(Box::new(bytes.clone()), Box::new(move || *read.lock().unwrap()));
        let parser = vt100::Parser::new(nz(rows), nz(columns), 0);
        (Self { bytes, size, parser }, Progress::on_screen(screen, Duration::ZERO))
    }

    fn resize(&mut self, rows: u16, columns: u16) {
        self.feed();
        *self.size.lock().unwrap() = (rows, columns);
        self.parser.set_size(nz(rows), nz(columns));
    }

    fn feed(&mut self) {
        let bytes = std::mem::take(&mut *self.bytes.0.lock().unwrap());
        self.parser.process(&bytes);
    }

    /// The visible rows, trailing blanks trimmed.
    fn rows(&mut self) -> Vec<String> {
        self.feed();
        let columns = self.parser.screen().size().1.get();
        self.parser.screen().rows(0, columns).map(|r| r.trim_end().to_string()).collect()
    }

    /// Checks what a user would notice: no row the terminal had to wrap, each entrant on
    /// exactly one row, every row an entrant's line or a (cut) event line.
    fn assert_clean(&mut self, names: &[&str]) -> Vec<String> {
        let rows = self.rows();
        let screen = self.parser.screen();
        let columns = usize::from(screen.size().1.get());
        for (i, row) in rows.iter().enumerate() {
            assert!(!screen.row_wrapped(i as u16), "row {i} wrapped at {columns} columns:\n{}", rows.join("\n"));
            assert!(console::measure_text_width(row) < columns, "row {i} reaches the last column: {row:?}");
        }
        for name in names {
            let shown = rows.iter().filter(|r| r.trim_start().starts_with(name)).count();
            assert_eq!(shown, 1, "{name} is on {shown} rows at {columns} columns:\n{}", rows.join("\n"));
        }
        // Events above, then the entrants' rows as one block, nothing below.
        let entrant = |row: &String| names.iter().any(|n| row.trim_start().starts_with(n));
        let first = rows.iter().position(entrant).unwrap_or(rows.len());
        let block: Vec<&String> = rows[first..].iter().filter(|r| !r.is_empty()).collect();
        assert!(block.iter().all(|r| entrant(r)), "a stray row among or below the entrants:\n{}", rows.join("\n"));
        rows
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

const NAMES: [&str; 5] = ["alpha-with-a-", "bravo", "charlie", "baseline", "base-model"];

fn state() -> TaskState {
    let mut alpha = Entrant::new("alpha-with-a-very-long-name", Role::Miner, Some("lora-fast".into()));
    alpha.training = Work::Active { attempt: 1, requested_at: at(0), started_at: Some(at(0)) };
    let mut bravo = Entrant::new("bravo", Role::Miner, Some("full-finetune-with-long-strategy".into()));
    bravo.training = Work::Succeeded {
        attempt: 1,
        started_at: at(0),
        finished_at: at(30),
        output: WorkOutput::Trained(TrainingSummary {
            steps: Some(40),
            final_train_loss: Some(1.2345),
            stopped_by_deadline: Some(true),
            ..Default::default()
        }),
    };
    let mut charlie = Entrant::new("charlie", Role::Miner, Some("lora".into()));
    charlie.training = Work::Failed {
        attempt: 1,
        finished_at: at(5),
        reason:
            "trainer exited with code 1: ModuleNotFoundError: No module named 'gradients_trainer' while importing the \
                 strategy registry"
                .into(),
        log_tail: String::new(),
    };
    let baseline = Entrant::new("baseline", Role::Baseline, Some("baseline".into()));
    let base = Entrant::new("base-model", Role::BaseModel, None);
    TaskState { hours: Some(0.01), entrants: vec![alpha, bravo, charlie, baseline, base], ..Default::default() }
}

fn live(state: &TaskState, step: u64) -> Live {
    let mut live = Live::default();
    let alpha = state.entrants[0].workload_id(WorkKind::Train);
    live.running.insert(alpha, (step as f64 / 2.0, Some((step, 40, Some(3.0 - step as f64 / 40.0)))));
    live.queued.insert(state.entrants[3].workload_id(WorkKind::Train));
    live
}

#[test]
fn fits_80_columns_and_redraws_in_place_without_stale_lines() {
    let (mut term, mut progress) = Terminal::new(24, 80);
    let mut state = state();
    progress.draw(&state, &live(&state, 12), at(6));
    let first = term.assert_clean(&NAMES);
    assert!(first.iter().any(|r| r.contains("step 12/40") && r.contains('█')), "{first:#?}");
    progress.event("TrainingStarted", &"a long event message that does not fit on one line ".repeat(3));
    state.entrants[1].evaluation = Work::Succeeded {
        attempt: 1,
        started_at: at(30),
        finished_at: at(40),
        output: WorkOutput::Evaluated(EvalReport {
            ok: true,
            test_loss: Some(1.5),
            synth_loss: Some(1.75),
            ..Default::default()
        }),
    };
    progress.draw(&state, &live(&state, 30), at(15));
    let rows = term.assert_clean(&NAMES);
    assert!(rows.iter().any(|r| r.contains("step 30/40") && r.contains("0:15/0:36")), "{rows:#?}");
    assert!(!rows.iter().any(|r| r.contains("step 12/40")), "a stale frame is left: {rows:#?}");
    assert!(rows.iter().any(|r| r.starts_with("  bravo") && r.contains("evaluated") && r.contains("1.5000")));
    assert!(rows.iter().any(|r| r.starts_with("[TrainingStarted] a long event")), "{rows:#?}");
    assert!(rows.iter().any(|r| r.contains("charlie") && r.contains("failed") && r.contains("trainer exited")));
    progress.finish();
    let after = term.rows();
    assert!(!after.iter().any(|r| r.contains("step 30/40")), "finish leaves the live lines: {after:#?}");
}

#[test]
fn a_resize_redraws_the_whole_view_at_the_new_width() {
    let (mut term, mut progress) = Terminal::new(24, 120);
    let state = state();
    progress.event("Started", "first event");
    progress.draw(&state, &live(&state, 4), at(2));
    term.assert_clean(&NAMES);
    for (columns, step) in [(60, 6), (100, 8), (44, 10), (30, 12), (80, 14)] {
        term.resize(24, columns);
        progress.draw(&state, &live(&state, step), at(3));
        let rows = term.assert_clean(&NAMES);
        let line = rows.iter().find(|r| r.contains("alpha")).unwrap();
        assert!(line.contains(&format!("step {step}/40")) || columns < 50, "{columns}: {rows:#?}");
        assert_eq!(rows.iter().filter(|r| r.contains("first event")).count(), 1, "{columns}: {rows:#?}");
    }
}

#[test]
fn chunks_never_exceed_the_width() {
    let text = "[Reason] ".to_string() + &"é".repeat(50) + "\nsecond line";
    let pieces = chunks(&text, 20);
    assert!(pieces.iter().all(|p| console::measure_text_width(p) <= 20), "{pieces:?}");
    assert_eq!(pieces.concat(), text.replace('\n', ""));
}
