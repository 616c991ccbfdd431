//! `gradients run` on a real pseudo-terminal of 80 columns (util-linux `script`), with the real
//! trainer and evaluator: every frame of the live view fits the width, each entrant is on
//! exactly one row, and no stale row is left behind. The interpreter is given as a relative
//! path (`--python ./py`), resolved against the current directory. Slow; `scripts/test` runs it:
//!
//! ```sh
//! GRADIENTS_PYTHON=$(trainer-image/setup-env | tail -1) GRADIENTS_BASE_MODELS=$(scripts/prepare-examples | tail -1) \
//!   cargo test --test run_terminal -- --ignored
//! ```

mod common;

use std::num::NonZeroU16;
use std::process::Command;

use common::*;

const ROWS: u16 = 24;
const COLUMNS: u16 = 80;
/// Names as shown (the column is 14 wide: longer names end in "…").
const ENTRANTS: [&str; 4] = ["alpha", "bravo-with-a-", "baseline", "base-model"];

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn the_live_view_fits_an_80_column_terminal_frame_after_frame() {
    let python = std::env::var("GRADIENTS_PYTHON").expect("GRADIENTS_PYTHON (scripts/test sets it)");
    std::env::var("GRADIENTS_BASE_MODELS").expect("GRADIENTS_BASE_MODELS (scripts/test sets it)");
    let dir = tempfile::tempdir().unwrap();
    let data = repo().join("examples/instruct/data.jsonl");
    let task = write(
        dir.path(),
        "task.yaml",
        &format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata:\n  name: tty\nspec:\n  taskType: InstructText\n  \
             baseModel: {{uri: \"${{GRADIENTS_BASE_MODELS}}/instruct\", paramsB: 0.0001}}\n  dataset:\n    uri: {}\n    \
             columns: {{instruction: question, output: answer}}\n  seed: 42\n  hours: 0.004\n  miners:\n    \
             - {{name: alpha, strategy: lora-fast}}\n    - {{name: bravo-with-a-long-name, strategy: full-ft}}\n",
            data.display()
        ),
    );
    // A wrapper next to the task: `--python ./py` only works if resolved against this directory.
    let wrapper = write(dir.path(), "py", &format!("#!/bin/sh\nexec {python} \"$@\"\n"));
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let command = format!(
        "stty cols {COLUMNS} rows {ROWS}; exec {} run {} --data-dir {} --python ./py --parallel 2",
        bin(),
        task.display(),
        dir.path().join("data").display()
    );
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "xterm-256color")
        .output()
        .expect("util-linux script");
    let bytes = out.stdout;
    let text = String::from_utf8_lossy(&bytes);
    assert!(out.status.success(), "exit {:?}:\n{text}", out.status);
    assert!(text.contains("winner"), "the report follows the live view:\n{text}");

    // Every frame ends with "clear below" (the view's own marker); check the screen there. The
    // bars are drawn one after the other, so an entrant may be missing from a frame while the
    // first frame is built, but never shown twice.
    let mut parser = vt100::Parser::new(NonZeroU16::new(ROWS).unwrap(), NonZeroU16::new(COLUMNS).unwrap(), 0);
    let mut fed = 0;
    let mut frames = 0;
    let mut complete_frames = 0;
    let mut seen_training = false;
    for (end, _) in text.match_indices("\x1b[J") {
        let end = end + 3;
        parser.process(&bytes[fed..end]);
        fed = end;
        frames += 1;
        let screen = parser.screen();
        let rows: Vec<String> = screen.rows(0, COLUMNS).map(|r| r.trim_end().to_string()).collect();
        let all = rows.join("\n");
        for (i, row) in rows.iter().enumerate() {
            assert!(!screen.row_wrapped(i as u16), "frame {frames}: row {i} wrapped:\n{all}");
            assert!(row.chars().count() < usize::from(COLUMNS), "frame {frames}: row {i} reaches column 80:\n{all}");
        }
        let shown: Vec<usize> =
            ENTRANTS.iter().map(|name| rows.iter().filter(|r| r.starts_with(&format!("  {name}"))).count()).collect();
        assert!(shown.iter().all(|&n| n <= 1), "frame {frames}: an entrant on two rows:\n{all}");
        complete_frames += usize::from(shown.iter().all(|&n| n == 1));
        seen_training |= rows.iter().any(|r| r.contains("training") && r.contains("step"));
    }
    assert!(complete_frames >= 3, "{complete_frames} frames with every entrant:\n{text}");
    assert!(seen_training, "no frame showed a training with its steps:\n{text}");
}
