//! A real headless browser for the report page: Debian's Chromium, installed by
//! `scripts/ensure-chromium` (scripts/test passes its path as GRADIENTS_CHROMIUM).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What the browser saw of a page.
pub struct Rendered {
    /// The DOM after loading (`--dump-dom`).
    pub dom: String,
    pub width: u32,
    pub height: u32,
    /// RGBA pixels of the screenshot.
    pub pixels: Vec<u8>,
}

impl Rendered {
    /// Pixels of exactly `rgb` (±`tolerance` per channel).
    pub fn count(&self, rgb: (u8, u8, u8), tolerance: u8) -> usize {
        let near = |a: u8, b: u8| a.abs_diff(b) <= tolerance;
        self.pixels.chunks_exact(4).filter(|p| near(p[0], rgb.0) && near(p[1], rgb.1) && near(p[2], rgb.2)).count()
    }

    /// The share of pixels that are not the white background.
    pub fn ink(&self) -> f64 {
        let inked = self.pixels.chunks_exact(4).filter(|p| p[0] < 235 || p[1] < 235 || p[2] < 235).count();
        inked as f64 / (self.width as f64 * self.height as f64)
    }
}

pub fn chromium() -> PathBuf {
    let path = std::env::var_os("GRADIENTS_CHROMIUM").expect(
        "GRADIENTS_CHROMIUM is not set: run this test through scripts/test (scripts/ensure-chromium installs Chromium)",
    );
    PathBuf::from(path)
}

/// Opens `page` in headless Chromium at `size` pixels: its DOM and a screenshot.
pub fn render(page: &Path, size: (u32, u32)) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("shot.png");
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let base = |extra: &[String]| {
        let mut args: Vec<String> = [
            "--headless",
            // Root in a container: Chromium's sandbox needs user namespaces it may not get.
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={},{}", size.0, size.1));
        args.extend_from_slice(extra);
        args.push(url.clone());
        args
    };
    let dom = run(&base(&["--dump-dom".into()]));
    assert!(dom.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&dom.stderr));
    let out = run(&base(&[format!("--screenshot={}", shot.display())]));
    assert!(
        out.status.success() && shot.exists(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(info.buffer_size());
    let pixels = match info.color_type {
        png::ColorType::Rgba => pixels,
        png::ColorType::Rgb => pixels.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    Rendered { dom: String::from_utf8_lossy(&dom.stdout).into_owned(), width: info.width, height: info.height, pixels }
}

/// Runs chromium with `args`, killed after two minutes (a wedged browser fails the test).
fn run(args: &[String]) -> Output {
    let mut child = Command::new(chromium())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start chromium");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).ok();
        b
    });
    let stderr = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).ok();
        b
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("chromium did not finish in 120 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// The checks every report page must pass in the browser: not blank, the plots drawn (the
/// curves' blue and the budget bars' colours on screen), and in the DOM one drawn plot per
/// entrant that logged training progress and a leaderboard row per entrant.
pub fn assert_report_renders(page: &Path, plotted: &[impl AsRef<str>], entrants: &[impl AsRef<str>]) -> Rendered {
    let shown = render(page, (1200, 3200));
    let ink = shown.ink();
    assert!(ink > 0.03, "the screenshot is (nearly) blank: {:.2} % of its pixels are not white", ink * 100.0);
    // The curve colour (31,119,180) and the budget bars (orange, or blue at 80 %).
    assert!(shown.count((31, 119, 180), 12) > 300, "no loss curve on screen");
    let bars = shown.count((232, 154, 38), 14) + shown.count((75, 146, 195), 14);
    assert!(bars > 500, "no time budget bars on screen ({bars} pixels)");
    for entrant in plotted.iter().map(AsRef::as_ref) {
        let figure = format!("<figure class=\"loss-curve\" data-entrant=\"{entrant}\">");
        let start = shown.dom.find(&figure).unwrap_or_else(|| panic!("no loss curve figure for {entrant}"));
        let end = start + shown.dom[start..].find("</figure>").unwrap();
        let body = &shown.dom[start..end];
        assert!(body.contains("<svg") && body.contains("<polyline"), "{entrant}'s loss curve is not drawn");
    }
    for entrant in entrants.iter().map(AsRef::as_ref) {
        assert!(
            shown.dom.contains(&format!("data-entrant=\"{entrant}\" data-role=")),
            "no leaderboard row for {entrant}"
        );
    }
    for id in ["test-vs-synth", "time-budget"] {
        assert!(shown.dom.contains(&format!("<figure id=\"{id}\"><svg")), "{id} is not drawn");
    }
    shown
}
