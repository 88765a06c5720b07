//! The signals that stop a command which writes personal data (SIGINT, SIGTERM, SIGHUP): the
//! command removes its temporary files before it exits with 128 + the signal's number.

use anyhow::{Context, Result};

/// A signal that stopped a run: its name and the exit status it gives (128 + its number).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped {
    /// The signal's name.
    pub(crate) signal: &'static str,
    /// The exit status it gives.
    pub(crate) status: u8,
}

/// The signals that stop a link run (SIGINT, SIGTERM, SIGHUP), caught from the moment they are
/// installed, so that the run can remove its temporary files (personal data) before it exits.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    signals: [(tokio::signal::unix::Signal, Stopped); 3],
}

impl StopSignals {
    /// Installs the handlers; needs a tokio runtime.
    pub(crate) fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let on = |kind: SignalKind, name: &'static str, number: u8| {
                signal(kind)
                    .map(|s| {
                        (
                            s,
                            Stopped {
                                signal: name,
                                status: 128 + number,
                            },
                        )
                    })
                    .with_context(|| format!("installing the handler of {name}"))
            };
            Ok(StopSignals {
                signals: [
                    on(SignalKind::interrupt(), "SIGINT", 2)?,
                    on(SignalKind::terminate(), "SIGTERM", 15)?,
                    on(SignalKind::hangup(), "SIGHUP", 1)?,
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// The first of the signals to arrive.
    pub(crate) async fn recv(&mut self) -> Stopped {
        #[cfg(unix)]
        {
            let [(int, s_int), (term, s_term), (hup, s_hup)] = &mut self.signals;
            tokio::select! {
                _ = int.recv() => *s_int,
                _ = term.recv() => *s_term,
                _ = hup.recv() => *s_hup,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stopped {
                signal: "Ctrl-C",
                status: 130,
            }
        }
    }
}
