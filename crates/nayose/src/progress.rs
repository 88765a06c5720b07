//! Progress bars on stderr, only when stderr is a terminal (never in pipes, logs or CI).

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{Arc, Mutex},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use nayose_client::{Phase, Progress};
use nayose_server::{BuildProgress, ProgressFn};

/// Whether bars should be drawn at all.
pub(crate) fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A rate as a person reads it: `850/s`, `15.8 k/s`, `2.3 M/s`, `15.8 G/s` (never a long
/// fraction).
pub(crate) fn readable_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "-/s".to_owned();
    }
    if per_sec < 1_000.0 {
        format!("{per_sec:.0}/s")
    } else if per_sec < 1_000_000.0 {
        format!("{:.1} k/s", per_sec / 1_000.0)
    } else if per_sec < 1_000_000_000.0 {
        format!("{:.1} M/s", per_sec / 1_000_000.0)
    } else {
        format!("{:.1} G/s", per_sec / 1_000_000_000.0)
    }
}

/// A bar with the total, count, readable rate and ETA when the total is known; otherwise a
/// spinner with the count, readable rate and the time elapsed.
fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{prefix:>9} [{bar:30}] {human_pos}/{human_len} {rate} ETA {eta}"
    } else {
        "{prefix:>9} {spinner} {human_pos} {rate} {elapsed}"
    };
    if let Ok(s) = ProgressStyle::with_template(template) {
        b.set_style(
            s.with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&readable_rate(state.per_sec()));
                },
            )
            .progress_chars("=> "),
        );
    }
    b.set_prefix(what.to_string());
    b
}

/// No bars (stderr is not a terminal), but the run's notes — reconnects, mode fallbacks,
/// warnings — still reach the operator on stderr.
pub(crate) struct NotesOnly;

impl Progress for NotesOnly {
    fn note(&self, message: &str) {
        eprintln!("note: {message}");
    }
}

/// The client's progress, as one bar per phase: bytes of the held file while it is read, then
/// numbers, entries and rows; a spinner where no total exists (connecting, deltas).
#[derive(Default)]
pub(crate) struct ClientBars {
    bars: Mutex<HashMap<Phase, ProgressBar>>,
}

impl ClientBars {
    /// Removes every bar from the terminal (a run that stops half-way).
    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.bars.lock() {
            for (_, b) in m.drain() {
                b.finish_and_clear();
            }
        }
    }
}

impl Progress for ClientBars {
    fn start(&self, phase: Phase, total: Option<u64>) {
        if let Ok(mut m) = self.bars.lock() {
            m.insert(phase, bar(total, phase.name()));
        }
    }
    fn start_bytes(&self, phase: Phase, total: u64) {
        if let Ok(mut m) = self.bars.lock() {
            m.insert(phase, byte_bar(total, phase.name()));
        }
    }
    fn advance(&self, phase: Phase, n: u64) {
        if let Ok(m) = self.bars.lock()
            && let Some(b) = m.get(&phase)
        {
            b.inc(n);
        }
    }
    fn finish(&self, phase: Phase) {
        if let Ok(mut m) = self.bars.lock()
            && let Some(b) = m.remove(&phase)
        {
            b.finish_and_clear();
        }
    }
    fn note(&self, message: &str) {
        if let Ok(m) = self.bars.lock() {
            match m.values().next() {
                Some(b) => b.println(message),
                None => eprintln!("{message}"),
            }
        }
    }
}

/// The epoch build's progress: one bar per phase with its total, a readable rate and the ETA
/// (bytes of the registry file while reading).
pub(crate) fn build_bars() -> ProgressFn {
    let current: Arc<Mutex<Option<(&'static str, ProgressBar)>>> = Arc::new(Mutex::new(None));
    Arc::new(move |p: BuildProgress| {
        let Ok(mut cur) = current.lock() else { return };
        match cur.as_ref() {
            Some((phase, b)) if *phase == p.phase => b.set_position(p.done),
            _ => {
                if let Some((_, old)) = cur.take() {
                    old.finish_and_clear();
                }
                let b = if p.bytes {
                    byte_bar(p.total, p.phase)
                } else {
                    bar(Some(p.total), p.phase)
                };
                b.set_position(p.done);
                *cur = Some((p.phase, b));
            }
        }
    })
}

/// A bar counting bytes: `12.3 MiB/35.0 MiB 48.2 MiB/s ETA 1s`.
fn byte_bar(total: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(s) = ProgressStyle::with_template(
        "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        b.set_style(s.progress_chars("=> "));
    }
    b.set_prefix(what.to_string());
    b
}

#[cfg(test)]
mod tests {
    use super::readable_rate;

    #[test]
    fn rates_are_readable() {
        assert_eq!(readable_rate(15_785_702_241.574_1), "15.8 G/s");
        assert_eq!(readable_rate(15_785.7), "15.8 k/s");
        assert_eq!(readable_rate(850.4), "850/s");
        assert_eq!(readable_rate(0.0), "-/s");
        assert_eq!(readable_rate(f64::NAN), "-/s");
    }
}
