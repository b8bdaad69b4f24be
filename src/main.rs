//! The `ferrymesh` binary: MOSN's command shape (`start -c FILE`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::error;

use ferrymesh::config::{self, Settings};

#[derive(Parser)]
#[command(name = "ferrymesh", version, about = "A service-mesh data plane: MOSN-compatible sidecar and gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a MOSN v2 configuration (JSON or YAML).
    Start {
        /// Configuration file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Worker threads (default: `processor` from the config, else one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Log level (TRACE, DEBUG, INFO, WARN, ERROR); overrides the config.
        #[arg(long = "log-level")]
        log_level: Option<String>,
        /// How long a SIGTERM drain may take (overrides `graceful_timeout`), e.g. 10s.
        #[arg(long = "drain-timeout")]
        drain_timeout: Option<String>,
        /// Reload the configuration when the file changes (also: SIGHUP, POST /api/v1/reload).
        #[arg(long)]
        watch: bool,
        /// Log format: text or json.
        #[arg(long = "log-format", default_value = "text")]
        log_format: String,
    },
    /// Validate a configuration and print what it defines.
    Check {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

fn load(path: &std::path::Path) -> Result<Settings, ExitCode> {
    config::load_file(path).map_err(|e| {
        eprintln!("ferrymesh: invalid configuration {}: {e}", path.display());
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("ferrymesh {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            print_summary(&settings);
            ExitCode::SUCCESS
        }
        Command::Start { config, workers, log_level, drain_timeout, watch, log_format } => {
            let json = match log_format.as_str() {
                "text" => false,
                "json" => true,
                other => {
                    eprintln!("ferrymesh: --log-format: {other:?} is not text or json");
                    return ExitCode::from(2);
                }
            };
            let level_name = log_level.clone();
            if let Some(l) = &level_name {
                if ferrymesh::parse_log_level(l).is_none() {
                    eprintln!("ferrymesh: --log-level: unknown level {l:?}");
                    return ExitCode::from(2);
                }
            }
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let level = level_name
                .or_else(|| settings.log_level.clone())
                .and_then(|l| ferrymesh::parse_log_level(&l))
                .unwrap_or(tracing::Level::INFO);
            if let Err(e) = ferrymesh::runtime::logging::init(level, settings.log_path.as_deref(), json) {
                eprintln!("ferrymesh: {e}");
                return ExitCode::from(2);
            }
            let drain = match drain_timeout.as_deref().map(config::duration::parse_duration) {
                None => settings.graceful_timeout,
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    error!("--drain-timeout: {e}");
                    return ExitCode::from(2);
                }
            };
            let workers = workers
                .or(settings.workers)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let options = ferrymesh::runtime::Options {
                path: config,
                workers,
                drain_timeout: drain.max(Duration::from_millis(1)),
                watch,
            };
            match ferrymesh::runtime::run(settings, options) {
                Ok(code) => ExitCode::from(code as u8),
                Err(e) => {
                    error!("cannot start: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn print_summary(s: &Settings) {
    println!("configuration OK");
    println!("listeners:");
    for l in &s.listeners {
        println!(
            "  {} {} {}->{} router={} idle_timeout={:?} max_frame={} filters={}",
            l.name,
            l.addr,
            l.downstream.describe(),
            l.upstream.map_or("same as downstream", |c| c.name()),
            l.router_name,
            l.idle_timeout,
            l.max_frame,
            l.filters.len()
        );
    }
    println!("routers:");
    for (name, table) in &s.routers {
        const SHOWN: usize = 8;
        let vhosts: Vec<&str> = table.vhost_names().take(SHOWN).collect();
        let more = table.vhost_count().saturating_sub(SHOWN);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        println!(
            "  {name}: {} routes in {} virtual hosts {vhosts:?}{more}, compiled in {:.1} ms",
            table.route_count(),
            table.vhost_count(),
            table.built_in().as_secs_f64() * 1000.0
        );
    }
    println!("clusters:");
    for c in &s.clusters {
        const SHOWN_HOSTS: usize = 16;
        let mut hosts: Vec<String> =
            c.hosts.iter().take(SHOWN_HOSTS).map(|h| format!("{}(w{})", h.addr, h.weight)).collect();
        if c.hosts.len() > SHOWN_HOSTS {
            hosts.push(format!("and {} more", c.hosts.len() - SHOWN_HOSTS));
        }
        println!(
            "  {} lb={:?} connect_timeout={:?} connections_per_host={} hosts=[{}]",
            c.name,
            c.lb,
            c.connect_timeout,
            c.connections_per_host,
            hosts.join(", ")
        );
    }
    match s.admin {
        Some(addr) => println!("admin: http://{addr}/ (dashboard: http://{addr}/dashboard)"),
        None => println!("admin: none (no admin block)"),
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
}
