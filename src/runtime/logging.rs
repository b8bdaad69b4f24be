//! The process log: `tracing` to stderr, stdout or a file, as text or JSON,
//! with a level the admin API can change while ferrymesh runs.

use std::sync::OnceLock;

use tracing::Level;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

struct Logger {
    level: reload::Handle<LevelFilter, Registry>,
    /// Where the log goes, as configured ("stderr", "stdout" or a path).
    path: String,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the process's logger. `path`: MOSN's `default_log_path`.
pub fn init(level: Level, path: Option<&str>, json: bool) -> Result<(), String> {
    let (writer, path) = match path {
        None | Some("" | "stderr") => (BoxMakeWriter::new(std::io::stderr), "stderr".to_string()),
        Some("stdout") => (BoxMakeWriter::new(std::io::stdout), "stdout".to_string()),
        Some(file) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .map_err(|e| format!("servers[0].default_log_path: cannot open {file}: {e}"))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(f)), file.to_string())
        }
    };
    let ansi = path == "stderr" && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (filter, handle) = reload::Layer::new(LevelFilter::from_level(level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_target(false).with_ansi(ansi);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    let _ = LOGGER.set(Logger { level: handle, path });
    Ok(())
}

/// Changes the level of the process log.
pub fn set_level(level: Level) -> Result<(), String> {
    let logger = LOGGER.get().ok_or("no logger installed")?;
    logger.level.modify(|f| *f = LevelFilter::from_level(level)).map_err(|e| e.to_string())?;
    Ok(())
}

/// The log's path and its level now (MOSN's names: DEBUG, INFO, ...).
pub fn current() -> Option<(String, String)> {
    let logger = LOGGER.get()?;
    let level = logger.level.clone_current()?;
    let name = match level.into_level() {
        None => "OFF".to_string(),
        Some(Level::WARN) => "WARN".to_string(),
        Some(l) => l.as_str().to_string(),
    };
    Some((logger.path.clone(), name))
}
