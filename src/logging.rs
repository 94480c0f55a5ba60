//! Logging to `--log FILE` (or stderr) in runc's two formats.
//!
//! - `text`: `time="<RFC 3339>" level=<level> msg="<message>"`, one record a line (logrus' text format).
//! - `json`: `{"level":"<level>","msg":"<message>","time":"<RFC 3339>"}`, one object a line. podman
//!   (`runtime_supports_json`) and containerd's runc shim read the last `msg` of this file and show it
//!   to the user as the reason an operation failed.
//!
//! amphi never reads `RUST_LOG` or any other environment variable for its own logging: the level is
//! `info`, or `debug` with `--debug`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The format of log records, `--log-format` (runc: `text` or `json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// logrus text: `time="..." level=error msg="..."`.
    Text,
    /// One JSON object per line with `level`, `msg`, `time`.
    Json,
}

struct Logger {
    format: LogFormat,
    file: Option<Mutex<File>>,
    level: LevelFilter,
}

/// Formats the current time as RFC 3339 in UTC with nanoseconds, as Go's `time.RFC3339Nano` does.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Renders one record in `format` (without the trailing newline).
pub fn render(format: LogFormat, level: Level, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => serde_json::json!({
            "level": level_name(level),
            "msg": msg,
            "time": time,
        })
        .to_string(),
        LogFormat::Text => format!("time={:?} level={} msg={:?}", time, level_name(level), msg),
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Libraries (wasmtime, cranelift, ...) only get warnings and errors through, even with --debug.
        let ours = metadata.target().starts_with("amphi");
        metadata.level() <= self.level && (ours || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = render(
            self.format,
            record.level(),
            &record.args().to_string(),
            &now_rfc3339(),
        );
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the process-wide logger.
///
/// `path`: `--log FILE`, opened for appending (created 0644 if missing); `None` logs to stderr.
/// Errors: the log file cannot be opened.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(Mutex::new(
            OpenOptions::new().create(true).append(true).open(p)?,
        )),
        None => None,
    };
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger = Logger {
        format,
        file,
        level,
    };
    // A second call (tests) keeps the first logger.
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_record_has_runc_keys() {
        let line = render(LogFormat::Json, Level::Error, "boom \"x\"", "T");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "T");
    }

    #[test]
    fn text_record_quotes_message() {
        let line = render(LogFormat::Text, Level::Warn, "a b", "T");
        assert_eq!(line, "time=\"T\" level=warning msg=\"a b\"");
    }
}
