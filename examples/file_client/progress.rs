//! A progress bar on a terminal (`indicatif`, on stderr), nothing at all
//! when stderr is a pipe or a file: a script gets the plain result lines
//! on stdout and no escape codes.
//!
//! indicatif draws at most 20 times a second, so a transfer costs a
//! handful of terminal writes per second, not one per chunk.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    /// On a terminal: the bar, once the size is known.
    bar: Option<ProgressBar>,
    terminal: bool,
    label: String,
}

impl Progress {
    /// A bar labelled `label` if stderr is a terminal.
    pub fn new(label: String) -> Progress {
        Progress {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            label,
        }
    }

    /// The transfer's size is known: the bar appears.
    pub fn start(&mut self, total: u64) {
        if !self.terminal {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(self.label.clone());
        self.bar = Some(bar);
    }

    /// Bytes done so far.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// The transfer ended: the bar stays, complete, or is cleared on failure.
    pub fn finish(&mut self, ok: bool) {
        if let Some(bar) = self.bar.take() {
            if ok {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}
