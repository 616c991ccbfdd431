//! `gradients report RUN_DIR` on a run directory copied from a real `gradients run`
//! (tests/fixtures/report: the data directory of two runs of a 4-miner instruct task on the
//! examples' tiny Llama, trimmed to what the page reads: state, report, weights, the store,
//! and each training's stdout and result). The browser test is ignored by a plain
//! `cargo test`: scripts/test installs Chromium (scripts/ensure-chromium) and runs it.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const RUN: &str = "runs/report-fixture-2";
/// Entrants whose trainer logged progress, and every entrant.
const PLOTTED: [&str; 4] = ["alice", "carol", "frank", "baseline"];
const ENTRANTS: [&str; 6] = ["alice", "carol", "frank", "crash", "baseline", "base-model"];

/// A copy of the fixture's data directory (the test writes report.html into it).
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy(&repo().join("tests/fixtures/report"), dir.path());
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn write_report(data: &Path) -> PathBuf {
    let out = gradients(&["report", data.join(RUN).to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(path, data.join(RUN).join("report.html"));
    path
}

#[test]
fn report_writes_a_page_with_a_curve_per_trained_entrant_and_the_stores_standings() {
    let data = fixture();
    let page = std::fs::read_to_string(write_report(data.path())).unwrap();
    for entrant in PLOTTED {
        assert!(page.contains(&format!("<figure class=\"loss-curve\" data-entrant=\"{entrant}\"><svg")), "{entrant}");
    }
    assert!(page.contains("crash: no training progress logged"), "the failed miner logged nothing");
    assert_eq!(page.matches("<tr class=\"entrant").count(), ENTRANTS.len());
    // The store is found from the run directory's place in the data directory: both runs.
    assert!(page.contains("the latest of the 2 task(s)"), "{}", &page[page.find("id=\"store\"").unwrap()..][..300]);
    assert_eq!(page.matches("<tr class=\"standing\"").count(), 4);
}

#[test]
fn report_of_a_folder_that_is_not_a_run_directory_exits_2_naming_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = gradients(&["report", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("state.json is missing") && stderr.contains("not a run directory"), "{stderr}");
}

#[test]
#[ignore = "needs Chromium: scripts/test installs it (scripts/ensure-chromium) and runs this"]
fn the_report_renders_in_a_real_headless_browser() {
    let data = fixture();
    let page = write_report(data.path());
    let shown = browser::assert_report_renders(&page, &PLOTTED, &ENTRANTS);
    assert!(
        shown.dom.contains("<table id=\"standings\">") && shown.dom.contains("<figure id=\"weights-over-time\"><svg")
    );
}
