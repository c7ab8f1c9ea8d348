//! The `mingchu` binary: loads the config and runs the gateway.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Mingchu edge gateway for live kitchen cameras.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML).
    #[arg(long, short, default_value = "mingchu.toml")]
    config: PathBuf,
    /// Only validate the config and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> std::process::ExitCode {
    mingchu::memory::bound_allocator();
    // Everything the gateway writes (the event database, snapshots, clips) is for its
    // own user alone: files 0600, directories 0700.
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // A closed stderr (a supervisor that went away) must not turn logging into panics.
        .log_internal_errors(false)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = mingchu::config::Config::load(&cli.config)?;
    if let Some(warning) = mingchu::config::readable_by_others(&cli.config) {
        tracing::warn!("{warning}");
    }
    if cli.check {
        let notes = mingchu::app::check_detection(&cfg.config)?;
        for note in &notes {
            eprintln!("warning: {note}");
        }
        println!("config {} is valid: {} camera(s)", cli.config.display(), cfg.config.cameras.len());
        return Ok(());
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        mingchu::app::run(cfg, shutdown).await
    })
}

/// First Ctrl-C or SIGTERM: graceful stop. A second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else { return };
    let Ok(mut int) = signal(SignalKind::interrupt()) else { return };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
    tracing::info!("shutting down");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    std::process::exit(130);
}
