//! Progress bars for long audit runs, drawn on standard error and hidden when it is not a
//! terminal, so that reports piped to a file stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Returns a bar over `total` events labelled with `label`, such as `verify`.
pub(crate) fn event_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {human_pos}/{human_len} events, {per_sec}, {eta} left",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_owned());
    bar
}
