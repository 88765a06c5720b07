//! Progress bars on stderr, only when stderr is a terminal (never in pipes, logs or CI).

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{Arc, Mutex},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nayose_client::{Phase, Progress};
use nayose_server::{BuildProgress, ProgressFn};

/// Whether bars should be drawn at all.
pub(crate) fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let b = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let style = if total.is_some() {
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} {eta}")
    } else {
        ProgressStyle::with_template("{prefix:>9} {spinner} {pos} {per_sec}")
    };
    if let Ok(s) = style {
        b.set_style(s.progress_chars("=> "));
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

/// The client's progress, as one bar per phase.
#[derive(Default)]
pub(crate) struct ClientBars {
    bars: Mutex<HashMap<Phase, ProgressBar>>,
}

impl Progress for ClientBars {
    fn start(&self, phase: Phase, total: Option<u64>) {
        if let Ok(mut m) = self.bars.lock() {
            m.insert(phase, bar(total, phase.name()));
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

/// The epoch build's progress: one spinner per phase.
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
                let b = bar(None, p.phase);
                b.set_position(p.done);
                *cur = Some((p.phase, b));
            }
        }
    })
}
