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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Manage accounts (works while the gateway runs).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(clap::Subcommand)]
enum UserAction {
    /// Adds an account; the password is asked for, or read from stdin.
    Add {
        /// admin, regulator, reviewer or operator.
        #[arg(long)]
        role: String,
        /// Sites the account sees: comma-separated ids, or `*` for every site (regulators).
        #[arg(long, default_value = "")]
        sites: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Login name.
        name: String,
    },
    /// Lists accounts.
    List,
    /// Sets a new password (and ends the account's sessions).
    Passwd {
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Login name.
        name: String,
    },
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
    if let Some(Command::User { action }) = cli.command {
        return user_command(&cfg.config, action);
    }
    if cli.check {
        if let Some(t) = &cfg.config.server.tls {
            let files = mingchu::api::tls::TlsFiles { cert: t.cert.clone(), key: t.key.clone() };
            mingchu::api::tls::load(&files)?;
        }
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

fn user_command(config: &mingchu::config::Config, action: UserAction) -> anyhow::Result<()> {
    use mingchu::access::{Role, Scope, check_grant, password};
    let dir = &config.server.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create server.data_dir {}", dir.display()))?;
    let store = mingchu::access::store::AccessStore::open(dir)?;
    let now = mingchu::clock::unix_ms(std::time::SystemTime::now());
    match action {
        UserAction::Add { role, sites, password_stdin, name } => {
            let role = Role::parse(&role)
                .with_context(|| format!("--role `{role}`: choose admin, regulator, reviewer or operator"))?;
            let scope = if sites.trim() == "*" { Scope::All } else { Scope::from_stored(sites.trim()) };
            let known: Vec<String> = mingchu::config::sites(config).into_iter().map(|s| s.id).collect();
            let scope = check_grant(role, scope, &known).map_err(|e| anyhow::anyhow!("--sites: {e}"))?;
            let pw = read_password(password_stdin)?;
            let hash = password::hash(&pw)?;
            let user = store.add_user(&name, role, &scope, &hash, now)?;
            println!("added {} `{}` (id {}), sites {}", user.role, user.name, user.id, user.scope.to_stored());
        }
        UserAction::List => {
            for u in store.users()? {
                let state = if u.disabled { " (disabled)" } else { "" };
                println!("{}\t{}\t{}\t{}{state}", u.id, u.name, u.role, u.scope.to_stored());
            }
        }
        UserAction::Passwd { password_stdin, name } => {
            let (user, _) = store.user_with_hash(&name)?.with_context(|| format!("no account `{name}`"))?;
            let pw = read_password(password_stdin)?;
            store.set_password(user.id, &password::hash(&pw)?, now)?;
            println!("password of `{}` changed; its sessions ended", user.name);
        }
    }
    Ok(())
}

/// A password from stdin's first line, or asked twice on the terminal without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    use std::io::BufRead;
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        mingchu::access::password::check_rule(&pw)?;
        return Ok(pw);
    }
    let first = prompt("Password: ")?;
    mingchu::access::password::check_rule(&first)?;
    if prompt("Again: ")? != first {
        anyhow::bail!("the passwords differ");
    }
    Ok(first)
}

/// Reads a line from the terminal with echo off.
fn prompt(label: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the password on: pass --password-stdin")?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios calls on a file descriptor we hold open; the old mode is restored.
    let old = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            anyhow::bail!("cannot read the terminal's mode");
        }
        let old = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &t);
        old
    };
    let mut w = &tty;
    let _ = write!(w, "{label}");
    let _ = w.flush();
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the mode read above.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &old);
    }
    let _ = writeln!(w);
    r.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
